from http import HTTPStatus

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import translation

from classifier.models import LesionClass, LesionClassTranslation
from classifier.selectors import class_contents_get
from tests.classifier.conftest import change_form_data

pytestmark = pytest.mark.django_db


def test_changelist_lists_search_and_filter(admin_client):
    url = reverse("admin:classifier_lesionclass_changelist")
    response = admin_client.get(url)
    assert response.status_code == HTTPStatus.OK
    assert response.context["cl"].result_count == 7
    assert admin_client.get(url, {"q": "melanoma"}).context["cl"].result_count == 2  # MEL and NV mention it
    assert admin_client.get(url, {"category__exact": "malignant"}).context["cl"].result_count == 2


def test_superuser_edits_a_description(admin_client, django_capture_on_commit_callbacks):
    obj = LesionClass.objects.get(code="VASC")
    url = reverse("admin:classifier_lesionclass_change", args=[obj.pk])
    assert admin_client.get(url).status_code == HTTPStatus.OK
    assert "New text." not in admin_client.get("/api/v1/classes/").content.decode()  # now cached
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = admin_client.post(url, change_form_data(obj, description="New text."))
    assert response.status_code == HTTPStatus.FOUND
    assert callbacks  # the cache is cleared when the change is committed, not before
    obj.refresh_from_db()
    assert obj.description == "New text."
    classes = {c["code"]: c for c in admin_client.get("/api/v1/classes/").json()["classes"]}
    assert classes["VASC"]["description"] == "New text."


def _content_queries(run):
    """How many queries ``run`` makes to the class tables (the cache has a table of its own)."""
    with CaptureQueriesContext(connection) as captured:
        result = run()
    return result, sum("classifier_lesionclass" in q["sql"] for q in captured.captured_queries)


def test_class_texts_are_read_once_then_cached():
    first, queries = _content_queries(class_contents_get)
    assert queries == 2  # the classes and their translations
    again, queries = _content_queries(class_contents_get)
    assert again == first and queries == 0
    LesionClassTranslation.objects.filter(language="es").delete()
    with translation.override("es"):
        spanish, queries = _content_queries(class_contents_get)
    assert queries == 2
    assert spanish["MEL"].name == first["MEL"].name  # English once the translation is gone


def test_anonymous_users_are_sent_to_login(client):
    response = client.get(reverse("admin:classifier_lesionclass_changelist"))
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"].startswith(reverse("admin:login"))
