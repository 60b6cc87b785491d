"""Broken and hostile uploads: each gets a clear answer (never a 500) and nothing reaches the disk."""

import io
import struct
import time
import zlib
from http import HTTPStatus

import numpy as np
import pytest
from django.urls import reverse
from PIL import Image

from classifier import services
from ml.preprocessing import decoding_cost
from tests.classifier.conftest import upload
from tests.conftest import EXAMPLES, photo_jpeg
from tests.support.hostile import flat_webp, jpeg_claiming, jpeg_with, png_in_chunks, zero_png

LESION = EXAMPLES / "images" / "ISIC_0024306.jpg"


def _lesion(mode: str, fmt: str, **save) -> bytes:
    image = Image.open(LESION).convert("RGB")
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image.convert("L")).astype(np.uint16) * 257)
    elif mode == "P":
        image = image.quantize(256)
    elif mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_16_bit_rgb() -> bytes:
    """The lesion as a 48-bit RGB PNG (Pillow cannot write one, so the chunks are built here)."""
    pixels = np.asarray(Image.open(LESION).convert("RGB")).astype(">u2") * 257
    rows = b"".join(b"\0" + row.tobytes() for row in pixels)
    header = struct.pack(">IIBBBBB", pixels.shape[1], pixels.shape[0], 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b"")


def _png_bomb(side: int = 30000) -> bytes:
    """A valid-looking 30000×30000 PNG header over a few KB of zlib'd zeros (900 MB if decoded)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\0" * (side + 1) * 64, 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def _bad_crc_png() -> bytes:
    data = bytearray(_lesion("RGB", "PNG"))
    data[60] ^= 0xFF  # inside the first IDAT chunk: its CRC no longer matches
    return bytes(data)


def _animated(fmt: str) -> bytes:
    frames = [Image.open(LESION).convert("RGB"), Image.open(LESION).convert("RGB").rotate(90)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format=fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue()


def _tiny_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.open(LESION).convert("RGB").resize((10, 10)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _one_pixel() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1), (200, 120, 100)).save(buffer, format="PNG")
    return buffer.getvalue()


REFUSED = {
    "zero-bytes": (b"", "invalid_image"),
    "random-bytes": (np.random.default_rng(0).bytes(4096), "unsupported_format"),
    "truncated-jpeg": (LESION.read_bytes()[:2000], "invalid_image"),
    "png-bad-crc": (_bad_crc_png(), "invalid_image"),
    "png-bomb-30000x30000": (_png_bomb(), "too_many_pixels"),
    "one-pixel": (_one_pixel(), "out_of_scope"),
    "animated-gif": (_animated("GIF"), "unsupported_format"),
    "animated-webp": (_animated("WEBP"), "unsupported_format"),
    "svg": (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "unsupported_format"),
    "html": (b"<!doctype html><html><body><script>alert(1)</script></body></html>", "unsupported_format"),
    "pdf": (b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF", "unsupported_format"),
    "pdf-jpeg-polyglot": (b"%PDF-1.4\n" + LESION.read_bytes(), "unsupported_format"),
    "16-bit-greyscale-png": (_lesion("I;16", "PNG"), "out_of_scope"),  # no colour: not a dermatoscopic photo
}
STATUS = {"invalid_image": 400, "unsupported_format": 415, "too_many_pixels": 422, "out_of_scope": 422}

ACCEPTED = {
    "cmyk-jpeg": _lesion("CMYK", "JPEG"),
    "16-bit-rgb-png": _png_16_bit_rgb(),
    "palette-png": _lesion("P", "PNG"),
    "transparent-png": _lesion("RGBA", "PNG"),
    "jpeg-with-trailing-html": LESION.read_bytes() + b"<html><script>alert(1)</script></html>",
}

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_api_refuses_with_a_json_code(client, temp_dir, name):
    data, code = REFUSED[name]
    response = client.post(reverse("api-predictions"), {"image": upload(data, f"{name}.jpg")})
    assert response.status_code == STATUS[code], response.content
    assert response.json()["error"]["code"] == code
    assert list(temp_dir.iterdir()) == []


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_form_refuses_with_a_message(client, temp_dir, name):
    data, code = REFUSED[name]
    response = client.post(reverse("home"), {"image": upload(data, f"{name}.jpg")})
    if code == "out_of_scope":  # read, then refused: a page that says why, not a form error
        assert response.status_code == HTTPStatus.UNPROCESSABLE_ENTITY
        assert "DermAI could not analyse this photo" in response.content.decode()
    else:
        assert response.status_code == HTTPStatus.BAD_REQUEST
        assert 'role="alert"' in response.content.decode()
    assert list(temp_dir.iterdir()) == []


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_real_lesions_in_unusual_encodings_are_classified(client, temp_dir, name):
    response = client.post(reverse("api-predictions"), {"image": upload(ACCEPTED[name], f"{name}.png")})
    assert response.status_code == HTTPStatus.OK, response.content
    assert len(response.json()["probabilities"]) == 7
    assert list(temp_dir.iterdir()) == []


def test_the_declared_content_type_is_not_trusted(client):
    file = upload(LESION.read_bytes(), "lesion.txt")
    response = client.post(reverse("api-predictions"), {"image": file})
    assert response.status_code == HTTPStatus.OK
    document = upload(b"%PDF-1.4 not an image", "photo.jpg")
    response = client.post(reverse("api-predictions"), {"image": document})
    assert response.json()["error"]["code"] == "unsupported_format"


def test_a_raw_body_without_multipart_is_refused(client):
    response = client.post(reverse("api-predictions"), LESION.read_bytes(), content_type="image/jpeg")
    assert response.status_code == HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_the_bomb_is_small_on_the_wire():
    assert len(_png_bomb()) < 64 * 1024


def _scan_bomb(extra_scans: int) -> bytes:
    """A progressive JPEG of the lesion whose last scan is repeated ``extra_scans`` times."""
    data = _lesion("RGB", "JPEG", progressive=True, quality=90)
    last_scan = data.rindex(b"\xff\xda")
    return data[:-2] + data[last_scan:-2] * extra_scans + b"\xff\xd9"


@pytest.mark.django_db
def test_a_jpeg_scan_bomb_is_refused_before_decoding(client):
    response = client.post(reverse("api-predictions"), {"image": upload(_scan_bomb(500), "bomb.jpg")})
    assert response.status_code == HTTPStatus.UNPROCESSABLE_ENTITY
    assert response.json()["error"]["code"] == "too_complex"


@pytest.mark.django_db
def test_an_ordinary_progressive_jpeg_is_still_read(client):
    response = client.post(reverse("api-predictions"), {"image": upload(_scan_bomb(0), "progressive.jpg")})
    assert response.status_code == HTTPStatus.OK, response.content


@pytest.mark.django_db
def test_a_huge_zero_png_is_refused_before_decoding(client):
    data = zero_png(5000)  # 25 megapixels in about 25 kB
    assert len(data) < 100_000
    response = client.post(reverse("api-predictions"), {"image": upload(data, "zeros.png")})
    assert response.status_code == HTTPStatus.UNPROCESSABLE_ENTITY
    assert response.json()["error"]["code"] == "too_many_pixels"


@pytest.mark.django_db
def test_a_truncated_jpeg_is_an_invalid_image_not_an_unsupported_format(client):
    data = _lesion("RGB", "JPEG")[:20]
    response = client.post(reverse("api-predictions"), {"image": upload(data, "cut.jpg")})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["error"]["code"] == "invalid_image"


@pytest.mark.django_db
def test_a_batch_answers_every_good_file_and_an_error_for_each_bad_one(client):
    good = LESION.read_bytes()
    files = [upload(good, "a.jpg"), upload(b"", "empty.jpg"), upload(b"text", "notes.jpg"), upload(good, "b.jpg")]
    response = client.post(reverse("api-batch"), {"images": files})
    assert response.status_code == HTTPStatus.OK, response.content
    results = {item["name"]: item for item in response.json()["results"]}
    assert "prediction" in results["a.jpg"] and "prediction" in results["b.jpg"]
    assert results["empty.jpg"]["error"]["code"] == "invalid_image"
    assert results["notes.jpg"]["error"]["code"] == "unsupported_format"


@pytest.mark.django_db
def test_a_chunked_upload_is_refused_with_length_required(client):
    response = client.generic(
        "POST",
        reverse("api-predictions"),
        b"",
        content_type="multipart/form-data; boundary=x",
        HTTP_TRANSFER_ENCODING="chunked",
    )
    assert response.status_code == HTTPStatus.LENGTH_REQUIRED
    assert response.json()["error"]["code"] == "length_required"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "kwargs", "status", "code"),
    [
        ("/api/v1/nothing-here/", {}, HTTPStatus.NOT_FOUND, "not_found"),
        ("/api/v1/classes/", {"HTTP_HOST": "evil.example"}, HTTPStatus.BAD_REQUEST, "bad_request"),
    ],
    ids=["unknown-path", "bad-host"],
)
def test_djangos_own_errors_under_the_api_are_json(client, path, kwargs, status, code):
    response = client.get(path, **kwargs)
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == code
    assert "not a medical device" in response.json()["disclaimer"]


@pytest.mark.django_db
def test_too_many_fields_under_the_api_is_json(client, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 5
    data = {f"field{i}": "x" for i in range(10)} | {"image": upload(LESION.read_bytes())}
    response = client.post(reverse("api-predictions"), data)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response["Content-Type"] == "application/json"


@pytest.mark.django_db
def test_an_unreadable_model_is_a_json_503(client, settings, tmp_path):
    settings.DERMAI_CHECKPOINT = tmp_path / "missing.pt"
    response = client.post(reverse("api-predictions"), {"image": upload(LESION.read_bytes())})
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json()["error"]["code"] == "model_unavailable"


@pytest.mark.django_db
def test_a_server_error_under_the_api_is_json(client, monkeypatch):
    from classifier import api

    def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(api, "class_contents_get", broken)
    client.raise_request_exception = False
    response = client.get(reverse("api-classes"))
    assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    assert response.json()["error"]["code"] == "server_error"


# Files inside every size limit that held a worker for seconds: refused from their
# headers, before the model or the decoder runs, with the untrained model standing in for the
# shipped one (nothing here reaches a model).
PROGRESSIVE = _lesion("RGB", "JPEG", progressive=True, quality=90)
COSTLY = {
    "jpeg-2-mb-of-padding": (jpeg_with(LESION.read_bytes(), b"\xff" * 2_000_000), "too_complex"),
    "jpeg-5000-comments": (jpeg_with(LESION.read_bytes(), b"\xff\xfe\x00\x02" * 5000), "too_complex"),
    "png-of-5000-chunks": (png_in_chunks(5000), "too_complex"),
    "progressive-jpeg-4000x4000-of-20-scans": (jpeg_claiming(PROGRESSIVE, (4000, 4000), extra_scans=10), "too_complex"),
    "lossless-webp-2049x2048": (flat_webp((2049, 2048)), "too_many_pixels"),
}


@pytest.mark.parametrize("name", sorted(COSTLY))
def test_api_refuses_what_costs_too_much_to_decode(client, untrained_model, name):
    data, code = COSTLY[name]
    response = client.post(reverse("api-predictions"), {"image": upload(data, f"{name}.jpg")})
    assert response.status_code == HTTPStatus.UNPROCESSABLE_ENTITY, response.content
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize("name", sorted(COSTLY))
def test_form_refuses_what_costs_too_much_to_decode(client, untrained_model, name):
    data, _ = COSTLY[name]
    response = client.post(reverse("home"), {"image": upload(data, f"{name}.jpg")})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert 'role="alert"' in response.content.decode()


def test_an_ordinary_phone_photo_is_still_read(client, untrained_model):
    response = client.post(reverse("api-predictions"), {"image": upload(photo_jpeg(), "phone.jpg")})
    # Read and judged: the untrained model's answer, or the guard's refusal of a photo of no lesion.
    assert response.status_code in (HTTPStatus.OK, HTTPStatus.UNPROCESSABLE_ENTITY), response.content
    assert response.status_code == HTTPStatus.OK or response.json()["error"]["code"] == "out_of_scope"


def test_a_batch_shares_one_decoding_budget(client, untrained_model, settings):
    # Each 200×150 example costs 30,000 pixel-scans: the third does not fit, a 10×10 photo still does.
    settings.DERMAI_MAX_BATCH_PIXEL_SCANS = 70_000
    examples = sorted((EXAMPLES / "images").iterdir())[:3]
    files = [upload(path.read_bytes(), path.name) for path in examples] + [upload(_tiny_jpeg(), "tiny.jpg")]
    response = client.post(reverse("api-batch"), {"images": files})
    assert response.status_code == HTTPStatus.OK, response.content
    codes = [(item.get("error") or {}).get("code") for item in response.json()["results"]]
    assert codes[2] == "batch_over_budget"
    assert "batch_over_budget" not in codes[:2] + codes[3:]


def test_a_batch_stops_decoding_at_its_deadline(client, untrained_model, settings, monkeypatch):
    # Each file "takes" 0.2 s to decode; past the 0.1 s deadline the rest are refused, in a 200 answer.
    settings.DERMAI_BATCH_DEADLINE_SECONDS = 0.1
    read = services._read

    def slow_read(*args, **kwargs):
        time.sleep(0.2)
        return read(*args, **kwargs)

    monkeypatch.setattr(services, "_read", slow_read)
    examples = sorted((EXAMPLES / "images").iterdir())[:3]
    response = client.post(reverse("api-batch"), {"images": [upload(p.read_bytes(), p.name) for p in examples]})
    assert response.status_code == HTTPStatus.OK, response.content
    codes = [(item.get("error") or {}).get("code") for item in response.json()["results"]]
    assert codes[0] != "batch_over_budget"
    assert codes[1:] == ["batch_over_budget", "batch_over_budget"]


def test_the_batch_budget_holds_a_batch_of_twenty_phone_photos(settings):
    assert settings.DERMAI_MAX_BATCH_FILES * decoding_cost(photo_jpeg()) <= settings.DERMAI_MAX_BATCH_PIXEL_SCANS
