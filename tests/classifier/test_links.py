"""Reference links are http(s) only: the model refuses any other scheme, and nothing shows one."""

from http import HTTPStatus

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.template import Context, Template
from django.urls import reverse

from classifier.models import LesionClass
from classifier.selectors import ClassContent

pytestmark = pytest.mark.django_db

HOSTILE = ["javascript:alert(document.cookie)", "JavaScript:alert(1)", "data:text/html,<script>", "ftp://x.org/a"]


@pytest.mark.parametrize("url", HOSTILE)
def test_the_database_refuses_a_link_that_is_not_http_saved_through_the_orm(url):
    with pytest.raises(IntegrityError), transaction.atomic():
        LesionClass.objects.filter(code="MEL").update(reference_url=url)
    assert LesionClass.objects.get(code="MEL").reference_url.startswith("https://")


@pytest.mark.parametrize("url", HOSTILE)
def test_validation_refuses_a_link_that_is_not_http(url):
    row = LesionClass.objects.get(code="MEL")
    row.reference_url = url
    with pytest.raises(ValidationError) as error:
        row.full_clean()
    assert "reference_url" in error.value.message_dict


@pytest.mark.parametrize("url", ["", "https://dermnetnz.org/topics/melanoma", "HTTP://example.org/a"])
def test_http_links_and_no_link_are_accepted(url):
    row = LesionClass.objects.get(code="MEL")
    row.reference_url = url
    row.full_clean()
    row.save()


@pytest.mark.parametrize(
    ("url", "shown"), [*((url, "") for url in HOSTILE), ("https://example.org/a", "https://example.org/a")]
)
def test_pages_show_only_http_links(url, shown):
    assert Template("{% load dermai %}{{ url|safe_link }}").render(Context({"url": url})) == shown


def test_the_api_offers_no_link_that_is_not_http(client, monkeypatch):
    # A link that reached the class texts some other way (the constraint came later, a raw write).
    def hostile_contents():
        return {"MEL": ClassContent("MEL", "Melanoma", "malignant", "Malignant", "…", "javascript:alert(1)")}

    monkeypatch.setattr("classifier.api.class_contents_get", hostile_contents)
    response = client.get(reverse("api-classes"))
    assert response.status_code == HTTPStatus.OK
    assert response.json()["classes"][0]["reference_url"] == ""
