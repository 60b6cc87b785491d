"""The error contract (classifier/errors.py): every code mapped, answered in one envelope, declared in the schema."""

import json
from http import HTTPStatus

import pytest
from django.urls import reverse
from rest_framework import exceptions

from classifier.errors import ERRORS, NOT_AN_ANSWER, REFUSAL_REASONS, PredictionError, json_error
from ml.guard import REASONS
from ml.preprocessing import ImageErrorCode, Refusal

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("code", list(ImageErrorCode))
def test_every_ml_image_error_has_an_api_error(code):
    # A code ml raises without an entry here would be a KeyError, and a 500, on the first such upload.
    assert code in ERRORS
    assert PredictionError(code).code == code.value


@pytest.mark.parametrize("reason", list(Refusal))
def test_every_refusal_is_explained_in_plain_words(reason):
    error = PredictionError(ImageErrorCode.OUT_OF_SCOPE, reason=reason)
    assert error.why == str(REFUSAL_REASONS[reason])
    assert error.detail.startswith(error.why) and error.advice in error.detail
    assert REASONS[reason]  # and ml's own words, for its logs and commands


@pytest.mark.parametrize(
    "drf",
    [
        exceptions.ParseError,
        exceptions.MethodNotAllowed,
        exceptions.NotAcceptable,
        exceptions.UnsupportedMediaType,
        exceptions.Throttled,
    ],
)
def test_drf_refusals_keep_their_codes_and_statuses(drf):
    assert ERRORS[drf.default_code][0] == drf.status_code


@pytest.mark.parametrize("code", list(ERRORS))
def test_every_code_is_answered_in_the_one_envelope(code):
    response = json_error(code)
    assert response.status_code == ERRORS[code][0]
    body = json.loads(response.content)
    assert set(body) == {"error", "disclaimer"}
    assert body["error"]["code"] == code and body["error"]["message"]
    assert "%(" not in body["error"]["message"]  # its limits filled in
    assert "not a medical device" in body["disclaimer"]


def test_a_refusal_is_answered_with_its_detail():
    body = json.loads(json_error(PredictionError("out_of_scope", reason=Refusal.GREYSCALE)).content)
    assert body["error"]["detail"].startswith(str(REFUSAL_REASONS[Refusal.GREYSCALE]))


@pytest.mark.parametrize("path", ["/api/v1/predictions/", "/api/v1/predictions/batch/"])
def test_the_schema_declares_every_error_an_upload_can_get(client, path):
    schema = client.get(reverse("schema"), HTTP_ACCEPT="application/json").json()
    responses = schema["paths"][path]["post"]["responses"]
    answers = {code for code in ERRORS if code not in NOT_AN_ANSWER}
    assert {int(status) for status in responses} == {HTTPStatus.OK} | {ERRORS[code][0] for code in answers}
    for code in answers:
        assert f"`{code}`" in responses[str(ERRORS[code][0].value)]["description"]
    refusals = responses[str(HTTPStatus.UNPROCESSABLE_ENTITY.value)]
    assert refusals["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    for code in ("too_many_pixels", "too_complex", "out_of_scope"):  # what the image holds, not how it was sent
        assert f"`{code}`" in refusals["description"]


def test_the_schema_requires_at_least_one_image_in_a_batch(client):
    schema = client.get(reverse("schema"), HTTP_ACCEPT="application/json").json()
    body = schema["paths"]["/api/v1/predictions/batch/"]["post"]["requestBody"]
    assert body["required"]
    ref = body["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[1]
    component = schema["components"]["schemas"][ref]
    assert component["required"] == ["images"]
    assert component["properties"]["images"]["minItems"] == 1
