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
    "out_of_scope": (HTTPStatus.UNPROCESSABLE_ENTITY, _("DermAI could not analyse this photo.")),
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


# Why a photo was refused (out_of_scope), in plain words: the guard's reasons (ml.guard.REASONS) and the gate's.
REFUSAL_REASONS: dict[str, Any] = {
    "not_dermatoscopic": _(
        "It does not look like a dermatoscopic image: a close-up taken through a dermatoscope, one skin "
        "lesion filling most of the picture."
    ),
    "too_small": _("The photo is too small to judge."),
    "flat_colour": _("Much of the photo is one flat colour, as in a document, a screenshot or a drawing."),
    "few_colours": _("The photo has too few colours to be a photograph of skin."),
    "greyscale": _("The photo is black and white, like a scan or a page of text."),
    "no_texture": _("The photo has no skin texture; it looks like a drawing or a graphic."),
}
REFUSAL_ADVICE = _("If this spot worries you, show it to a doctor — a refusal says nothing about the lesion.")


class PredictionError(Exception):
    """A request that cannot be answered, with a stable ``code`` and a human ``message``.

    A refused photo (``out_of_scope``) carries the ``reason`` (a :data:`REFUSAL_REASONS` key), its
    ``detail`` in plain words, and for pages a ``thumbnail_png`` of the photo (never stored).
    """

    def __init__(self, code: str, *, reason: str | None = None, thumbnail_png: bytes = b"") -> None:
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
        self.reason = reason
        self.thumbnail_png = thumbnail_png
        super().__init__(self.message)

    @property
    def why(self) -> str | None:
        """Why the photo was refused, in plain words; None for other errors."""
        if self.code != "out_of_scope":
            return None
        return str(REFUSAL_REASONS.get(self.reason or "", REFUSAL_REASONS["not_dermatoscopic"]))

    @property
    def detail(self) -> str | None:
        """Why the photo was refused and what to do (the API's ``detail``); None for other errors."""
        return None if self.why is None else f"{self.why} {REFUSAL_ADVICE}"

    @property
    def advice(self) -> str:
        return str(REFUSAL_ADVICE)


def error_body(code: str, message: str, detail: str | None = None) -> dict[str, Any]:
    """The JSON envelope of every API error; ``detail`` (a refusal's why and what to do) where there is one."""
    error = {"code": code, "message": message} | ({"detail": detail} if detail else {})
    return {"error": error, "disclaimer": str(DISCLAIMER)}
