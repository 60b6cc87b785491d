import base64
import csv
import io
import re
from http import HTTPStatus

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.urls import reverse
from PIL import Image

from classifier import services
from classifier.documents import document_html
from classifier.lifecycle import predictor_get
from classifier.models import LesionClass
from classifier.views import BATCH_CSV_EXTRA
from ml import CLASS_CODES
from ml.negatives import non_lesion_images
from ml.triage import TriagePolicy
from tests.classifier.conftest import upload
from tests.conftest import image_bytes

pytestmark = pytest.mark.django_db


def test_home_shows_the_form_the_limit_examples_and_the_disclaimer(client):
    response = client.get(reverse("home"))
    assert response.status_code == HTTPStatus.OK
    html = response.content.decode()
    assert 'enctype="multipart/form-data"' in html
    assert "csrfmiddlewaretoken" in html
    assert "up to 12 MB" in html
    assert html.count('href="/examples/ISIC_') == 7
    assert "not a medical device" in html


def test_a_good_image_shows_seven_probabilities_and_the_database_descriptions(client, example_image):
    LesionClass.objects.filter(code="DF").update(description="Edited in the admin: a firm little bump.")
    response = client.post(reverse("home"), {"image": upload(example_image)})
    assert response.status_code == HTTPStatus.OK
    html = response.content.decode()
    assert html.count('class="bar-row"') == 7  # the chart, readable as text
    result = response.context["result"]
    assert len(result.probabilities) == 7
    assert sum(p.probability for p in result.probabilities) == pytest.approx(1.0, abs=1e-5)
    assert "Edited in the admin: a firm little bump." in html
    assert f"Warning-sign score: <strong>{round(result.risk.percent)}\u00a0%</strong>" in html  # the triage card leads
    for p in result.top3:
        assert f'{p.name} <span class="code-inline">({p.code})</span>' in html
    assert (
        html.count("data:image/png;base64,") == 3
    )  # the photo's thumbnail by the verdict, as the model saw it, its Grad-CAM
    assert "Grad-CAM" in html
    assert "not a medical device" in html
    assert "no-store" in response["Cache-Control"]


@pytest.mark.parametrize(
    ("policy", "shown", "hidden"),
    [
        (
            TriagePolicy(refer_at=0.0, inconclusive_below=1.01),
            [
                "DermAI cannot tell which kind of spot this is.",
                "DermAI suggests showing this spot to a dermatologist.",
                "Where the model looked. No answer stands out: the colours are for the likeliest of the three,",
            ],
            ["Most likely:", "Where the model looked for its answer"],  # the heatmap claims no answer either
        ),
        (
            TriagePolicy(refer_at=1.01, inconclusive_below=0.0),
            [
                "Most likely:",
                "DermAI found few warning signs. This does not rule out cancer.",
                "Where the model looked for its answer,",
            ],
            ["DermAI cannot tell", "DermAI suggests showing", "No answer stands out"],
        ),
    ],
    ids=["inconclusive-and-refer", "named-and-not-referred"],
)
def test_the_card_follows_the_triage_policy(client, example_image, monkeypatch, policy, shown, hidden):
    monkeypatch.setattr(services, "triage_get", lambda: {"policy": policy, "measured": {}})
    html = client.post(reverse("home"), {"image": upload(example_image)}).content.decode()
    for text in shown:
        assert text in html
    for text in hidden:
        assert text not in html
    if policy.inconclusive_below > 1:  # no red or green verdict on an inconclusive card
        card = html.split('class="triage-card', 1)[1].split("</article>", 1)[0]
        assert "category-malignant" not in card and "category-benign" not in card


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (b"%PDF-1.4 this is a document", "report.pdf", "Unsupported file type"),
        (image_bytes(fmt="GIF"), "anim.gif", "Unsupported file type"),
        (image_bytes()[:300], "cut.jpg", "corrupt"),
        (b"", "empty.jpg", "empty"),
    ],
)
def test_a_bad_file_shows_a_form_error(client, data, name, message):
    response = client.post(reverse("home"), {"image": upload(data, name)})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    html = response.content.decode()
    assert 'role="alert"' in html and message in html
    assert 'type="file"' in html  # the form is shown again


def test_no_file_shows_a_form_error(client):
    response = client.post(reverse("home"), {})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Choose an image file to analyse." in response.content.decode()


def test_an_example_is_classified_with_one_click(client):
    response = client.get(reverse("example", args=["ISIC_0024306"]))
    assert response.status_code == HTTPStatus.OK
    html = response.content.decode()
    assert "diagnosed as NV in the HAM10000 dataset" in html
    assert len(response.context["result"].probabilities) == 7


def test_an_unknown_example_is_not_found(client):
    assert client.get(reverse("example", args=["ISIC_9999999"])).status_code == HTTPStatus.NOT_FOUND


@pytest.mark.parametrize("page", ["model-card", "experiments"])
def test_every_figure_and_link_of_a_rendered_document_works_on_the_site(client, page):
    article = client.get(reverse(page)).content.decode().split('<article class="document"')[1]
    static_prefix = "/" + settings.STATIC_URL.lstrip("/")
    targets = re.findall(r'(?:href|src)="([^"]*)"', article)
    assert targets
    for target in targets:
        if target.startswith("https://"):
            continue
        assert target.startswith("/"), f"{target} is a dead link on the site"
        path, _, fragment = target.partition("#")
        if path.startswith(static_prefix):
            assert finders.find(path.removeprefix(static_prefix)), target
            continue
        response = client.get(path)
        assert response.status_code == HTTPStatus.OK, target
        assert not fragment or f'id="{fragment}"' in response.content.decode(), target


def test_the_documents_lead_to_each_other_and_name_the_files_only_the_repository_has(client):
    card = client.get(reverse("model-card")).content.decode()
    assert len(re.findall(r"<img alt=", card)) >= 2
    assert f'href="{reverse("experiments")}"' in card
    experiments = client.get(reverse("experiments")).content.decode()
    assert f'href="{reverse("model-card")}"' in experiments
    assert "<span>docs/training.md</span>" in experiments  # a link to a file the site does not serve
    text = (settings.BASE_DIR / "docs/experiments.md").read_text(encoding="utf-8")
    first_section = next(line for line in text.splitlines() if line.startswith("## "))
    assert f">{first_section.removeprefix('## ')}</h2>" in experiments


def test_only_the_listed_documents_are_rendered():
    with pytest.raises(ValueError, match="not one of the rendered documents"):
        document_html("dermai_site/settings.py")


def test_about_page_explains_privacy_and_the_model(client):
    html = client.get(reverse("about")).content.decode()
    assert "never written to disk" in html
    predictor, info = predictor_get()
    parameters = sum(p.numel() for p in predictor.model.parameters())  # what the model has
    assert f"a {parameters:,}-parameter" in html  # counted from the loaded model, not written in
    assert f"sha256 {info.sha256[:12]}" in html
    assert "trained from scratch" in html and "ImageNet" not in html


@pytest.mark.parametrize(
    ("language", "said"), [("en", "first learnt from ImageNet"), ("es", "primero de las fotografías")]
)
def test_the_about_page_says_the_accurate_model_learnt_from_imagenet_first(client, settings, language, said):
    from ml import ACCURATE_CHECKPOINT

    settings.DERMAI_CHECKPOINT = ACCURATE_CHECKPOINT
    html = client.get(reverse("about"), HTTP_ACCEPT_LANGUAGE=language).content.decode()
    assert said in html and "EfficientNetLite0" in html
    assert "from scratch" not in html and "desde cero" not in html


def test_csrf_is_enforced_on_the_upload_form(example_image):
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post(reverse("home"), {"image": upload(example_image)})
    assert response.status_code == HTTPStatus.FORBIDDEN


def test_several_images_give_a_batch_table_with_a_csv_and_per_file_errors(client, examples_dir):
    good = sorted((examples_dir / "images").iterdir())[:3]
    files = [upload(p.read_bytes(), p.name) for p in good] + [upload(b"not an image", "notes.jpg")]
    response = client.post(reverse("home"), {"image": files})
    assert response.status_code == HTTPStatus.OK
    html = response.content.decode()
    items = response.context["items"]
    assert sorted(i.name for i in items[:3]) == sorted(p.name for p in good)
    risks = [i.result.risk.probability for i in items[:3]]
    assert risks == sorted(risks, reverse=True)  # highest risk first
    assert items[3].name == "notes.jpg" and items[3].error.code == "unsupported_format"
    assert "Unsupported file type" in html
    assert f"Model SimpleBNConv ({predictor_get()[1].version})." in html  # which model answered, as on one result
    assert 'download="dermai-predictions.csv"' in html
    csv_text = base64.b64decode(response.context["csv_data_uri"].split(",", 1)[1]).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert list(rows[0]) == ["image", *CLASS_CODES, *BATCH_CSV_EXTRA]
    assert [r["image"] for r in rows] == [p.stem for p in good] + ["notes"]  # upload order, every file
    assert rows[3]["error"] == "unsupported_format" and rows[3]["MEL"] == ""
    by_name = {i.name: i.result for i in items[:3]}
    for row in rows[:3]:
        result = by_name[row["image"] + ".jpg"]
        assert float(row["risk"]) == pytest.approx(result.risk.probability, abs=1e-6)
        assert row["inconclusive"] == str(int(result.inconclusive))
        assert row["category"] == result.prediction.category
        assert row["model_version"] == result.model.version
    assert "no-store" in response["Cache-Control"]


def test_an_empty_or_refused_file_in_a_batch_is_that_files_error_and_the_page_explains(client, example_image):
    buffer = io.BytesIO()
    Image.new("RGB", (300, 300), "white").save(buffer, "PNG")  # a blank page: out of scope
    document = buffer.getvalue()
    files = [upload(example_image), upload(b"", "empty.jpg"), upload(document, "page.png")]
    response = client.post(reverse("home"), {"image": files})
    assert response.status_code == HTTPStatus.OK
    errors = {i.name: i.error.code for i in response.context["items"] if i.error}
    assert errors == {"empty.jpg": "invalid_image", "page.png": "out_of_scope"}
    html = response.content.decode()
    assert 'href="#guide"' in html and 'id="guide"' in html  # the link leads somewhere on this page


def test_the_batch_csv_keeps_file_names_from_running_as_formulas(client, example_image):
    files = [upload(example_image, "=SUM(1,2).jpg"), upload(example_image, "lesion.jpg")]
    response = client.post(reverse("home"), {"image": files})
    csv_text = base64.b64decode(response.context["csv_data_uri"].split(",", 1)[1]).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(csv_text)))
    assert [r[0] for r in rows[1:]] == ["'=SUM(1,2)", "lesion"]


def test_more_than_twenty_images_is_a_form_error(client, example_image):
    files = [upload(example_image, f"{i}.jpg") for i in range(21)]
    response = client.post(reverse("home"), {"image": files})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "at most 20 as a batch" in response.content.decode()


@pytest.mark.parametrize("language", ["en", "es"])
def test_a_refused_photo_gets_a_page_that_is_not_a_verdict(client, language):
    data = next(d for k, d in non_lesion_images(per_kind=1) if k == "document")
    response = client.post(reverse("home"), {"image": upload(data, "letter.png")}, HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == HTTPStatus.UNPROCESSABLE_ENTITY
    html = response.content.decode()
    error = response.context["error"]
    assert error.code == "out_of_scope" and error.reason == "flat_colour"
    texts = {
        "en": ("DermAI could not analyse this photo", "one flat colour", "a refusal says nothing about the lesion"),
        "es": ("DermAI no ha podido analizar esta foto", "un solo color", "un rechazo no dice nada de la lesión"),
    }[language]
    for text in texts:
        assert text in html
    assert 'src="data:image/png;base64,' in html  # the photo's thumbnail, from memory
    assert 'id="guide"' in html  # what a dermatoscopic image is
    assert "result-card" not in html and "risk" not in response.context


def test_an_example_is_computed_once_per_model_then_served_from_the_cache(client, monkeypatch):
    calls = []
    real = services.prediction_create
    monkeypatch.setattr(services, "prediction_create", lambda **kw: calls.append(kw) or real(**kw))
    first = client.get(reverse("example", args=["ISIC_0024306"]))
    second = client.get(reverse("example", args=["ISIC_0024306"]), HTTP_ACCEPT_LANGUAGE="es")
    assert len(calls) == 1
    assert [p.probability for p in second.context["result"].probabilities] == [
        p.probability for p in first.context["result"].probabilities
    ]
    assert "Probabilidad de cada clase" in second.content.decode()  # texts joined in the visitor's language


def test_example_pages_share_the_clients_throttle_budget(client, monkeypatch):
    from rest_framework.throttling import AnonRateThrottle

    monkeypatch.setattr(AnonRateThrottle, "THROTTLE_RATES", {"anon": "2/minute"})
    statuses = [client.get(reverse("example", args=["ISIC_0024306"])).status_code for _ in range(3)]
    assert statuses == [HTTPStatus.OK, HTTPStatus.OK, HTTPStatus.TOO_MANY_REQUESTS]
    assert client.post(reverse("home"), {}).status_code == HTTPStatus.TOO_MANY_REQUESTS  # the same budget


@pytest.mark.parametrize("path", ["/", "/about/", "/model-card/", "/examples/ISIC_0024306/"])
def test_pages_answer_head_requests(client, path):
    response = client.head(path)
    assert response.status_code == HTTPStatus.OK
    assert response.content == b""


def test_an_unknown_page_is_a_page_of_the_site(client):
    response = client.get("/no-such-page/", HTTP_ACCEPT_LANGUAGE="es")
    assert response.status_code == HTTPStatus.NOT_FOUND
    html = response.content.decode()
    assert "Página no encontrada" in html and 'href="/"' in html  # translated, with the site's navigation


def test_the_about_page_names_the_gates_test_sets_for_people(client):
    rows = {row["label"]: row for row in client.get(reverse("about")).context["gate_rows"]}
    report = predictor_get()[0].gate.report["rows"]
    clinical = [r for r in report if r["set"].startswith("clinical/")]
    phone = rows["Phone and clinic photos of skin lesions"]
    assert (phone["images"], phone["refused"]) == (
        sum(r["images"] for r in clinical),
        sum(r["refused"] for r in clinical),
    )
    threshold_halves = sum(r["images"] for r in report if r["set"].endswith("(threshold)"))
    assert sum(r["images"] for r in rows.values()) == sum(r["images"] for r in report) - threshold_halves
    html = client.get(reverse("about")).content.decode()
    assert "(threshold)" not in html and "padufes" not in html


def _fullres_checkpoint(path, *, refer_at=0.3, recorded_at=0.3, nevi=160, data=None):
    """An untrained model whose recorded triage and full-resolution report the pages must quote."""
    from ml.checkpoint import record_fullres, record_triage, save_checkpoint
    from ml.model import SimpleBNConv
    from ml.preprocessing import PreprocessConfig

    save_checkpoint(path, model=SimpleBNConv(), preprocess=PreprocessConfig(), data=data)
    measured = {"sensitivity": 0.9, "specificity": 0.5, "images": 100, "coverage": 0.5, "selective_accuracy": 0.8}
    record_triage(path, triage={"policy": {"refer_at": refer_at, "inconclusive_below": 0.5}, "measured": measured})
    per_class = {"MEL": {"images": 40, "refused": 4}} | ({"NV": {"images": nevi, "refused": 2}} if nevi else {})
    row = {"resolution": "native", "images": 40 + nevi, "refused": 6, "per_class": per_class}
    row |= {"melanoma_vs_nevus_auc": 0.8, "melanomas_referred": 0.925, "nevi_referred": 0.8875 if nevi else None}
    record_fullres(
        path, report={"checkpoint": str(path), "data": "/data/ph2-fullres", "refer_at": recorded_at, "rows": [row]}
    )
    return path


def test_the_pages_say_what_the_line_sent_at_another_hospitals_full_resolution(
    client, settings, tmp_path, example_image
):
    settings.DERMAI_CHECKPOINT = _fullres_checkpoint(tmp_path / "m.pt")
    said = "it would have sent 37 to a dermatologist, and 142 of 160 moles."
    assert "Of 40 melanomas photographed at full size" in (about := client.get(reverse("about")).content.decode())
    assert said in about and "does not rule out" not in about
    result = client.post(reverse("home"), {"image": upload(example_image)}).content.decode()
    assert said in result and "A result below the line does not rule out a melanoma." in result
    spanish = client.get(reverse("about"), HTTP_ACCEPT_LANGUAGE="es").content.decode()
    assert "De 40 melanomas fotografiados a tamaño completo" in spanish and "142 de 160 lunares" in spanish
    fullres = client.get(reverse("api-model")).json()["triage"]["measured_fullres"]
    assert fullres["data"] == "ph2-fullres" and fullres["melanomas_sent"] == 37 and fullres["nevi_sent"] == 142


def test_a_full_resolution_report_without_nevi_or_at_another_line_is_said_as_far_as_it_holds(
    client, settings, tmp_path
):
    settings.DERMAI_CHECKPOINT = _fullres_checkpoint(tmp_path / "melanomas.pt", nevi=0)
    about = client.get(reverse("about")).content.decode()
    assert "it would have sent 37 to a dermatologist." in about and "moles." not in about
    settings.DERMAI_CHECKPOINT = _fullres_checkpoint(tmp_path / "stale.pt", refer_at=0.3, recorded_at=0.9)
    assert "photographed at full size" not in client.get(reverse("about")).content.decode()  # another line's figures
    assert client.get(reverse("api-model")).json()["triage"]["measured_fullres"] is None


def test_the_about_page_of_a_checkpoint_without_data_counts_does_not_fail(client, settings, tmp_path):
    from ml.checkpoint import save_checkpoint
    from ml.model import SimpleBNConv
    from ml.preprocessing import PreprocessConfig

    settings.DERMAI_CHECKPOINT = tmp_path / "bare.pt"
    save_checkpoint(settings.DERMAI_CHECKPOINT, model=SimpleBNConv(), preprocess=PreprocessConfig())
    assert client.get(reverse("about")).status_code == HTTPStatus.OK


def test_the_about_page_counts_the_training_images_not_the_validation_ones(client):
    data = predictor_get()[1].meta["data"]
    html = client.get(reverse("about")).content.decode()
    assert f"{sum(data['train_counts'].values()):,} dermatoscopic images" in html
    assert f"{data['images']:,} dermatoscopic images" not in html


def test_the_model_card_says_which_model_the_site_serves(client, settings):
    from ml import ACCURATE_CHECKPOINT

    assert "This site serves" not in client.get(reverse("model-card")).content.decode()
    settings.DERMAI_CHECKPOINT = ACCURATE_CHECKPOINT
    html = client.get(reverse("model-card")).content.decode()
    assert "This site serves EfficientNetLite0 (efficientnet-lite0-v3)" in html
    assert 'href="#the-opt-in-accurate-model-efficientnet-lite0-v3"' in html
    assert 'id="the-opt-in-accurate-model-efficientnet-lite0-v3"' in html
