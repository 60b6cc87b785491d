"""The JSON API (Django REST Framework): predictions, class content, model description, errors."""

from http import HTTPStatus

from django.core.exceptions import TooManyFilesSent
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from classifier.errors import DISCLAIMER, ERRORS, PredictionError, error_body
from classifier.selectors import class_contents_get, model_describe, model_info_get
from classifier.serializers import (
    BatchInputSerializer,
    BatchItemSerializer,
    BatchSerializer,
    ErrorSerializer,
    LesionClassListSerializer,
    LesionClassSerializer,
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
    "empty": "invalid_image",
}
ERROR_RESPONSES = {status: OpenApiResponse(ErrorSerializer) for status in (400, 411, 413, 415, 422, 429, 503)}
NO_STORE = {"Cache-Control": "no-store"}


def error_response(code: str, message: str, status: int, detail: str | None = None) -> Response:
    return Response(error_body(code, message, detail), status=status)


def exception_handler(exc, context):
    """Every API error as ``{"error": {"code", "message"}, "disclaimer"}`` with a 4xx status."""
    if isinstance(exc, TooManyFilesSent):  # past DATA_UPLOAD_MAX_NUMBER_FILES, while parsing the body
        exc = PredictionError("too_many_files")
    if isinstance(exc, PredictionError):
        return error_response(exc.code, exc.message, exc.status, exc.detail)
    if isinstance(exc, exceptions.ValidationError) and isinstance(exc.detail, dict):
        field, errors = next(iter(exc.detail.items()))
        first = errors[0] if isinstance(errors, list) else next(iter(errors.values()))[0]
        code = VALIDATION_CODES.get(first.code, first.code) if field in FILE_FIELDS else "invalid_parameter"
        status = ERRORS[code][0] if code in ERRORS else HTTPStatus.BAD_REQUEST
        return error_response(code, f"{field}: {first}", status)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.APIException):
        response.data = error_body(exc.default_code, str(exc.detail))
    return response


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
        info = model_info_get()
        body = {
            "model": {"name": info.name, "version": info.version, "sha256": info.sha256},
            "results": BatchItemSerializer(items, many=True).data,
            "disclaimer": str(DISCLAIMER),
        }
        return Response(body, headers=NO_STORE)


class LesionClassListView(APIView):
    @extend_schema(responses=LesionClassListSerializer, summary="The seven classes and their descriptions")
    def get(self, request: Request) -> Response:
        classes = LesionClassSerializer(class_contents_get().values(), many=True).data
        return Response({"classes": classes, "disclaimer": str(DISCLAIMER)})


class ModelInfoView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT, summary="The loaded model: classes, preprocessing, calibration")
    def get(self, request: Request) -> Response:
        return Response({**model_describe(), "disclaimer": str(DISCLAIMER)})
