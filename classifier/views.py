"""Server-rendered pages: upload form, result, examples, about/privacy, and health probes."""

from http import HTTPStatus

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from classifier.forms import UploadForm
from classifier.services import (
    PredictionError,
    example_prediction_create,
    examples_list,
    model_info_get,
    model_ready,
    prediction_create,
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
    form = UploadForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            result = prediction_create(image=form.cleaned_data["image"].read(), preview=True)
        except PredictionError as error:
            form.add_error("image", error.message)
        else:
            return render(request, "classifier/result.html", {"result": result})
    too_large = any(e.code == "too_large" for e in form.errors.as_data().get("image", []))
    return render_home(
        request, form, status=HTTPStatus.REQUEST_ENTITY_TOO_LARGE if too_large else HTTPStatus.BAD_REQUEST
    )


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
