"""The error contract, in one place: every code, its HTTP status, its message, the JSON envelope and
the one response that carries it.

Pages, the API, the middleware and the gunicorn worker all answer errors through this module. Codes
are part of the API contract: never rename one.
"""

from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.http import JsonResponse
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions

from ml import preprocessing
from ml.preprocessing import ImageErrorCode, Refusal

API_PREFIX = "/api/"

DISCLAIMER = _(
    "DermAI is for education and research only. It is not a medical device, does not diagnose, "
    "and must not replace a doctor. Anyone worried about a skin lesion should see a dermatologist."
)

# code → (HTTP status, what a visitor reads, in their language). Every code of ml's ImageErrorCode
# has its entry (tests/classifier/test_errors.py fails when one has none).
ERRORS: dict[str, tuple[HTTPStatus, Any]] = {
    "missing_file": (HTTPStatus.BAD_REQUEST, _("No image was sent.")),
    "too_many_files": (
        HTTPStatus.BAD_REQUEST,
        _("Too many files: send one image, or at most %(n)s as a batch."),
    ),
    # The message names the parameter and what is wrong with it (DRF's validation message).
    "invalid_parameter": (HTTPStatus.BAD_REQUEST, _("A parameter has a value it cannot take.")),
    ImageErrorCode.INVALID_IMAGE: (HTTPStatus.BAD_REQUEST, _("The image data is empty, corrupt or truncated.")),
    ImageErrorCode.UNSUPPORTED_FORMAT: (
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        _("Unsupported file type: send a JPEG, PNG or WebP image."),
    ),
    "too_large": (HTTPStatus.REQUEST_ENTITY_TOO_LARGE, _("The image is larger than the %(mb)s MB limit.")),
    ImageErrorCode.TOO_MANY_PIXELS: (
        HTTPStatus.UNPROCESSABLE_ENTITY,
        _(
            "The image has too many pixels: DermAI decodes up to %(megapixels)s megapixels of JPEG and "
            "%(lossless)s of PNG or WebP. Send a smaller photo."
        ),
    ),
    ImageErrorCode.TOO_COMPLEX: (
        HTTPStatus.UNPROCESSABLE_ENTITY,
        _(
            "The image is encoded in a way too costly to decode safely (too many passes, segments or chunks, "
            "or padding); save it again as an ordinary JPEG or PNG."
        ),
    ),
    "batch_over_budget": (
        HTTPStatus.UNPROCESSABLE_ENTITY,
        _(
            "This image did not fit in what one batch may take to decode; send it again on its own or in a "
            "smaller batch."
        ),
    ),
    ImageErrorCode.OUT_OF_SCOPE: (HTTPStatus.UNPROCESSABLE_ENTITY, _("DermAI could not analyse this photo.")),
    "unknown_example": (HTTPStatus.NOT_FOUND, _("There is no such example image.")),
    "length_required": (
        HTTPStatus.LENGTH_REQUIRED,
        _("Send the upload with a Content-Length header; chunked uploads are not accepted."),
    ),
    "model_unavailable": (
        HTTPStatus.SERVICE_UNAVAILABLE,
        _("The model is not available right now; try again later."),
    ),
    # Django's own refusals, answered as JSON under /api/ (dermai_site.urls handlers).
    "bad_request": (HTTPStatus.BAD_REQUEST, _("The request is malformed.")),
    "not_found": (HTTPStatus.NOT_FOUND, _("There is nothing at this address.")),
    "server_error": (HTTPStatus.INTERNAL_SERVER_ERROR, _("Something went wrong on our side; try again later.")),
    # DRF's own refusals keep DRF's codes, statuses and (more specific) messages.
    **{
        drf.default_code: (HTTPStatus(drf.status_code), drf.default_detail)
        for drf in (
            exceptions.ParseError,
            exceptions.MethodNotAllowed,
            exceptions.NotAcceptable,
            exceptions.UnsupportedMediaType,
            exceptions.Throttled,
            # No operation asks for credentials today; a permission class added later answers 401/403, not 500.
            exceptions.NotAuthenticated,
            exceptions.AuthenticationFailed,
            exceptions.PermissionDenied,
        )
    },
}
# Codes that never answer an API operation as a whole (an address's 404, a page's, a batch file's own
# error), or that none can raise while the API asks for no credentials: left out of the schema.
NOT_AN_ANSWER = frozenset(
    {
        "not_found",
        "unknown_example",
        "batch_over_budget",
        "not_authenticated",
        "authentication_failed",
        "permission_denied",
    }
)

# A request that declares a body over DERMAI_MAX_REQUEST_MB: too_large, with the request's limit.
REQUEST_TOO_LARGE = _("The upload is larger than the %(mb)s MB limit for one request.")


# Why a photo was refused (out_of_scope), in plain words: one for every ml Refusal, the guard's and the gate's.
REFUSAL_REASONS: dict[Refusal, Any] = {
    Refusal.NOT_DERMATOSCOPIC: _(
        "It does not look like a dermatoscopic image: a close-up taken through a dermatoscope, one skin "
        "lesion filling most of the picture. If it is one, send the whole image as the dermatoscope saved "
        "it: a cropped or zoomed-in part of one is harder to recognise."
    ),
    Refusal.TOO_SMALL: _("The photo is too small to judge."),
    Refusal.FLAT_COLOUR: _("Much of the photo is one flat colour, as in a document, a screenshot or a drawing."),
    Refusal.FEW_COLOURS: _("The photo has too few colours to be a photograph of skin."),
    Refusal.GREYSCALE: _("The photo is black and white, like a scan or a page of text."),
    Refusal.NO_TEXTURE: _("The photo has no skin texture; it looks like a drawing or a graphic."),
}
REFUSAL_ADVICE = _("If this spot worries you, show it to a doctor — a refusal says nothing about the lesion.")


class PredictionError(Exception):
    """A request that cannot be answered, with a stable ``code`` and a human ``message``.

    ``message`` replaces the code's own where the request says more (which parameter, which limit);
    ``headers`` go with the answer (``Retry-After``). A refused photo (``out_of_scope``) carries the
    ``reason`` (an :class:`ml.preprocessing.Refusal`), its ``detail`` in plain words, and for pages a
    ``thumbnail_png`` of the photo (never stored).
    """

    def __init__(
        self,
        code: str,
        *,
        message: str | None = None,
        reason: Refusal | None = None,
        thumbnail_png: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> None:
        limits = {  # the limits in force when the message is made
            "n": settings.DERMAI_MAX_BATCH_FILES,
            "mb": f"{settings.DERMAI_MAX_UPLOAD_MB:g}",
            "megapixels": preprocessing.MAX_PIXELS // 1_000_000,
            "lossless": preprocessing.MAX_LOSSLESS_PIXELS // 1_000_000,
        }
        self.code = str(code)
        self.status = ERRORS[code][0]
        self.message = message or str(ERRORS[code][1]) % limits
        self.reason = reason
        self.thumbnail_png = thumbnail_png
        self.headers = headers or {}
        super().__init__(self.message)

    @property
    def why(self) -> str | None:
        """Why the photo was refused, in plain words; None for other errors."""
        if self.code != ImageErrorCode.OUT_OF_SCOPE:
            return None
        return str(REFUSAL_REASONS[self.reason or Refusal.NOT_DERMATOSCOPIC])

    @property
    def detail(self) -> str | None:
        """Why the photo was refused and what to do (the API's ``detail``); None for other errors."""
        return None if self.why is None else f"{self.why} {REFUSAL_ADVICE}"

    @property
    def advice(self) -> str:
        return str(REFUSAL_ADVICE)

    def as_dict(self) -> dict[str, str]:
        """The envelope's ``error``, and a batch file's: ``code``, ``message`` and, for a refusal, ``detail``."""
        return {"code": self.code, "message": self.message} | ({"detail": self.detail} if self.detail else {})


def request_too_large() -> PredictionError:
    """``too_large`` for a request that declares more than ``DERMAI_MAX_REQUEST_MB``, with that limit."""
    return PredictionError("too_large", message=str(REQUEST_TOO_LARGE) % {"mb": f"{settings.DERMAI_MAX_REQUEST_MB:g}"})


def with_disclaimer(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with the disclaimer: every JSON answer of the API gets it here, results and errors alike."""
    return {**body, "disclaimer": str(DISCLAIMER)}


def json_error(error: PredictionError | str) -> JsonResponse:
    """The one JSON answer of every API error: ``{"error": {"code", "message"[, "detail"]}, "disclaimer"}``."""
    if isinstance(error, str):
        error = PredictionError(error)
    return JsonResponse(with_disclaimer({"error": error.as_dict()}), status=error.status, headers=error.headers)


def is_api_request(request: Any) -> bool:
    """Whether a request (Django's, or gunicorn's when Django never saw it) is the API's, answered in JSON."""
    return request.path.startswith(API_PREFIX)
