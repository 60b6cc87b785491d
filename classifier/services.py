"""Commands: classify uploads and examples with the loaded model, join the admin-managed texts.

With :mod:`classifier.selectors` (the reads) and :mod:`classifier.lifecycle` (the loaded model), the
only bridge between the web app and ``ml``.
"""

import dataclasses
import io
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from PIL import Image

from classifier.errors import PredictionError
from classifier.lifecycle import ModelInfo, predictor_get
from classifier.selectors import (
    CLASS_CONTENTS_KEY,
    ClassContent,
    ExampleImage,
    class_contents_get,
    class_recalls_get,
    examples_list,
    model_info_get,
    triage_get,
)
from classifier.uploads import max_file_bytes
from ml import CLASS_CODES
from ml.inference import Predictor, Upload
from ml.preprocessing import ImageError, Refusal, decoding_cost, resize

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageUpload:
    """One uploaded file as the views hand it over: its name, its bytes and its true size."""

    name: str
    data: bytes
    size: int

    @classmethod
    def from_file(cls, file) -> "ImageUpload":
        """From a Django ``UploadedFile`` (held in memory by ``MemoryOnlyUploadHandler``)."""
        return cls(name=file.name or "", data=file.read(), size=file.size)


@dataclass(frozen=True)
class ClassProbability(ClassContent):
    """One class of a result: its admin-managed text, calibrated probability and validation recall."""

    probability: float
    recall: float | None = None  # share of this class's validation images the model finds

    @property
    def percent(self) -> float:
        return round(100 * self.probability, 1)


@dataclass(frozen=True)
class Risk:
    """The grouped risk of skin cancer or a precancer: P(MEL) + P(BCC) + P(AKIEC), calibrated.

    ``refer`` when it reaches ``threshold``, chosen on validation images for the stated
    ``sensitivity`` to malignant and precancerous lesions (None where not measured).
    """

    probability: float
    refer: bool
    near: bool  # not referred, but too close to the threshold to reassure (ml.triage.NEAR_SHARE)
    threshold: float
    sensitivity: float | None
    specificity: float | None
    fullres: dict[str, Any] | None = None  # melanomas referred at another hospital's full resolution (selectors)

    @property
    def percent(self) -> float:
        return round(100 * self.probability, 1)


# Pages show the photo and its Grad-CAM this wide (or tall) at most, in the upload's aspect ratio,
# and a thumbnail of the photo beside the verdict.
DISPLAY_SIZE = 320
THUMBNAIL_SIZE = 96


@dataclass(frozen=True)
class PredictionResult:
    """Everything a page or the API says about one classified image; images only live in memory."""

    model: ModelInfo
    prediction: ClassProbability
    probabilities: list[ClassProbability]  # CLASS_CODES order
    uncertain: bool
    elapsed_ms: float
    risk: Risk
    inconclusive: bool  # no class stands out enough to name one (the triage policy's rule)
    preview_png: bytes = field(default=b"", repr=False)  # what the model saw, for the page; never stored
    thumbnail_png: bytes = field(default=b"", repr=False)  # the same, small, beside the page's verdict
    heatmap_png: bytes = field(default=b"", repr=False)  # Grad-CAM overlay: pages in the preview's shape, API 224×224
    display_width: int = DISPLAY_SIZE  # the preview's size, in the uploaded image's aspect ratio
    display_height: int = DISPLAY_SIZE
    heat_off_centre: bool = False  # most of the Grad-CAM heat lies off the image's centre (ml.explain)

    @property
    def ranked(self) -> list[ClassProbability]:
        return sorted(self.probabilities, key=lambda p: p.probability, reverse=True)

    @property
    def top3(self) -> list[ClassProbability]:
        return self.ranked[:3]

    @property
    def reassuring(self) -> bool:
        """Whether a page may show a benign diagnosis in reassuring green: a named diagnosis, with the
        risk clearly below the referral line (neither inconclusive, nor referred, nor near it)."""
        return not self.inconclusive and not self.risk.refer and not self.risk.near


@dataclass(frozen=True)
class BatchItem:
    """One file of a batch: a result, or the error that kept it from one."""

    name: str
    result: PredictionResult | None = None
    error: PredictionError | None = None


def class_contents_forget(**kwargs: Any) -> None:
    """Drop the cached class texts once a save or delete of the content models is committed.

    Not at once: a request between the save and the commit would cache the old text again.
    """
    keys = [CLASS_CONTENTS_KEY.format(language=code) for code, _name in settings.LANGUAGES]
    transaction.on_commit(lambda: cache.delete_many(keys))


def _read(predictor: Predictor, upload: ImageUpload) -> Upload:
    if upload.size > max_file_bytes():
        raise PredictionError("too_large")
    try:
        return predictor.read_upload(upload.data)
    except ImageError as error:
        logger.info("refused an upload: %s (%s)", error.code, error.message)  # never the image bytes
        code, reason = error.code, error.reason
    # Raised outside the handler, so the error carries no context: a stored error would otherwise
    # keep the ImageError's frames, the request and its uploads alive until a full garbage collection.
    raise PredictionError(code, reason=reason)


def _cost(upload: ImageUpload) -> int:
    """What decoding this upload would cost (:func:`ml.preprocessing.decoding_cost`); 0 for one that
    :func:`_read` refuses before decoding, with its own code."""
    if upload.size > max_file_bytes():
        return 0
    try:
        return decoding_cost(upload.data)
    except ImageError:
        return 0


def _refusal(reason: Refusal, *, thumbnail: bytes = b"") -> PredictionError:
    logger.info("refused an upload: out_of_scope (%s)", reason)
    return PredictionError("out_of_scope", reason=reason, thumbnail_png=thumbnail)


def _result(
    probs: list[float], *, info: ModelInfo, classes: dict[str, ClassContent], elapsed_ms: float, **images: Any
) -> PredictionResult:
    recalls = class_recalls_get()
    probabilities = [
        ClassProbability(**dataclasses.asdict(classes[code]), probability=p, recall=recalls.get(code))
        for code, p in zip(CLASS_CODES, probs)
    ]
    top = max(probabilities, key=lambda p: p.probability)
    triage = triage_get()
    policy, measured = triage["policy"], triage["measured"]
    decisions = policy.decide(torch.tensor([probs]))
    return PredictionResult(
        model=info,
        prediction=top,
        probabilities=probabilities,
        uncertain=top.probability < settings.DERMAI_UNCERTAIN_BELOW,
        elapsed_ms=round(elapsed_ms, 1),
        risk=Risk(
            probability=float(decisions.risk[0]),
            refer=bool(decisions.refer[0]),
            near=bool(decisions.near[0]),
            threshold=policy.refer_at,
            sensitivity=measured.get("sensitivity"),
            specificity=measured.get("specificity"),
            fullres=triage.get("fullres"),
        ),
        inconclusive=bool(decisions.inconclusive[0]),
        **images,
    )


def prediction_create(*, image: ImageUpload, preview: bool = False, explain: bool = False) -> PredictionResult:
    """Classify one image held in memory; raise :class:`PredictionError` for unusable input.

    ``preview`` adds the image as the model saw it, ``explain`` a Grad-CAM overlay for the top class.
    """
    predictor, info = predictor_get()
    started = time.perf_counter()
    upload = _read(predictor, image)
    pixels = upload.pixels
    # Shown in the uploaded image's aspect ratio (the model sees it squeezed to a square).
    height, width = upload.size
    scale = DISPLAY_SIZE / max(height, width)
    display = (max(1, round(height * scale)), max(1, round(width * scale)))
    refusal = upload.refusal  # the guard's: clearly not a lesion photo
    if refusal is None:
        assessment = predictor.assess(pixels.unsqueeze(0))
        refusal = Refusal.NOT_DERMATOSCOPIC if assessment.out_of_scope[0] else None
    if refusal is not None:
        raise _refusal(refusal, thumbnail=_png(resize(pixels, display)) if preview else b"")
    probs = assessment.probabilities[0]
    elapsed_ms = (time.perf_counter() - started) * 1000
    images: dict[str, Any] = {"display_height": display[0], "display_width": display[1]}
    if preview:
        images["preview_png"] = _png(resize(pixels, display))
        small = THUMBNAIL_SIZE / DISPLAY_SIZE
        images["thumbnail_png"] = _png(resize(pixels, (round(display[0] * small), round(display[1] * small))))
    if explain:
        explanation = predictor.explain(pixels, target=int(probs.argmax()))
        # Pages show it beside the preview, in the upload's aspect ratio; the API over the 224×224 model input.
        heatmap = explanation.overlay
        images["heatmap_png"] = _png(resize(heatmap, display) if preview else heatmap)
        images["heat_off_centre"] = explanation.off_centre
    return _result(probs.tolist(), info=info, classes=class_contents_get(), elapsed_ms=elapsed_ms, **images)


def predictions_create(*, images: list[ImageUpload], thumbnails: bool = False) -> list[BatchItem]:
    """Classify several images in one batched forward pass; a bad file becomes an item error.

    The files share one decoding budget (``DERMAI_MAX_BATCH_PIXEL_SCANS``), spent in upload order and
    read from their headers before anything is decoded: a file that would take the batch past it is
    not decoded and becomes a ``batch_over_budget`` item error; later, cheaper files may still fit.
    Once decoding has taken ``DERMAI_BATCH_DEADLINE_SECONDS``, no further file is decoded either.
    """
    if not images:
        raise PredictionError("missing_file")
    if len(images) > settings.DERMAI_MAX_BATCH_FILES:
        raise PredictionError("too_many_files")
    predictor, info = predictor_get()
    started = time.perf_counter()
    prepared: dict[int, torch.Tensor] = {}
    errors: dict[int, PredictionError] = {}
    spent = 0
    for index, image in enumerate(images):
        cost = _cost(image)
        if spent + cost > settings.DERMAI_MAX_BATCH_PIXEL_SCANS:
            logger.info("refused an upload: batch_over_budget (%d pixel-scans after %d)", cost, spent)
            errors[index] = PredictionError("batch_over_budget")
            continue
        if time.perf_counter() - started > settings.DERMAI_BATCH_DEADLINE_SECONDS:
            logger.info("refused an upload: batch_over_budget (decoding past its deadline)")
            errors[index] = PredictionError("batch_over_budget")
            continue
        spent += cost
        try:
            upload = _read(predictor, image)
        except PredictionError as error:
            errors[index] = error.with_traceback(None)  # kept: without its frames (and this one's uploads)
            continue
        if upload.refusal is not None:
            errors[index] = _refusal(
                upload.refusal, thumbnail=_png(upload.pixels, size=THUMBNAIL_SIZE) if thumbnails else b""
            )
        else:
            prepared[index] = upload.pixels
    probs_by_index = {}
    if prepared:
        assessment = predictor.assess(torch.stack(list(prepared.values())))
        for index, probs, refused in zip(prepared, assessment.probabilities.tolist(), assessment.out_of_scope):
            if refused:
                thumbnail = _png(prepared[index], size=THUMBNAIL_SIZE) if thumbnails else b""
                errors[index] = _refusal(Refusal.NOT_DERMATOSCOPIC, thumbnail=thumbnail)
            else:
                probs_by_index[index] = probs
    elapsed_ms = (time.perf_counter() - started) * 1000 / max(1, len(prepared))
    classes = class_contents_get()
    items = []
    for index, upload in enumerate(images):
        if index in errors:
            items.append(BatchItem(name=upload.name, error=errors[index]))
            continue
        extra = {"preview_png": _png(prepared[index], size=THUMBNAIL_SIZE)} if thumbnails else {}
        result = _result(probs_by_index[index], info=info, classes=classes, elapsed_ms=elapsed_ms, **extra)
        items.append(BatchItem(name=upload.name, result=result))
    return items


def _png(pixels: torch.Tensor, *, size: int | None = None) -> bytes:
    image = Image.fromarray(pixels.permute(1, 2, 0).numpy())
    if size:
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


EXAMPLE_KEY = "dermai:example:{image_id}:{sha256}"


def example_prediction_create(*, image_id: str) -> tuple[ExampleImage, PredictionResult]:
    """Classify one of the committed examples; raise :class:`PredictionError` for an unknown id.

    The model's answer for an example never changes, so it is computed once per model (by its
    sha256) and kept in the shared cache; the class texts are joined afresh, in the visitor's language.
    """
    example = next((e for e in examples_list() if e.image_id == image_id), None)
    if example is None:
        raise PredictionError("unknown_example")
    info = model_info_get()
    key = EXAMPLE_KEY.format(image_id=image_id, sha256=info.sha256)
    answer = cache.get(key)
    if answer is None:
        data = (settings.DERMAI_EXAMPLES_DIR / "images" / f"{image_id}.jpg").read_bytes()
        result = prediction_create(
            image=ImageUpload(name=f"{image_id}.jpg", data=data, size=len(data)), preview=True, explain=True
        )
        images = ("preview_png", "thumbnail_png", "heatmap_png", "display_width", "display_height", "heat_off_centre")
        answer = {
            "probabilities": [p.probability for p in result.probabilities],
            "elapsed_ms": result.elapsed_ms,
            "images": {name: getattr(result, name) for name in images},
        }
        cache.set(key, answer, timeout=None)
    result = _result(
        answer["probabilities"],
        info=info,
        classes=class_contents_get(),
        elapsed_ms=answer["elapsed_ms"],
        **answer["images"],
    )
    return example, result
