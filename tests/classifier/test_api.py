import base64
import dataclasses
import hashlib
import io
import json
from http import HTTPStatus

import pytest
import torch
from django.urls import reverse
from PIL import Image

from classifier import api
from classifier.lifecycle import predictor_get
from classifier.models import LesionClass
from classifier.selectors import model_describe
from ml import CLASS_CODES, preprocessing
from ml.checkpoint import save_checkpoint
from ml.model import SimpleBNConv
from ml.negatives import non_lesion_images
from ml.preprocessing import PreprocessConfig
from tests.classifier.conftest import upload
from tests.conftest import image_bytes

pytestmark = pytest.mark.django_db


def test_prediction_contract(client, example_image, settings):
    response = client.post(reverse("api-predictions"), {"image": upload(example_image)})
    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"] == "application/json"
    assert "no-store" in response["Cache-Control"]
    body = response.json()
    assert set(body) == {
        "model",
        "prediction",
        "probabilities",
        "uncertain",
        "risk",
        "inconclusive",
        "explanation",
        "disclaimer",
        "elapsed_ms",
    }
    assert body["explanation"] is None
    assert body["model"]["name"] == "SimpleBNConv"
    assert body["model"]["sha256"] == hashlib.sha256(settings.DERMAI_CHECKPOINT.read_bytes()).hexdigest()
    assert [p["code"] for p in body["probabilities"]] == list(CLASS_CODES)
    assert sum(p["probability"] for p in body["probabilities"]) == pytest.approx(1.0, abs=1e-5)
    top = max(body["probabilities"], key=lambda p: p["probability"])
    assert body["prediction"] == top
    assert set(top) == {"code", "name", "category", "probability"}
    assert body["uncertain"] == (top["probability"] < settings.DERMAI_UNCERTAIN_BELOW)
    assert "not a medical device" in body["disclaimer"]
    assert body["elapsed_ms"] > 0


def test_prediction_leads_with_the_grouped_risk_and_the_inconclusive_rule(client, example_image):
    body = client.post(reverse("api-predictions"), {"image": upload(example_image)}).json()
    by_code = {p["code"]: p["probability"] for p in body["probabilities"]}
    policy = model_describe()["triage"]["policy"]
    risk = body["risk"]
    assert risk["probability"] == pytest.approx(by_code["MEL"] + by_code["BCC"] + by_code["AKIEC"], abs=1e-6)
    assert risk["threshold"] == policy["refer_at"]
    assert risk["refer"] == (risk["probability"] >= policy["refer_at"])
    assert body["inconclusive"] == (body["prediction"]["probability"] < policy["inconclusive_below"])


def _error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert "not a medical device" in body["disclaimer"]


@pytest.mark.parametrize(
    ("data", "name", "status", "code"),
    [
        (b"just some text", "notes.jpg", HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_format"),
        (image_bytes(fmt="GIF"), "a.gif", HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_format"),
        (
            b"<svg xmlns='http://www.w3.org/2000/svg'/>",
            "a.svg",
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            "unsupported_format",
        ),
        (image_bytes()[:500], "cut.jpg", HTTPStatus.BAD_REQUEST, "invalid_image"),
        (b"", "empty.jpg", HTTPStatus.BAD_REQUEST, "invalid_image"),
    ],
    ids=["text", "gif", "svg", "truncated", "empty"],
)
def test_bad_images_get_a_json_error_code(client, data, name, status, code):
    _error(client.post(reverse("api-predictions"), {"image": upload(data, name)}), status, code)


def test_an_empty_file_reads_alike_in_the_api_and_on_the_page(client):
    answer = client.post(reverse("api-predictions"), {"image": upload(b"", "empty.jpg")}).json()
    page = client.post(reverse("home"), {"image": upload(b"", "empty.jpg")}).content.decode()
    assert answer["error"]["message"] == "The image data is empty, corrupt or truncated."
    assert answer["error"]["message"] in page


def test_missing_file(client):
    _error(client.post(reverse("api-predictions"), {"picture": "nope"}), HTTPStatus.BAD_REQUEST, "missing_file")


def test_two_files_in_the_single_endpoint(client, example_image):
    files = [upload(example_image, "a.jpg"), upload(example_image, "b.jpg")]
    _error(client.post(reverse("api-predictions"), {"image": files}), HTTPStatus.BAD_REQUEST, "too_many_files")


def test_too_many_pixels(client, monkeypatch):
    monkeypatch.setattr(preprocessing, "MAX_LOSSLESS_PIXELS", 100 * 100)
    data = image_bytes(size=(400, 300), fmt="PNG")
    _error(
        client.post(reverse("api-predictions"), {"image": upload(data, "big.png")}),
        HTTPStatus.UNPROCESSABLE_ENTITY,
        "too_many_pixels",
    )


def test_json_body_is_refused(client):
    response = client.post(reverse("api-predictions"), {"image": "x"}, content_type="application/json")
    _error(response, HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")


def test_wrong_method(client):
    _error(client.get(reverse("api-predictions")), HTTPStatus.METHOD_NOT_ALLOWED, "method_not_allowed")


def test_classes_lists_the_admin_content(client):
    LesionClass.objects.filter(code="NV").update(name="Common mole")
    body = client.get(reverse("api-classes")).json()
    assert [c["code"] for c in body["classes"]] == list(CLASS_CODES)
    assert body["classes"][1]["name"] == "Common mole"
    assert {c["category"] for c in body["classes"]} == {"benign", "malignant", "precancerous_or_malignant"}
    assert "not a medical device" in body["disclaimer"]


def test_model_description(client, settings):
    body = client.get(reverse("api-model")).json()
    assert body["name"] == "SimpleBNConv"
    assert body["classes"] == list(CLASS_CODES)
    assert body["parameters"] == 142_791
    assert body["calibration"]["temperature"] > 0
    assert body["preprocessing"]["size"] == 224
    settings.DERMAI_UNCERTAIN_BELOW = 0.37
    assert client.get(reverse("api-model")).json()["uncertain_below"] == 0.37  # the configured value, reported
    assert "not a medical device" in body["disclaimer"]
    assert body["preprocessing"] == json.loads(json.dumps(dataclasses.asdict(predictor_get()[0].preprocess)))


def test_model_description_serves_no_machine_paths(client, settings, tmp_path):
    path = tmp_path / "described.pt"
    folders = ", ".join(str(tmp_path / name) for name in ("ham10000", "isic2019"))
    data = {"source": folders, "images": 3, "split": "by lesion_id, stratified by class"}
    save_checkpoint(path, model=SimpleBNConv(), preprocess=PreprocessConfig(), data=data)
    settings.DERMAI_CHECKPOINT = path
    response = client.get(reverse("api-model"))
    assert response.status_code == HTTPStatus.OK
    assert str(tmp_path) not in response.content.decode()
    body = response.json()
    assert body["data"] == {"images": 3, "split": "by lesion_id, stratified by class"}
    assert body["gate"] is None and body["metrics"] == {} and body["triage"]["measured"] == {}


def test_model_description_leaves_the_gates_recorded_paths_out(client, monkeypatch):
    describe = model_describe()
    gate = {**describe["gate"], "checkpoint": "/runs/gate/evidence.pt", "fit": {"pixels_from": "/data/ph2-fullres"}}
    monkeypatch.setattr(api, "model_describe", lambda: {**describe, "gate": gate})
    body = client.get(reverse("api-model")).json()
    assert set(body["gate"]) == {"threshold", "refused", "max_refusal", "lent_by"}
    assert body["gate"]["refused"] == describe["gate"]["refused"]


def test_openapi_schema_and_docs(client):
    response = client.get(reverse("schema"), HTTP_ACCEPT="application/json")
    assert response.status_code == HTTPStatus.OK
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert {"/api/v1/predictions/", "/api/v1/predictions/batch/", "/api/v1/classes/", "/api/v1/model/"} <= set(
        schema["paths"]
    )
    docs = client.get(reverse("api-docs"))
    assert docs.status_code == HTTPStatus.OK
    assert b"swagger-ui" in docs.content


def test_openapi_declares_uploads_as_binary_files_and_the_triage_fields(client):
    schema = client.get(reverse("schema"), HTTP_ACCEPT="application/json").json()

    def request_schema(path):
        ref = schema["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
        return schema["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]

    assert request_schema("/api/v1/predictions/")["image"] == {
        **request_schema("/api/v1/predictions/")["image"],
        "type": "string",
        "format": "binary",
    }
    assert request_schema("/api/v1/predictions/batch/")["images"]["items"]["format"] == "binary"
    prediction = schema["components"]["schemas"]["Prediction"]["properties"]
    assert {"risk", "inconclusive"} <= set(prediction)


def test_explain_returns_a_grad_cam_png(client, example_image):
    response = client.post(reverse("api-predictions") + "?explain=1", {"image": upload(example_image)})
    assert response.status_code == HTTPStatus.OK
    explanation = response.json()["explanation"]
    assert explanation["method"] == "grad-cam"
    assert explanation["code"] == response.json()["prediction"]["code"]
    png = base64.b64decode(explanation["overlay_png_base64"])
    assert Image.open(io.BytesIO(png)).size == (224, 224)


def test_explain_takes_a_boolean(client, example_image):
    response = client.post(reverse("api-predictions") + "?explain=false", {"image": upload(example_image)})
    assert response.json()["explanation"] is None
    bad = client.post(reverse("api-predictions") + "?explain=maybe", {"image": upload(example_image)})
    _error(bad, HTTPStatus.BAD_REQUEST, "invalid_parameter")
    assert "explain" in bad.json()["error"]["message"]


def test_batch_returns_per_item_results_and_errors(client, examples_dir):
    good = sorted((examples_dir / "images").iterdir())[:4]
    files = [upload(p.read_bytes(), p.name) for p in good[:2]]
    files += [upload(image_bytes()[:200], "broken.jpg")] + [upload(p.read_bytes(), p.name) for p in good[2:]]
    response = client.post(reverse("api-batch"), {"images": files})
    assert response.status_code == HTTPStatus.OK
    assert "no-store" in response["Cache-Control"]
    body = response.json()
    assert set(body) == {"model", "results", "disclaimer"}
    names = [r["name"] for r in body["results"]]
    assert names == [good[0].name, good[1].name, "broken.jpg", good[2].name, good[3].name]
    broken = body["results"][2]
    assert broken == {"name": "broken.jpg", "error": broken["error"]}
    assert broken["error"]["code"] == "invalid_image"
    for item in body["results"][:2] + body["results"][3:]:
        assert [p["code"] for p in item["probabilities"]] == list(CLASS_CODES)
        assert sum(p["probability"] for p in item["probabilities"]) == pytest.approx(1.0, abs=1e-5)
        assert item["prediction"]["code"] in CLASS_CODES
        assert isinstance(item["uncertain"], bool)


def test_batch_matches_single_predictions(client, examples_dir):
    paths = sorted((examples_dir / "images").iterdir())[:3]
    batch = client.post(reverse("api-batch"), {"images": [upload(p.read_bytes(), p.name) for p in paths]}).json()
    for path, item in zip(paths, batch["results"]):
        single = client.post(reverse("api-predictions"), {"image": upload(path.read_bytes(), path.name)}).json()
        for a, b in zip(single["probabilities"], item["probabilities"]):
            assert a["probability"] == pytest.approx(b["probability"], abs=1e-5)


def test_a_batch_file_answers_with_a_single_images_result_under_its_name(client, example_image):
    single = client.post(reverse("api-predictions"), {"image": upload(example_image, "a.jpg")}).json()
    item = client.post(reverse("api-batch"), {"images": [upload(example_image, "a.jpg")]}).json()["results"][0]
    result = {key: single[key] for key in ("prediction", "probabilities", "uncertain", "risk", "inconclusive")}
    assert item == {"name": "a.jpg", **result}  # nothing else: no "error": null beside a result


def test_batch_errors(client, example_image):
    _error(client.post(reverse("api-batch"), {}), HTTPStatus.BAD_REQUEST, "missing_file")
    files = [upload(example_image, f"{i}.jpg") for i in range(21)]
    _error(client.post(reverse("api-batch"), {"images": files}), HTTPStatus.BAD_REQUEST, "too_many_files")


@pytest.mark.parametrize("url", [reverse("api-batch"), reverse("api-predictions")])
def test_more_files_than_django_parses_get_the_json_error(client, url, settings):
    files = [upload(b"x", f"{i}.jpg") for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FILES + 1)]
    field = "images" if url == reverse("api-batch") else "image"
    _error(client.post(url, {field: files}), HTTPStatus.BAD_REQUEST, "too_many_files")


@pytest.mark.parametrize("kind", ["document", "flat", "gradient", "checkerboard", "screenshot"])
def test_non_lesion_images_are_out_of_scope(client, kind):
    data = next(d for k, d in non_lesion_images(per_kind=1, seed=3) if k == kind)
    _error(client.post(reverse("api-predictions"), {"image": upload(data, "x.png")}), 422, "out_of_scope")


def test_a_refusal_says_why_and_what_to_do_in_the_visitors_language(client):
    data = next(d for k, d in non_lesion_images(per_kind=1, seed=3) if k == "document")
    response = client.post(reverse("api-predictions"), {"image": upload(data, "x.png")}, HTTP_ACCEPT_LANGUAGE="es")
    error = response.json()["error"]
    assert error["message"] == "DermAI no ha podido analizar esta foto."
    assert "un solo color" in error["detail"] and "un rechazo no dice nada de la lesión" in error["detail"]


def test_a_photo_the_gate_refuses_is_not_a_dermatoscopic_image_and_batches_say_so_per_file(
    client, example_image, monkeypatch
):
    predictor, _ = predictor_get()
    real = predictor.assess

    def refuse_all(pixels):
        return dataclasses.replace(real(pixels), out_of_scope=torch.ones(len(pixels), dtype=torch.bool))

    monkeypatch.setattr(predictor, "assess", refuse_all)
    single = client.post(reverse("api-predictions"), {"image": upload(example_image)})
    assert single.status_code == HTTPStatus.UNPROCESSABLE_ENTITY
    assert "does not look like a dermatoscopic image" in single.json()["error"]["detail"]
    assert "send the whole image as the dermatoscope saved it" in single.json()["error"]["detail"]
    spanish = client.post(reverse("api-predictions"), {"image": upload(example_image)}, HTTP_ACCEPT_LANGUAGE="es")
    assert "envíe la imagen entera" in spanish.json()["error"]["detail"]
    batch = client.post(reverse("api-batch"), {"images": [upload(example_image), upload(b"", "empty.jpg")]}).json()
    refused, empty = batch["results"]
    assert refused["error"]["code"] == "out_of_scope" and "show it to a doctor" in refused["error"]["detail"]
    assert empty["error"]["code"] == "invalid_image" and "detail" not in empty["error"]


def test_an_upload_is_decoded_once_for_the_guard_the_classifier_and_the_gate(client, example_image, monkeypatch):
    from ml import inference

    calls = []
    real = inference.decode
    monkeypatch.setattr(inference, "decode", lambda data, **kw: calls.append(len(data)) or real(data, **kw))
    response = client.post(reverse("api-predictions"), {"image": upload(example_image)})
    assert response.status_code == HTTPStatus.OK
    assert calls == [len(example_image)]


@pytest.fixture
def efficientnet_model(settings, tmp_path):
    """Serve a small untrained EfficientNet-Lite0, as DERMAI_CHECKPOINT may name the accurate model."""
    from ml.checkpoint import save_checkpoint
    from ml.efficientnet import EfficientNetConfig, EfficientNetLite0
    from ml.preprocessing import PreprocessConfig

    torch.manual_seed(0)
    path = tmp_path / "efficientnet-lite0.pt"
    save_checkpoint(path, model=EfficientNetLite0(EfficientNetConfig(input_size=64)), preprocess=PreprocessConfig())
    settings.DERMAI_CHECKPOINT = path


def test_the_accurate_model_answers_through_the_same_api(client, example_image, efficientnet_model):
    response = client.post(reverse("api-predictions") + "?explain=1", {"image": upload(example_image)})
    assert response.status_code == HTTPStatus.OK, response.content
    body = response.json()
    assert body["model"]["name"] == "EfficientNetLite0"
    assert sum(p["probability"] for p in body["probabilities"]) == pytest.approx(1, abs=1e-3)
    assert {"refer", "near", "probability"} <= set(body["risk"])
    png = base64.b64decode(body["explanation"]["overlay_png_base64"])
    assert Image.open(io.BytesIO(png)).size == (224, 224)
    assert client.get(reverse("api-model")).json()["name"] == "EfficientNetLite0"


def test_the_committed_accurate_model_is_served_with_the_default_models_gate(client, example_image, settings):
    from ml import ACCURATE_CHECKPOINT, SHIPPED_CHECKPOINT

    settings.DERMAI_CHECKPOINT = ACCURATE_CHECKPOINT
    body = client.post(reverse("api-predictions"), {"image": upload(example_image)}).json()
    assert body["model"]["version"] == "efficientnet-lite0-v3"
    assert "not a medical device" in body["disclaimer"].lower()
    description = client.get(reverse("api-model")).json()
    assert description["gate"]["lent_by"] == SHIPPED_CHECKPOINT.name
    # Noise that the cheap guard lets through (it has colour and texture); the borrowed gate refuses it.
    noise = next(d for k, d in non_lesion_images(per_kind=1, seed=0) if k == "gaussian_noise")
    response = client.post(reverse("api-predictions"), {"image": upload(noise, "noise.png")})
    _error(response, 422, "out_of_scope")
    assert "does not look like a dermatoscopic image" in response.json()["error"]["detail"]
