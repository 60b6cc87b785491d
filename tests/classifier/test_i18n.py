"""English and Spanish: pages, the language switch, admin-managed translations and the API."""

from http import HTTPStatus

import pytest
from django.urls import reverse

from classifier.models import LesionClass, LesionClassTranslation
from classifier.templatetags.dermai import per_100
from tests.classifier.conftest import change_form_data, upload

pytestmark = pytest.mark.django_db


def test_pages_follow_accept_language(client):
    html = client.get(reverse("home"), HTTP_ACCEPT_LANGUAGE="es").content.decode()
    assert '<html lang="es">' in html
    assert "Analizar una imagen dermatoscópica" in html
    assert "No es un producto sanitario." in html
    english = client.get(reverse("home"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert '<html lang="en">' in english and "Analyse a dermatoscopic image" in english


def test_language_switcher_sets_spanish(client):
    response = client.post(reverse("set_language"), {"language": "es", "next": "/about/"})
    assert response.status_code == HTTPStatus.FOUND
    html = client.get(reverse("about")).content.decode()
    assert "Acerca de DermAI y su privacidad" in html
    assert "nunca se escribe en disco" in html.lower()


def test_spanish_result_page_shows_spanish_descriptions(client, example_image):
    response = client.post(reverse("home"), {"image": upload(example_image)}, HTTP_ACCEPT_LANGUAGE="es")
    html = response.content.decode()
    assert response.status_code == HTTPStatus.OK
    assert "Nevus melanocítico" in html
    assert "Un lunar común" in html
    assert "Probabilidad de cada clase" in html


def test_spanish_form_errors(client):
    response = client.post(reverse("home"), {"image": upload(b"hello", "a.txt")}, HTTP_ACCEPT_LANGUAGE="es")
    assert "Tipo de archivo no admitido" in response.content.decode()


def test_api_honours_accept_language(client, example_image):
    classes = client.get(reverse("api-classes"), HTTP_ACCEPT_LANGUAGE="es").json()
    assert classes["classes"][0]["name"] == "Melanoma"
    assert classes["classes"][2]["name"] == "Carcinoma basocelular"
    assert classes["disclaimer"].startswith("DermAI es solo para educación")
    body = client.post(reverse("api-predictions"), {"image": upload(example_image)}, HTTP_ACCEPT_LANGUAGE="es").json()
    assert body["probabilities"][1]["name"] == "Nevus melanocítico"
    error = client.post(reverse("api-predictions"), {}, HTTP_ACCEPT_LANGUAGE="es").json()
    assert error["error"]["code"] == "missing_file"  # the code never changes with the language


def test_translations_are_edited_in_the_admin(admin_client, client, django_capture_on_commit_callbacks):
    obj = LesionClass.objects.get(code="DF")
    url = reverse("admin:classifier_lesionclass_change", args=[obj.pk])
    page = admin_client.get(url).content.decode()
    assert "Dermatofibroma" in page and "translations-TOTAL_FORMS" in page
    assert client.get(reverse("api-classes"), HTTP_ACCEPT_LANGUAGE="es").status_code == HTTPStatus.OK  # cached
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url, change_form_data(obj, **{"translations-0-description": "Texto revisado."}))
    assert response.status_code == HTTPStatus.FOUND
    body = client.get(reverse("api-classes"), HTTP_ACCEPT_LANGUAGE="es").json()
    assert body["classes"][5]["description"] == "Texto revisado."


def test_a_missing_translation_falls_back_to_english(client):
    LesionClassTranslation.objects.filter(lesion_class__code="VASC").delete()
    body = client.get(reverse("api-classes"), HTTP_ACCEPT_LANGUAGE="es").json()
    assert body["classes"][6]["name"] == "Vascular lesion"


def test_spanish_result_numbers_are_whole_percents_with_a_non_breaking_space(client, example_image):
    response = client.post(reverse("home"), {"image": upload(example_image)}, HTTP_ACCEPT_LANGUAGE="es")
    html = response.content.decode()
    result = response.context["result"]
    assert f"Puntuación de señales de alarma: <strong>{round(100 * result.risk.probability)}\u00a0%</strong>" in html
    top = result.ranked[0]
    assert f'<span class="value">{round(100 * top.probability)}\u00a0%</span>' in html


def test_shares_read_as_whole_numbers_in_100_and_an_unmeasured_one_as_a_dash():
    assert [per_100(share) for share in (0.0, 0.287, 0.995, 1.0)] == [0, 29, 100, 100]
    assert per_100(None) == "–"
