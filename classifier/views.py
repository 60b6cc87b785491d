"""Server-rendered pages: upload form, result, batch table, examples, about/privacy, health probes."""

import base64
from http import HTTPStatus

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods
from rest_framework.throttling import AnonRateThrottle

from classifier.forms import UploadForm
from classifier.services import (
    ImageUpload,
    PredictionError,
    batch_csv,
    example_prediction_create,
    examples_list,
    model_info_get,
    model_ready,
    prediction_create,
    predictions_create,
)
from classifier.uploads import too_large_message


def render_home(request: HttpRequest, form: UploadForm | None = None, *, status: int = HTTPStatus.OK) -> HttpResponse:
    context = {"form": form or UploadForm(), "examples": examples_list()}
    return render(request, "classifier/home.html", context, status=status)


def render_too_large(request: HttpRequest) -> HttpResponse:
    """The form again with the size error; used by the middleware before the body is read."""
    form = UploadForm()
    form.errors["image"] = form.error_class([too_large_message()])
    return render_home(request, form, status=HTTPStatus.REQUEST_ENTITY_TOO_LARGE)


@never_cache
@require_http_methods(["GET", "POST"])
def home(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return render_home(request)
    throttle = AnonRateThrottle()  # the API's budget per client, shared with the form
    if not throttle.allow_request(request, view=None):
        form = UploadForm()
        message = _("Too many images from your address; try again in %(s)d seconds.") % {"s": throttle.wait() or 1}
        form.errors["image"] = form.error_class([message])
        return render_home(request, form, status=HTTPStatus.TOO_MANY_REQUESTS)
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return render_home(request, form, status=HTTPStatus.BAD_REQUEST)
    uploads = [ImageUpload.from_file(f) for f in form.cleaned_data["image"]]
    try:
        if len(uploads) == 1:
            result = prediction_create(image=uploads[0], preview=True, explain=True)
            return render(request, "classifier/result.html", {"result": result})
        items = predictions_create(images=uploads, thumbnails=True)
    except PredictionError as error:
        form.add_error("image", error.message)
        status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE if error.code == "too_large" else HTTPStatus.BAD_REQUEST
        return render_home(request, form, status=status)
    csv_data_uri = "data:text/csv;base64," + base64.b64encode(batch_csv(items).encode()).decode("ascii")
    return render(request, "classifier/batch.html", {"items": items, "csv_data_uri": csv_data_uri})


@never_cache
@require_GET
def example(request: HttpRequest, image_id: str) -> HttpResponse:
    try:
        example, result = example_prediction_create(image_id=image_id)
    except PredictionError:
        raise Http404("no such example") from None
    return render(request, "classifier/result.html", {"result": result, "example": example})


@require_GET
def about(request: HttpRequest) -> HttpResponse:
    return render(request, "classifier/about.html", {"model": model_info_get() if model_ready() else None})


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers."""
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: the model is loaded and can answer."""
    if model_ready():
        return JsonResponse({"status": "ready"})
    return JsonResponse({"status": "model not loaded"}, status=HTTPStatus.SERVICE_UNAVAILABLE)
