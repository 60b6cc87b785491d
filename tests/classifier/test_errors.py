"""The error contract (classifier/errors.py): every code mapped, answered in one envelope, declared in the schema."""

import json
from http import HTTPStatus

import pytest
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.urls import reverse
from rest_framework import exceptions

from classifier.api import api_error
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
    "request_kwargs, status, code",
    [
        ({"method": "put"}, HTTPStatus.METHOD_NOT_ALLOWED, "method_not_allowed"),
        ({"method": "get", "HTTP_ACCEPT": "text/csv"}, HTTPStatus.NOT_ACCEPTABLE, "not_acceptable"),
        (
            {"method": "post", "data": "{}", "content_type": "application/json"},
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
    ],
    ids=["put", "accept-csv", "json-body"],
)
def test_drfs_own_refusals_are_answered_in_the_envelope(client, request_kwargs, status, code):
    method = request_kwargs.pop("method")
    path = reverse("api-classes") if method == "get" else reverse("api-predictions")
    response = getattr(client, method)(path, **request_kwargs)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_a_throttled_client_is_told_when_to_come_back(client, monkeypatch):
    from rest_framework.throttling import AnonRateThrottle

    monkeypatch.setattr(AnonRateThrottle, "THROTTLE_RATES", {"anon": "1/minute"})
    client.get(reverse("api-classes"))
    response = client.get(reverse("api-classes"))
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert response.json()["error"]["code"] == "throttled"
    assert 0 < int(response["Retry-After"]) <= 60


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


@pytest.mark.parametrize(
    "exc",
    [
        exceptions.NotAuthenticated(),
        exceptions.AuthenticationFailed(),
        exceptions.PermissionDenied(),
        exceptions.ValidationError([]),
        DjangoPermissionDenied(),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_a_refusal_drf_or_django_may_raise_later_is_a_json_4xx_not_a_500(exc):
    error = api_error(exc)
    assert error is not None and 400 <= error.status < 500
    body = json.loads(json_error(error).content)
    assert body["error"]["code"] == error.code
