"""Uploads never touch the disk: a 10 MB photo is classified, a 13 MB one refused, no temp file left."""

import re
from http import HTTPStatus

import pytest
from django.test import Client
from django.urls import reverse

from tests.classifier.conftest import lesion_png, noise_png, upload

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("url", [reverse("api-predictions"), reverse("home")])
def test_a_10_mb_upload_is_classified_in_memory(client, temp_dir, url):
    data = lesion_png(10)
    assert len(data) > 10 * 1024 * 1024 * 0.99
    response = client.post(url, {"image": upload(data, "phone.png")})
    assert response.status_code == HTTPStatus.OK
    assert list(temp_dir.iterdir()) == []


def test_the_temp_dir_check_sees_an_upload_written_to_disk(client, temp_dir, settings):
    # Django's default handlers spool a large upload to a temporary file: the check must notice.
    settings.FILE_UPLOAD_HANDLERS = ["django.core.files.uploadhandler.TemporaryFileUploadHandler"]
    client.post(reverse("api-predictions"), {"image": upload(noise_png(3), "phone.png")})
    assert list(temp_dir.iterdir()) != []


def test_a_13_mb_upload_is_refused_by_the_api(client, temp_dir):
    response = client.post(reverse("api-predictions"), {"image": upload(noise_png(13), "huge.png")})
    assert response.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    assert response.json()["error"]["code"] == "too_large"
    assert list(temp_dir.iterdir()) == []


def test_a_13_mb_upload_re_renders_the_form(client, temp_dir):
    response = client.post(reverse("home"), {"image": upload(noise_png(13), "huge.png")})
    assert response.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    assert "larger than the 12 MB limit" in response.content.decode()
    assert 'type="file"' in response.content.decode()
    assert list(temp_dir.iterdir()) == []


def test_a_body_refused_unread_gets_a_form_in_the_visitors_language_that_still_works(settings, example_image):
    settings.DERMAI_MAX_REQUEST_MB = 1
    client = Client(enforce_csrf_checks=True, HTTP_ACCEPT_LANGUAGE="es")
    token = client.get(reverse("home")).cookies["csrftoken"].value
    response = client.post(reverse("home"), {"image": upload(noise_png(1.5), "huge.png"), "csrfmiddlewaretoken": token})
    assert response.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    html = response.content.decode()
    assert "El envío supera el límite de 1 MB por solicitud." in html
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    response = client.post(reverse("home"), {"image": upload(example_image), "csrfmiddlewaretoken": token})
    assert response.status_code == HTTPStatus.OK


def test_a_file_just_over_the_cap_is_caught_while_streaming(client, temp_dir, settings):
    # Within the multipart allowance of the declared length, so only the upload handler sees it.
    settings.DERMAI_MAX_UPLOAD_MB = 1
    data = noise_png(1.02)
    response = client.post(reverse("api-predictions"), {"image": upload(data, "over.png")})
    assert response.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    assert response.json()["error"]["code"] == "too_large"
    assert list(temp_dir.iterdir()) == []


def test_the_only_upload_handler_is_the_memory_one(settings):
    assert settings.FILE_UPLOAD_HANDLERS == ["classifier.uploads.MemoryOnlyUploadHandler"]


def test_a_body_over_the_request_cap_is_refused_before_it_is_read(client, temp_dir, settings):
    settings.DERMAI_MAX_REQUEST_MB = 1
    response = client.post(reverse("api-batch"), {"images": [upload(noise_png(0.8), f"{i}.png") for i in range(2)]})
    assert response.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    assert response.json()["error"]["code"] == "too_large"
    assert list(temp_dir.iterdir()) == []
