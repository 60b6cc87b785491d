"""Server-rendered pages: upload form, result, batch table, examples, about/privacy, health probes."""

import base64
import io
from http import HTTPStatus
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_safe

from classifier.documents import document_html
from classifier.errors import PredictionError, is_api_request, json_error, request_too_large
from classifier.forms import UploadForm
from classifier.lifecycle import model_ready
from classifier.selectors import (
    class_recalls_list,
    example_cards_get,
    gate_refusals_list,
    learnt_from_imagenet,
    model_describe,
    model_info_get,
)
from classifier.serializers import ResultSerializer
from classifier.services import BatchItem, ImageUpload, example_prediction_create, prediction_create, predictions_create
from classifier.throttles import AnonRateThrottle
from ml import ACCURATE_CHECKPOINT, CLASS_CODES, SHIPPED_CHECKPOINT
from ml.isic_csv import IsicCsvWriter, image_ids

BATCH_CSV_EXTRA = ("prediction", "category", "risk", "refer", "inconclusive", "error", "model_version")


def batch_csv(items: list[BatchItem], *, model_version: str, delimiter: str = ",", decimal: str = ".") -> str:
    """The ISIC 2018 columns for every file, then the triage and, for a file that failed, its error code.

    A classified file's cells are read by name from its result as the API answers it
    (:class:`~classifier.serializers.ResultSerializer`). ``delimiter=";"`` and ``decimal=","`` give the
    file that a spreadsheet in a decimal-comma locale (Excel in Spanish) splits into columns; the
    default is the ISIC file, commas and decimal points.
    """
    buffer = io.StringIO()
    writer = IsicCsvWriter(buffer, extra=BATCH_CSV_EXTRA, delimiter=delimiter, decimal=decimal)
    for item, image in zip(items, image_ids([item.name for item in items])):
        cells: dict[str, object] = dict.fromkeys(BATCH_CSV_EXTRA, "") | {"model_version": model_version}
        probabilities = None
        if item.result is None:
            cells["error"] = item.error.code
        else:
            result = ResultSerializer(item.result).data
            by_code = {p["code"]: p["probability"] for p in result["probabilities"]}
            probabilities = [by_code[code] for code in CLASS_CODES]
            cells |= {
                "prediction": result["prediction"]["code"],
                "category": result["prediction"]["category"],
                "risk": result["risk"]["probability"],
                "refer": int(result["risk"]["refer"]),
                "inconclusive": int(result["inconclusive"]),
            }
        writer.row(image, probabilities, *(cells[column] for column in BATCH_CSV_EXTRA))
    return buffer.getvalue()


def csv_data_uri(text: str) -> str:
    """A download link's ``href`` for ``text``: UTF-8 with a byte-order mark, which Excel needs to read "María"."""
    return "data:text/csv;charset=utf-8;base64," + base64.b64encode(text.encode("utf-8-sig")).decode("ascii")


def batch_summary(items: list[BatchItem]) -> str:
    """The cards counted in one line, by the verdict each card gives: "3 to show a dermatologist, 2 not analysed"."""
    risks = [item.result.risk for item in items if item.result]
    refer = sum(1 for risk in risks if risk.refer)
    near = sum(1 for risk in risks if risk.near)
    few_signs = len(risks) - refer - near
    failed = len(items) - len(risks)
    parts = []
    if refer:
        parts.append(ngettext("%(n)d to show a dermatologist", "%(n)d to show a dermatologist", refer) % {"n": refer})
    if near:
        parts.append(
            ngettext(
                "%(n)d with warning signs just below the line",
                "%(n)d with warning signs just below the line",
                near,
            )
            % {"n": near}
        )
    if few_signs:
        parts.append(
            ngettext("%(n)d with few warning signs", "%(n)d with few warning signs", few_signs) % {"n": few_signs}
        )
    if failed:
        parts.append(ngettext("%(n)d not analysed", "%(n)d not analysed", failed) % {"n": failed})
    return ", ".join(parts)


def by_risk(items: list[BatchItem]) -> list[BatchItem]:
    """Highest risk first; files that could not be classified last, in upload order."""
    return sorted(items, key=lambda item: -item.result.risk.probability if item.result else 1.0)


def render_home(request: HttpRequest, form: UploadForm | None = None, *, status: int = HTTPStatus.OK) -> HttpResponse:
    context = {"form": form or UploadForm(), "examples": example_cards_get()}
    return render(request, "classifier/home.html", context, status=status)


def render_too_large(request: HttpRequest) -> HttpResponse:
    """The form again with the size error: the page of :func:`too_large`."""
    form = UploadForm()
    form.errors["image"] = form.error_class([request_too_large().message])
    return render_home(request, form, status=HTTPStatus.REQUEST_ENTITY_TOO_LARGE)


def throttled(request: HttpRequest, *, count: int = 1) -> HttpResponse | None:
    """The form with a 429 error when this client has used up the API's budget (one budget for both).

    Counts ``count`` images: one per request before its files are read, then the rest of a batch's.
    """
    throttle = AnonRateThrottle()
    if throttle.allow_request(request, view=None, count=count):
        return None
    seconds = int(throttle.wait() or 1)
    form = UploadForm()
    message = _("Too many images from your address; try again in %(s)d seconds.") % {"s": seconds}
    form.errors["image"] = form.error_class([message])
    response = render_home(request, form, status=HTTPStatus.TOO_MANY_REQUESTS)
    response["Retry-After"] = str(seconds)
    return response


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def home(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return render_home(request)
    if (refused := throttled(request)) is not None:
        return refused
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return render_home(request, form, status=HTTPStatus.BAD_REQUEST)
    files = form.cleaned_data["image"]
    if len(files) > 1 and (refused := throttled(request, count=len(files) - 1)) is not None:
        return refused
    uploads = [ImageUpload.from_file(f) for f in files]
    try:
        if len(uploads) == 1:
            result = prediction_create(image=uploads[0], preview=True, explain=True)
            return render(request, "classifier/result.html", {"result": result})
        items = predictions_create(images=uploads, thumbnails=True)
    except PredictionError as error:
        if error.code == "out_of_scope":  # not a form error: the photo was read, and refused
            return render(request, "classifier/refused.html", {"error": error}, status=error.status)
        form.add_error("image", error.message)
        # A form error is the visitor's to fix (400), unless the upload was too large or the model is down.
        status = error.status if error.code in ("too_large", "model_unavailable") else HTTPStatus.BAD_REQUEST
        return render_home(request, form, status=status)
    model = model_info_get()
    version = model.version
    refused = any(item.error and item.error.code == "out_of_scope" for item in items)  # then the page explains why
    context = {
        "items": by_risk(items),
        "summary": batch_summary(items),
        "csv_data_uri": csv_data_uri(batch_csv(items, model_version=version)),
        "csv_semicolon_data_uri": csv_data_uri(batch_csv(items, model_version=version, delimiter=";", decimal=",")),
        "refused": refused,
        "model": model,
    }
    return render(request, "classifier/batch.html", context)


@never_cache
@require_safe
def example(request: HttpRequest, image_id: str) -> HttpResponse:
    if (refused := throttled(request)) is not None:
        return refused
    try:
        example, result = example_prediction_create(image_id=image_id)
    except PredictionError as error:
        if error.code == "unknown_example":
            raise Http404("no such example") from None
        form = UploadForm()
        form.errors["image"] = form.error_class([error.message])
        return render_home(request, form, status=error.status)
    return render(request, "classifier/result.html", {"result": result, "example": example})


def _document_page(request: HttpRequest, path: str, title: str, **extra: Any) -> HttpResponse:
    context = {"title": title, "source": path, "document": document_html(path), **extra}
    return render(request, "classifier/document.html", context)


# The model card's own section for each committed model other than the default (its heading's anchor).
MODEL_CARD_SECTIONS = {ACCURATE_CHECKPOINT.stem: "the-opt-in-accurate-model-efficientnet-lite0-v3"}


@require_safe
def model_card(request: HttpRequest) -> HttpResponse:
    """The card leads with the default model; a page served by another says so before anything else."""
    served = model_info_get() if model_ready() else None
    other = served if served is not None and served.version != SHIPPED_CHECKPOINT.stem else None
    section = MODEL_CARD_SECTIONS.get(other.version) if other else None
    return _document_page(request, "ml/MODEL_CARD.md", _("Model card"), served=other, section=section)


@require_safe
def experiments(request: HttpRequest) -> HttpResponse:
    return _document_page(request, "docs/experiments.md", _("Experiments"))


@require_safe
def about(request: HttpRequest) -> HttpResponse:
    if not model_ready():
        return render(request, "classifier/about.html", {"model": None})
    describe, model = model_describe(), model_info_get()
    context = {
        "model": model,
        "describe": describe,
        "recalls": class_recalls_list(),
        "sources": ", ".join(describe["data"].get("sources") or ["HAM10000"]),
        "gate_rows": gate_refusals_list(describe["gate"]),
        "pretrained": learnt_from_imagenet(model.meta),
        # what it learnt from: the training split, not the validation images counted in data.images
        "training_images": sum((describe["data"].get("train_counts") or {}).values()) or describe["data"].get("images"),
    }
    return render(request, "classifier/about.html", context)


def _api_error(request: HttpRequest, error: PredictionError | str) -> JsonResponse | None:
    """The JSON error for a request under /api/, or None for a page (Django's own page then)."""
    return json_error(error) if is_api_request(request) else None


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    return _api_error(request, "bad_request") or defaults.bad_request(request, exception)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    return _api_error(request, "not_found") or defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    return _api_error(request, "server_error") or defaults.server_error(request)


def too_large(request: HttpRequest, exception: PredictionError) -> HttpResponse:
    """A request declaring a body over the cap, refused by the middleware before it is read."""
    return _api_error(request, exception) or render_too_large(request)


@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers."""
    return JsonResponse({"status": "ok"})


@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: the model is loaded and can answer."""
    if model_ready():
        return JsonResponse({"status": "ready"})
    return JsonResponse({"status": "model not loaded"}, status=HTTPStatus.SERVICE_UNAVAILABLE)
