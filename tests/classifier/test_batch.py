"""The batch page: its cards, the summary line above them and its two CSV downloads."""

import base64
import codecs
import csv
import gc
import io
import re
import weakref
from html import unescape
from http import HTTPStatus
from types import SimpleNamespace

import pytest
from django.urls import reverse
from django.utils import translation
from PIL import Image

from classifier import services
from classifier.views import BATCH_CSV_EXTRA, batch_summary
from ml import CLASS_CODES
from ml.triage import TriagePolicy
from tests.classifier.conftest import upload

pytestmark = pytest.mark.django_db
PERCENT = re.compile(r"(<1|>99|\d{1,2})\u00a0%")  # whole percents, a non-breaking space before "%"


def csv_bytes(data_uri: str) -> bytes:
    header, payload = data_uri.split(",", 1)
    assert header == "data:text/csv;charset=utf-8;base64"
    return base64.b64decode(payload)


def test_the_batch_page_counts_its_cards_in_one_line_above_them(client, examples_dir):
    files = [upload(p.read_bytes(), p.name) for p in sorted((examples_dir / "images").iterdir())[:4]]
    files.append(upload(b"not an image", "notes.jpg"))
    response = client.post(reverse("home"), {"image": files})
    assert response.status_code == HTTPStatus.OK
    html = response.content.decode()
    # The line counts what the cards say: one verdict sentence per classified card.
    cards = {
        "to show a dermatologist": html.count("DermAI suggests showing this spot to a dermatologist."),
        "with warning signs just below the line": html.count("DermAI found some warning signs, just below"),
        "with few warning signs": html.count("DermAI found few warning signs."),
    }
    assert sum(cards.values()) == 4
    parts = [f"{n} {words}" for words, n in cards.items() if n] + ["1 not analysed"]
    summary = ", ".join(parts)
    assert response.context["summary"] == summary
    assert html.index(summary) < html.index('class="batch-cards"')


@pytest.mark.parametrize(
    ("policy", "verdict"),
    [
        (TriagePolicy(refer_at=0.0, inconclusive_below=1.01), "DermAI suggests showing this spot to a dermatologist."),
        (
            TriagePolicy(refer_at=1.01, inconclusive_below=1.01),
            "DermAI found few warning signs. This does not rule out cancer.",
        ),
        (
            TriagePolicy(refer_at=1.01, inconclusive_below=0.0),
            "DermAI found few warning signs. This does not rule out cancer.",
        ),
    ],
    ids=["refer+inconclusive", "few+inconclusive", "few"],
)
def test_a_batch_card_says_what_the_result_page_says(client, example_image, monkeypatch, policy, verdict):
    monkeypatch.setattr(services, "triage_get", lambda: {"policy": policy, "measured": {}})
    single = client.post(reverse("home"), {"image": upload(example_image)}).content.decode()
    response = client.post(reverse("home"), {"image": [upload(example_image, "a.jpg"), upload(example_image, "b.jpg")]})
    assert response.status_code == HTTPStatus.OK
    cards = [
        card.split("</div>\n  </li>", 1)[0] for card in response.content.decode().split('<li class="batch-card')[1:]
    ]
    assert len(cards) == 2
    top3 = single.split('<ol class="top3">', 1)[1].split("</ol>", 1)[0]
    inconclusive = policy.inconclusive_below > 1
    for card in cards:
        assert f'<p class="verdict-text">{verdict}</p>' in card
        assert ("DermAI cannot tell which kind of spot this is." in card) == inconclusive
        assert top3 in card  # the same diagnoses, numbers, categories and colours as the result page
        if inconclusive:  # no category at all, so no reassuring green
            assert "category" not in card
        values = [unescape(v) for v in re.findall(r'class="value">([^<]*)<', card)]
        assert len(values) == 3 + 7 and all(PERCENT.fullmatch(v) for v in values), values
        text = unescape(re.sub(r"<[^>]+>", " ", card))
        assert not re.search(r"\d[.,]\d", text), text  # no decimals anywhere a visitor reads
        assert re.search(r"Warning-sign score:\s+[<>]?\d{1,2}\u00a0%", text)


def _items(refer: int, near: int, few_signs: int, failed: int) -> list[SimpleNamespace]:
    def result(refer: bool, near: bool) -> SimpleNamespace:
        return SimpleNamespace(risk=SimpleNamespace(refer=refer, near=near))

    return (
        [SimpleNamespace(result=result(True, False))] * refer
        + [SimpleNamespace(result=result(False, True))] * near
        + [SimpleNamespace(result=result(False, False))] * few_signs
        + [SimpleNamespace(result=None)] * failed
    )


@pytest.mark.parametrize(
    ("language", "counts", "expected"),
    [
        ("en", (3, 0, 0, 2), "3 to show a dermatologist, 2 not analysed"),
        (
            "en",
            (1, 1, 1, 1),
            "1 to show a dermatologist, 1 with warning signs just below the line, "
            "1 with few warning signs, 1 not analysed",
        ),
        ("es", (3, 0, 0, 2), "3 para mostrar a un dermatólogo, 2 no analizadas"),
        ("es", (1, 0, 2, 1), "1 para mostrar a un dermatólogo, 2 con pocas señales de alarma, 1 no analizada"),
        ("es", (0, 2, 5, 0), "2 con señales de alarma justo por debajo del límite, 5 con pocas señales de alarma"),
    ],
)
def test_the_summary_counts_in_each_language_with_its_plural_forms(language, counts, expected):
    with translation.override(language):
        assert batch_summary(_items(*counts)) == expected


def test_both_csv_files_open_in_excel_with_accents_unique_names_and_the_same_numbers(client, example_image):
    png = io.BytesIO()
    Image.open(io.BytesIO(example_image)).save(png, "PNG")
    files = [upload(example_image, "a.jpg"), upload(png.getvalue(), "a.png"), upload(example_image, "María.jpg")]
    response = client.post(reverse("home"), {"image": files})
    assert response.status_code == HTTPStatus.OK
    comma, semicolon = (csv_bytes(response.context[key]) for key in ("csv_data_uri", "csv_semicolon_data_uri"))
    assert comma.startswith(codecs.BOM_UTF8) and semicolon.startswith(codecs.BOM_UTF8)  # Excel then reads UTF-8
    rows = list(csv.DictReader(io.StringIO(comma.decode("utf-8-sig"))))
    local = list(csv.DictReader(io.StringIO(semicolon.decode("utf-8-sig")), delimiter=";"))
    assert list(rows[0]) == list(local[0]) == ["image", *CLASS_CODES, *BATCH_CSV_EXTRA]
    assert [r["image"] for r in rows] == [r["image"] for r in local] == ["a.jpg", "a.png", "María"]
    for row, local_row in zip(rows, local):
        for column in (*CLASS_CODES, "risk"):
            assert "." not in local_row[column] and local_row[column].replace(",", ".") == row[column]
        assert local_row["refer"] == row["refer"] and local_row["prediction"] == row["prediction"]
    html = response.content.decode()
    assert 'download="dermai-predictions.csv"' in html and 'download="dermai-predictions-semicolon.csv"' in html


def test_a_refused_file_frees_its_bytes_as_soon_as_the_batch_is_answered(example_image):
    # A stored error must not keep the batch's frames (and every upload in them) alive: such cycles
    # wait for a full garbage collection, which a worker runs rarely, so memory grew with each batch.
    refused = services.ImageUpload(name="bad.jpg", data=b"not an image", size=12)
    kept = weakref.ref(refused)
    gc.disable()
    try:
        items = services.predictions_create(
            images=[refused, services.ImageUpload("ok.jpg", example_image, len(example_image))]
        )
        del refused
        assert kept() is None
    finally:
        gc.enable()
    assert items[0].error.code == "unsupported_format" and items[1].result is not None
