from http import HTTPStatus

import pytest
from django.core import checks
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


@pytest.mark.parametrize(("language", "header"), [("en", "DermAI administration"), ("es", "Administración de DermAI")])
def test_the_admin_is_headed_dermai_administration(admin_client, language, header):
    html = admin_client.get(reverse("admin:index"), HTTP_ACCEPT_LANGUAGE=language).content.decode()
    assert f"| {header}</title>" in html
    assert f'<a href="/admin/">{header}</a>' in html
    assert "Django administration" not in html and "Administración de Django" not in html


def _listed(admin_client, **query) -> list[str]:
    response = admin_client.get(reverse("admin:classifier_lesionclass_changelist"), query)
    return [row.code for row in response.context["cl"].result_list]


def test_search_finds_a_class_by_its_translated_name_or_description(admin_client):
    assert "NV" in _listed(admin_client, q="lunar")  # only the Spanish description says it
    assert _listed(admin_client, q="basocelular") == ["BCC"]  # only the Spanish name


def test_the_list_shows_which_classes_lack_a_translation(admin_client):
    LesionClassTranslation.objects.filter(lesion_class__code="DF").delete()
    LesionClassTranslation.objects.filter(lesion_class__code="VASC").update(description="  ")
    url = reverse("admin:classifier_lesionclass_changelist")
    with CaptureQueriesContext(connection) as captured:
        html = admin_client.get(url).content.decode()
    assert html.count('<td class="field-translation_status">Complete</td>') == 5
    assert html.count('<td class="field-translation_status">Missing: Español</td>') == 2
    translation_queries = [q for q in captured.captured_queries if "classifier_lesionclasstranslation" in q["sql"]]
    assert len(translation_queries) == 1  # prefetched for the page, not read once per row
    html = admin_client.get(url, HTTP_ACCEPT_LANGUAGE="es").content.decode()
    assert html.count('<td class="field-translation_status">Completas</td>') == 5
    assert "Sin traducción: Español" in html


def test_every_translated_field_has_help_in_english_and_in_spanish(admin_client):
    fields = [LesionClass._meta.get_field(name) for name in ("code", "name", "category", "description")]
    fields += [LesionClassTranslation._meta.get_field(name) for name in ("language", "name", "description")]
    for field in fields:
        with translation.override("en"):
            english = str(field.help_text)
        with translation.override("es"):
            spanish = str(field.help_text)
        assert english and spanish and spanish != english, field
    obj = LesionClass.objects.get(code="NV")
    html = admin_client.get(
        reverse("admin:classifier_lesionclass_change", args=[obj.pk]), HTTP_ACCEPT_LANGUAGE="es"
    ).content.decode()
    with translation.override("es"):
        for field in fields[1:]:  # the code is read-only on a saved class: shown, not edited
            assert str(field.help_text) in html.replace("&#x27;", "'"), field


def test_code_and_category_are_read_only_once_saved(admin_client):
    obj = LesionClass.objects.get(code="MEL")
    url = reverse("admin:classifier_lesionclass_change", args=[obj.pk])
    html = admin_client.get(url).content.decode()
    assert 'name="code"' not in html and 'name="category"' not in html
    assert 'name="name"' in html  # the texts stay editable
    response = admin_client.post(url, change_form_data(obj, code="NV", category="benign", name="Melanoma (edited)"))
    assert response.status_code == HTTPStatus.FOUND
    obj.refresh_from_db()
    assert (obj.code, obj.category, obj.name) == ("MEL", "malignant", "Melanoma (edited)")


def test_classes_cannot_be_deleted(admin_client):
    obj = LesionClass.objects.get(code="MEL")
    url = reverse("admin:classifier_lesionclass_delete", args=[obj.pk])
    assert admin_client.get(url).status_code == HTTPStatus.FORBIDDEN
    assert admin_client.post(url, {"post": "yes"}).status_code == HTTPStatus.FORBIDDEN
    changelist = reverse("admin:classifier_lesionclass_changelist")
    response = admin_client.post(changelist, {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"})
    assert LesionClass.objects.filter(code="MEL").exists()
    assert "delete_selected" not in admin_client.get(changelist).content.decode()
    assert response.status_code in (HTTPStatus.OK, HTTPStatus.FOUND)


def test_a_missing_class_can_be_added_back_with_a_category_that_agrees_with_the_risk(admin_client):
    add = reverse("admin:classifier_lesionclass_add")
    assert admin_client.get(add).status_code == HTTPStatus.FORBIDDEN  # all seven are there
    LesionClass.objects.filter(code="DF").delete()
    assert admin_client.get(add).status_code == HTTPStatus.OK
    data = {"code": "DF", "name": "Dermatofibroma", "description": "A firm bump.", "reference_url": ""}
    data |= {"translations-TOTAL_FORMS": "0", "translations-INITIAL_FORMS": "0"}
    response = admin_client.post(add, data | {"category": "malignant"})
    assert response.status_code == HTTPStatus.OK  # the form again, with the error
    assert "DF is left out of the referral risk: it must be benign." in response.content.decode()
    assert admin_client.post(add, data | {"category": "benign"}).status_code == HTTPStatus.FOUND
    assert LesionClass.objects.get(code="DF").category == "benign"


@pytest.mark.parametrize(("code", "category"), [("MEL", "benign"), ("BCC", "benign"), ("NV", "malignant")])
def test_a_category_that_contradicts_the_referral_risk_is_refused(code, category):
    from django.core.exceptions import ValidationError

    obj = LesionClass.objects.get(code=code)
    obj.category = category
    with pytest.raises(ValidationError) as error:
        obj.full_clean()
    assert list(error.value.message_dict) == ["category"]


def _class_warnings() -> list[checks.CheckMessage]:
    messages = checks.run_checks(databases=["default"], tags=[checks.Tags.database])
    return [m for m in messages if m.id.startswith("classifier.")]


def test_a_system_check_names_every_class_without_both_languages():
    assert _class_warnings() == []  # as the migrations seed them
    LesionClassTranslation.objects.filter(lesion_class__code="DF").delete()
    LesionClass.objects.filter(code="VASC").delete()
    warnings = _class_warnings()
    assert [(w.id, w.level) for w in warnings] == [
        ("classifier.W002", checks.WARNING),
        ("classifier.W001", checks.WARNING),
    ]
    assert "DF has no complete Español (es)" in warnings[0].msg
    assert "VASC is missing" in warnings[1].msg
