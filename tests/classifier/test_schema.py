"""The API against its own OpenAPI schema: Schemathesis generates requests from the schema and checks that
no answer is a 5xx and that every answer is one the schema declares (status, content type, body)."""

import json
from datetime import timedelta
from http import HTTPStatus

import pytest
import schemathesis
from django.core.cache import cache
from django.core.serializers.json import DjangoJSONEncoder
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.file_samples import FILE_SAMPLES
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import EXAMPLES

pytestmark = pytest.mark.django_db

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

# An uploaded file is a committed lesion photo as often as anything else, so that classified answers
# (200) are checked against the schema too and not only refusals; else one of the tiny files of common
# formats that Schemathesis offers (GIF, PDF, a 1×1 PNG…), or arbitrary bytes.
schemathesis.openapi.format(
    "binary",
    st.one_of(
        st.sampled_from(sorted(path.read_bytes() for path in (EXAMPLES / "images").iterdir())),
        st.sampled_from(list(FILE_SAMPLES.values())),
        st.binary(max_size=2048),
    ),
)


def served_schema() -> schemathesis.schemas.BaseSchema:
    """The schema /api/v1/schema/ serves (its view's generator), calling the site's WSGI application.

    Built here rather than fetched: tests are collected before a test database exists, and fetching
    counts against the throttle, kept in the database cache. (Schemathesis's lazy ``from_fixture``
    would fetch it in a test, but reads a node attribute that pytest 9 no longer has.)
    """
    document = json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), cls=DjangoJSONEncoder))
    loaded = schemathesis.openapi.from_dict(document)
    loaded.app = get_wsgi_application()
    return loaded


schema = served_schema()


@pytest.fixture(autouse=True)
def connection_kept_open():
    """As Django's test client does: the WSGI handler's close_old_connections would close the test's
    own connection, inside its transaction (PostgreSQL then answers "the connection is closed")."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def every_answer_is_one_the_schema_declares(path: str):
    """Schemathesis's test of the operation at ``path``: its examples, coverage and fuzzing phases, valid and
    invalid requests (an upload without a file, unknown parameters…).

    One test function per operation: Schemathesis gives the items of one function a single node id,
    and pytest-xdist, which `make test` uses, would then run only one of them.
    """

    @pytest.mark.slow  # a few seconds each: dozens of requests, batches of lesion photos among them
    @schema.include(path=path).parametrize()
    @settings(max_examples=30, deadline=timedelta(seconds=10), database=None, suppress_health_check=list(HealthCheck))
    def test(case):
        cache.clear()  # the throttle's counts: each generated request starts within the client's budget
        case.call_and_validate(checks=CHECKS)

    return test


PATHS = ("/api/v1/classes/", "/api/v1/model/", "/api/v1/predictions/", "/api/v1/predictions/batch/")
test_classes_answer_as_declared = every_answer_is_one_the_schema_declares(PATHS[0])
test_model_answers_as_declared = every_answer_is_one_the_schema_declares(PATHS[1])
test_predictions_answer_as_declared = every_answer_is_one_the_schema_declares(PATHS[2])
test_batches_answer_as_declared = every_answer_is_one_the_schema_declares(PATHS[3])


def test_every_operation_of_the_schema_is_tested_above():
    assert sorted(result.ok().path for result in schema.get_all_operations()) == sorted(PATHS)


@pytest.mark.parametrize(
    ("path", "field", "photo", "status"),
    [
        ("/api/v1/predictions/", "image", True, HTTPStatus.OK),
        ("/api/v1/predictions/", "image", False, HTTPStatus.UNSUPPORTED_MEDIA_TYPE),
        ("/api/v1/predictions/batch/", "images", True, HTTPStatus.OK),
        ("/api/v1/predictions/batch/", "images", False, HTTPStatus.OK),  # the file's error, in its item
    ],
)
def test_a_classified_image_and_a_refused_one_conform_to_the_schema(path, field, photo, status, example_image):
    """The generated run may draw no lesion photo for an operation: these answers it always checks."""
    data = example_image if photo else b"not an image"
    case = schema[path]["POST"].Case(
        body={field: [data] if field == "images" else data},
        query={"explain": "true"} if field == "image" else None,
        media_type="multipart/form-data",
    )
    assert case.call_and_validate(checks=CHECKS).status_code == status


@pytest.mark.parametrize("checkpoint", ["shipped", "untrained"])
def test_the_model_description_conforms_for_a_checkpoint_that_recorded_everything_or_nothing(checkpoint, request):
    if checkpoint == "untrained":
        request.getfixturevalue("untrained_model")  # no calibration, triage, gate or metrics recorded
    schema["/api/v1/model/"]["GET"].Case().call_and_validate(checks=CHECKS)
