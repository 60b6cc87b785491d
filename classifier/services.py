"""The only bridge between the web app and ``ml``: load the model once, predict, join admin content."""

import base64
import csv
import dataclasses
import functools
import hashlib
import io
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _
from PIL import Image

from classifier.models import LesionClass
from classifier.uploads import max_file_bytes
from ml import CLASS_CODES
from ml.checkpoint import CheckpointError
from ml.explain import grad_cam, overlay
from ml.predict import Predictor
from ml.preprocessing import MAX_PIXELS, ImageError, normalize

logger = logging.getLogger(__name__)

DISCLAIMER = _(
    "DermAI is for education and research only. It is not a medical device, does not diagnose, "
    "and must not replace a doctor. Anyone worried about a skin lesion should see a dermatologist."
)


# What a visitor reads for each error code, in their language. The codes are the API contract.
ERROR_MESSAGES = {
    "missing_file": _("No image was sent."),
    "too_many_files": _("Too many files: send one image, or at most %(n)s as a batch."),
    "invalid_image": _("The image data is empty, corrupt or truncated."),
    "unsupported_format": _("Unsupported file type: send a JPEG, PNG or WebP image."),
    "too_large": _("The image is larger than the %(mb)s MB limit."),
    "too_many_pixels": _("The image has more than %(megapixels)s megapixels; send a smaller photo."),
    "out_of_scope": _(
        "This does not look like a dermatoscopic photo of a skin lesion (a document, screenshot, "
        "flat or tiny image?). DermAI only classifies dermatoscopic images."
    ),
    "unknown_example": _("There is no such example image."),
}


class PredictionError(Exception):
    """An upload that cannot be classified, with a stable ``code`` and a human ``message``."""

    def __init__(self, code: str) -> None:
        limits = {
            "n": settings.DERMAI_MAX_BATCH_FILES,
            "mb": f"{settings.DERMAI_MAX_UPLOAD_MB:g}",
            "megapixels": MAX_PIXELS // 1_000_000,
        }
        self.code = code
        self.message = str(ERROR_MESSAGES[code]) % limits
        super().__init__(self.message)


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
class ModelInfo:
    name: str
    version: str
    sha256: str
    temperature: float
    meta: dict[str, Any]


@dataclass(frozen=True)
class ClassContent:
    """The admin-managed text of one class, in the active language."""

    code: str
    name: str
    category: str
    category_label: str
    description: str
    reference_url: str


@dataclass(frozen=True)
class ClassProbability(ClassContent):
    probability: float

    @property
    def percent(self) -> float:
        return round(100 * self.probability, 1)


@dataclass(frozen=True)
class PredictionResult:
    model: ModelInfo
    prediction: ClassProbability
    probabilities: list[ClassProbability]  # CLASS_CODES order
    uncertain: bool
    elapsed_ms: float
    image_data_uri: str = ""  # what the model saw, for the page; never stored
    heatmap_data_uri: str = ""  # Grad-CAM overlay, when asked for
    heatmap_png: bytes = field(default=b"", repr=False)

    @property
    def ranked(self) -> list[ClassProbability]:
        return sorted(self.probabilities, key=lambda p: p.probability, reverse=True)


@dataclass(frozen=True)
class BatchItem:
    """One file of a batch: a result, or the error that kept it from one."""

    name: str
    result: PredictionResult | None = None
    error: PredictionError | None = None


# With the default per-process cache, another worker sees an admin edit within this many seconds;
# with a shared CACHE_URL (Redis, database) at once.
CLASS_CONTENTS_SECONDS = 60
CLASS_CONTENTS_KEY = "dermai:class-contents:{language}"


@functools.lru_cache(maxsize=2)
def _load(checkpoint: str) -> tuple[Predictor, ModelInfo]:
    torch.set_num_threads(settings.DERMAI_TORCH_THREADS)
    path = Path(checkpoint)
    predictor = Predictor(path)
    info = ModelInfo(
        name=predictor.meta["arch"],
        version=path.stem,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        temperature=predictor.temperature,
        meta=predictor.meta,
    )
    return predictor, info


def predictor_get() -> tuple[Predictor, ModelInfo]:
    """The configured checkpoint, loaded once per process."""
    return _load(str(settings.DERMAI_CHECKPOINT))


def model_ready() -> bool:
    """Whether the configured checkpoint loads (the readiness probe)."""
    try:
        predictor_get()
    except (OSError, CheckpointError):
        return False
    return True


def model_info_get() -> ModelInfo:
    return predictor_get()[1]


def class_contents_get() -> dict[str, ClassContent]:
    """The admin-managed text of each class in the active language, by code, in ``CLASS_CODES`` order.

    A missing translation falls back to English; a class missing from the database to its code.
    Every result needs it, so it is cached; an admin edit clears the cache (``class_contents_forget``).
    """
    language = (get_language() or settings.LANGUAGE_CODE).split("-")[0]
    key = CLASS_CONTENTS_KEY.format(language=language)
    contents = cache.get(key)
    if contents is None:
        contents = _class_contents_query(language)
        cache.set(key, contents, CLASS_CONTENTS_SECONDS)
    return contents


def class_contents_forget(**kwargs: Any) -> None:
    """Drop the cached class texts once a save or delete of the content models is committed.

    Not at once: a request between the save and the commit would cache the old text again.
    """
    keys = [CLASS_CONTENTS_KEY.format(language=code) for code, _name in settings.LANGUAGES]
    transaction.on_commit(lambda: cache.delete_many(keys))


def _class_contents_query(language: str) -> dict[str, ClassContent]:
    rows = {row.code: row for row in LesionClass.objects.prefetch_related("translations")}
    contents = {}
    for code in CLASS_CODES:
        row = rows.get(code)
        if row is None:
            contents[code] = ClassContent(code, code, "", "", "", "")
            continue
        translated = next((t for t in row.translations.all() if t.language == language), row)
        contents[code] = ClassContent(
            code=code,
            name=translated.name,
            category=row.category,
            category_label=str(row.get_category_display()),
            description=translated.description,
            reference_url=row.reference_url,
        )
    return contents


def _prepare(predictor: Predictor, upload: ImageUpload) -> torch.Tensor:
    if upload.size > max_file_bytes():
        raise PredictionError("too_large")
    try:
        return predictor.prepare(upload.data, guard=True)
    except ImageError as error:
        logger.info("refused an upload: %s (%s)", error.code, error.message)  # never the image bytes
        raise PredictionError(error.code) from None


def _result(
    probs: list[float], *, info: ModelInfo, classes: dict[str, ClassContent], elapsed_ms: float, **images: Any
) -> PredictionResult:
    probabilities = [
        ClassProbability(**dataclasses.asdict(classes[code]), probability=p) for code, p in zip(CLASS_CODES, probs)
    ]
    top = max(probabilities, key=lambda p: p.probability)
    return PredictionResult(
        model=info,
        prediction=top,
        probabilities=probabilities,
        uncertain=top.probability < settings.DERMAI_UNCERTAIN_BELOW,
        elapsed_ms=round(elapsed_ms, 1),
        **images,
    )


def prediction_create(*, image: ImageUpload, preview: bool = False, explain: bool = False) -> PredictionResult:
    """Classify one image held in memory; raise :class:`PredictionError` for unusable input.

    ``preview`` adds the image as the model saw it, ``explain`` a Grad-CAM overlay for the top class.
    """
    predictor, info = predictor_get()
    started = time.perf_counter()
    pixels = _prepare(predictor, image)
    probs = predictor.probabilities(pixels.unsqueeze(0))[0]
    elapsed_ms = (time.perf_counter() - started) * 1000
    images: dict[str, Any] = {}
    if preview:
        images["image_data_uri"] = _data_uri(_png(pixels))
    if explain:
        inputs = normalize(pixels, config=predictor.config).unsqueeze(0)
        cam = grad_cam(predictor.model, inputs, target=int(probs.argmax()))
        images["heatmap_png"] = _png(overlay(pixels, cam))
        images["heatmap_data_uri"] = _data_uri(images["heatmap_png"])
    return _result(probs.tolist(), info=info, classes=class_contents_get(), elapsed_ms=elapsed_ms, **images)


def predictions_create(*, images: list[ImageUpload], thumbnails: bool = False) -> list[BatchItem]:
    """Classify several images in one batched forward pass; a bad file becomes an item error."""
    if not images:
        raise PredictionError("missing_file")
    if len(images) > settings.DERMAI_MAX_BATCH_FILES:
        raise PredictionError("too_many_files")
    predictor, info = predictor_get()
    started = time.perf_counter()
    prepared: dict[int, torch.Tensor] = {}
    errors: dict[int, PredictionError] = {}
    for index, upload in enumerate(images):
        try:
            prepared[index] = _prepare(predictor, upload)
        except PredictionError as error:
            errors[index] = error
    probs = predictor.probabilities(torch.stack(list(prepared.values()))) if prepared else torch.empty(0)
    elapsed_ms = (time.perf_counter() - started) * 1000 / max(1, len(prepared))
    probs_by_index = dict(zip(prepared, probs.tolist()))
    classes = class_contents_get()
    items = []
    for index, upload in enumerate(images):
        if index in errors:
            items.append(BatchItem(name=upload.name, error=errors[index]))
            continue
        extra = {"image_data_uri": _data_uri(_png(prepared[index], size=96))} if thumbnails else {}
        result = _result(probs_by_index[index], info=info, classes=classes, elapsed_ms=elapsed_ms, **extra)
        items.append(BatchItem(name=upload.name, result=result))
    return items


def batch_csv(items: list[BatchItem]) -> str:
    """The ISIC 2018 Task 3 submission columns plus the top class, one row per classified file."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["image", *CLASS_CODES, "prediction"])
    for item in items:
        if item.result is not None:
            probs = [f"{p.probability:.6f}" for p in item.result.probabilities]
            writer.writerow([_as_text_cell(Path(item.name).stem), *probs, item.result.prediction.code])
    return buffer.getvalue()


def _as_text_cell(value: str) -> str:
    """A file name that spreadsheets show as text: one starting with = + - @ would run as a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _png(pixels: torch.Tensor, *, size: int | None = None) -> bytes:
    image = Image.fromarray(pixels.permute(1, 2, 0).numpy())
    if size:
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@dataclass(frozen=True)
class ExampleImage:
    image_id: str
    code: str
    static_path: str


@functools.cache
def examples_list() -> list[ExampleImage]:
    """The committed example images (one per class), with their ground-truth class."""
    with open(settings.DERMAI_EXAMPLES_DIR / "HAM10000_metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    first_per_class: dict[str, str] = {}
    for row in rows:
        first_per_class.setdefault(row["dx"].upper(), row["image_id"])
    return [
        ExampleImage(image_id=first_per_class[code], code=code, static_path=f"examples/{first_per_class[code]}.jpg")
        for code in CLASS_CODES
        if code in first_per_class
    ]


def example_prediction_create(*, image_id: str) -> tuple[ExampleImage, PredictionResult]:
    """Classify one of the committed examples; raise :class:`PredictionError` for an unknown id."""
    example = next((e for e in examples_list() if e.image_id == image_id), None)
    if example is None:
        raise PredictionError("unknown_example")
    data = (settings.DERMAI_EXAMPLES_DIR / "images" / f"{image_id}.jpg").read_bytes()
    upload = ImageUpload(name=f"{image_id}.jpg", data=data, size=len(data))
    return example, prediction_create(image=upload, preview=True, explain=True)


def model_describe() -> dict[str, Any]:
    """What the API and the about page say about the loaded model."""
    info = model_info_get()
    meta = info.meta
    return {
        "name": info.name,
        "version": info.version,
        "sha256": info.sha256,
        "classes": list(CLASS_CODES),
        "parameters": sum(p.numel() for p in predictor_get()[0].model.parameters()),
        "preprocessing": meta["preprocessing"],
        "calibration": {
            "method": "temperature scaling on the validation split",
            "temperature": info.temperature,
            "ece_before": meta["metrics"].get("ece_before"),
            "ece_after": meta["metrics"].get("ece_after"),
        },
        "uncertain_below": settings.DERMAI_UNCERTAIN_BELOW,
        "metrics": meta["metrics"].get("evaluation", {}),
        "data": meta["data"],
    }
