"""The error contract, in one place: every code, its HTTP status, its message and the JSON envelope.

Views, the API and the middleware all answer errors through this module. Codes are part of the API
contract: never rename one.
"""

from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.utils.translation import gettext_lazy as _

DISCLAIMER = _(
    "DermAI is for education and research only. It is not a medical device, does not diagnose, "
    "and must not replace a doctor. Anyone worried about a skin lesion should see a dermatologist."
)

# code → (HTTP status, what a visitor reads, in their language).
ERRORS: dict[str, tuple[HTTPStatus, Any]] = {
    "missing_file": (HTTPStatus.BAD_REQUEST, _("No image was sent.")),
    "too_many_files": (
        HTTPStatus.BAD_REQUEST,
        _("Too many files: send one image, or at most %(n)s as a batch."),
    ),
    "invalid_image": (HTTPStatus.BAD_REQUEST, _("The image data is empty, corrupt or truncated.")),
    "unsupported_format": (
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        _("Unsupported file type: send a JPEG, PNG or WebP image."),
    ),
    "too_large": (HTTPStatus.REQUEST_ENTITY_TOO_LARGE, _("The image is larger than the %(mb)s MB limit.")),
    "too_many_pixels": (
        HTTPStatus.UNPROCESSABLE_ENTITY,
        _(
            "The image has too many pixels: DermAI decodes up to %(megapixels)s megapixels of JPEG and "
            "%(lossless)s of PNG or WebP. Send a smaller photo."
        ),
    ),
    "too_complex": (
        HTTPStatus.UNPROCESSABLE_ENTITY,
        _("The image is encoded in too many passes to decode safely; save it again as an ordinary JPEG or PNG."),
    ),
    "out_of_scope": (
        HTTPStatus.UNPROCESSABLE_ENTITY,
        _(
            "This does not look like a dermatoscopic image of a skin lesion. DermAI only reads close-ups "
            "taken through a dermatoscope; it refuses other photos rather than guess."
        ),
    ),
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
}


class PredictionError(Exception):
    """A request that cannot be answered, with a stable ``code`` and a human ``message``."""

    def __init__(self, code: str) -> None:
        from ml import preprocessing  # the limits in force when the message is made

        limits = {
            "n": settings.DERMAI_MAX_BATCH_FILES,
            "mb": f"{settings.DERMAI_MAX_UPLOAD_MB:g}",
            "megapixels": preprocessing.MAX_PIXELS // 1_000_000,
            "lossless": preprocessing.MAX_LOSSLESS_PIXELS // 1_000_000,
        }
        self.code = code
        self.status = ERRORS[code][0]
        self.message = str(ERRORS[code][1]) % limits
        super().__init__(self.message)


def error_body(code: str, message: str) -> dict[str, Any]:
    """The JSON envelope of every API error."""
    return {"error": {"code": code, "message": message}, "disclaimer": str(DISCLAIMER)}
