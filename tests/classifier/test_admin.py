from http import HTTPStatus

import pytest
from django.urls import reverse
from django.utils import translation

from classifier.models import LesionClass, LesionClassTranslation
from classifier.services import class_contents_get

pytestmark = pytest.mark.django_db


def test_changelist_lists_search_and_filter(admin_client):
    url = reverse("admin:classifier_lesionclass_changelist")
    response = admin_client.get(url)
    assert response.status_code == HTTPStatus.OK
    assert response.context["cl"].result_count == 7
    assert admin_client.get(url, {"q": "melanoma"}).context["cl"].result_count == 2  # MEL and NV mention it
    assert admin_client.get(url, {"category__exact": "malignant"}).context["cl"].result_count == 2


def test_superuser_edits_a_description(admin_client):
    obj = LesionClass.objects.get(code="VASC")
    url = reverse("admin:classifier_lesionclass_change", args=[obj.pk])
    assert admin_client.get(url).status_code == HTTPStatus.OK
    assert "New text." not in admin_client.get("/api/v1/classes/").content.decode()  # now cached
    data = {
        "translations-TOTAL_FORMS": "0",
        "translations-INITIAL_FORMS": "0",
        "code": "VASC",
        "name": obj.name,
        "category": obj.category,
        "description": "New text.",
        "reference_url": obj.reference_url,
        "display_order": obj.display_order,
    }
    response = admin_client.post(url, data)
    assert response.status_code == HTTPStatus.FOUND
    obj.refresh_from_db()
    assert obj.description == "New text."
    classes = {c["code"]: c for c in admin_client.get("/api/v1/classes/").json()["classes"]}
    assert classes["VASC"]["description"] == "New text."  # the save cleared the cache


def test_class_texts_are_read_once_then_cached(django_assert_num_queries):
    with django_assert_num_queries(2):  # the classes and their translations
        first = class_contents_get()
    with django_assert_num_queries(0):
        assert class_contents_get() == first
    LesionClassTranslation.objects.filter(language="es").delete()
    with translation.override("es"), django_assert_num_queries(2):
        assert class_contents_get()["MEL"].name == first["MEL"].name  # English once the translation is gone


def test_anonymous_users_are_sent_to_login(client):
    response = client.get(reverse("admin:classifier_lesionclass_changelist"))
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"].startswith(reverse("admin:login"))
