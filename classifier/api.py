"""The JSON API (Django REST Framework): predictions, class content, model description, errors."""

from collections import defaultdict
from collections.abc import Iterable

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import TooManyFilesSent
from django.http import Http404, JsonResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView, set_rollback

from classifier.errors import ERRORS, NOT_AN_ANSWER, PredictionError, json_error
from classifier.selectors import class_contents_get, model_describe, model_info_get
from classifier.serializers import (
    BatchInputSerializer,
    BatchSerializer,
    ErrorSerializer,
    LesionClassListSerializer,
    ModelDescriptionSerializer,
    PredictionInputSerializer,
    PredictionQuerySerializer,
    PredictionSerializer,
)
from classifier.services import ImageUpload, prediction_create, predictions_create
from classifier.throttles import AnonRateThrottle

# DRF's own validation codes for the file fields, as API error codes; any other field's error is
# an invalid_parameter.
FILE_FIELDS = ("image", "images")
VALIDATION_CODES = {
    "required": "missing_file",
    "invalid": "missing_file",
    "no_name": "missing_file",
    "not_a_list": "missing_file",
}
NO_STORE = {"Cache-Control": "no-store"}


def error_responses(codes: Iterable[str]) -> dict[int, OpenApiResponse]:
    """The schema's error answers for ``codes``: one per status, naming its codes (from :data:`ERRORS`)."""
    by_status: dict[int, list[str]] = defaultdict(list)
    for code in codes:
        by_status[ERRORS[code][0]].append(f"`{code}`")
    return {status: OpenApiResponse(ErrorSerializer, ", ".join(names)) for status, names in sorted(by_status.items())}


# What an upload can be answered with: every error that answers an operation as a whole.
ERROR_RESPONSES = error_responses(code for code in ERRORS if code not in NOT_AN_ANSWER)
# What a read can be answered with.
READ_ERROR_RESPONSES = error_responses(["not_acceptable", "throttled", "server_error"])


def api_error(exc: Exception) -> PredictionError | None:
    """The project's error for an exception raised under the API; None for an unexpected one (a 500)."""
    if isinstance(exc, PredictionError):
        return exc
    if isinstance(exc, TooManyFilesSent):  # past DATA_UPLOAD_MAX_NUMBER_FILES, while parsing the body
        return PredictionError("too_many_files")
    if isinstance(exc, Http404):
        return PredictionError("not_found")
    if isinstance(exc, DjangoPermissionDenied):
        return PredictionError("permission_denied")
    if isinstance(exc, exceptions.ValidationError):
        if not isinstance(exc.detail, dict):
            return PredictionError("invalid_parameter", message=str(exc.detail[0]) if exc.detail else None)
        field, errors = next(iter(exc.detail.items()))
        first = errors[0] if isinstance(errors, list) else next(iter(errors.values()))[0]
        code = VALIDATION_CODES.get(first.code, "invalid_parameter") if field in FILE_FIELDS else "invalid_parameter"
        return PredictionError(code, message=f"{field}: {first}")
    if isinstance(exc, exceptions.APIException) and exc.default_code in ERRORS:
        wait = getattr(exc, "wait", None)
        headers = {"Retry-After": str(int(wait))} if wait else None  # as DRF's own handler says it
        return PredictionError(exc.default_code, message=str(exc.detail), headers=headers)
    return None


def exception_handler(exc: Exception, context: dict) -> JsonResponse | None:
    """Every API error becomes the project's error first (:func:`api_error`), then one :func:`json_error`."""
    error = api_error(exc)
    if error is None:
        return None  # re-raised: Django logs it and answers 500 server_error (dermai_site.urls' handler500)
    set_rollback()
    return json_error(error)


class PredictionCreateView(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        request={"multipart/form-data": PredictionInputSerializer},
        parameters=[PredictionQuerySerializer],
        responses={200: PredictionSerializer, **ERROR_RESPONSES},
        summary="Classify one dermatoscopic image",
    )
    def post(self, request: Request) -> Response:
        if len(request.FILES.getlist("image")) > 1:
            raise PredictionError("too_many_files")
        serializer = PredictionInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        query = PredictionQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        upload = ImageUpload.from_file(serializer.validated_data["image"])
        result = prediction_create(image=upload, explain=query.validated_data["explain"])
        return Response(PredictionSerializer(result).data, headers=NO_STORE)


class BatchPredictionCreateView(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        request={"multipart/form-data": BatchInputSerializer},
        responses={200: BatchSerializer, **ERROR_RESPONSES},
        summary="Classify several images in one batched pass; a bad file becomes a per-item error",
    )
    def post(self, request: Request) -> Response:
        serializer = BatchInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        files = serializer.validated_data["images"]
        # The request counted one against the client's rate; each further file counts one more.
        throttle = AnonRateThrottle()
        if len(files) > 1 and not throttle.allow_request(request, self, count=len(files) - 1):
            self.throttled(request, throttle.wait())
        items = predictions_create(images=[ImageUpload.from_file(f) for f in files])
        body = BatchSerializer({"model": model_info_get(), "results": items}).data
        return Response(body, headers=NO_STORE)


class LesionClassListView(APIView):
    @extend_schema(
        responses={200: LesionClassListSerializer, **READ_ERROR_RESPONSES},
        summary="The seven classes and their descriptions",
    )
    def get(self, request: Request) -> Response:
        return Response(LesionClassListSerializer({"classes": class_contents_get().values()}).data)


class ModelInfoView(APIView):
    @extend_schema(
        responses={200: ModelDescriptionSerializer, **READ_ERROR_RESPONSES, **error_responses(["model_unavailable"])},
        summary="The loaded model: classes, preprocessing, calibration, triage, gate, metrics",
    )
    def get(self, request: Request) -> Response:
        return Response(ModelDescriptionSerializer(model_describe()).data)
