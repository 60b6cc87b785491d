"""The only bridge between the web app and ``ml``: load the model once, predict, join admin content."""

import base64
import csv
import dataclasses
import functools
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
from PIL import Image

from classifier.errors import PredictionError
from classifier.models import LesionClass
from classifier.uploads import max_file_bytes
from ml import CLASS_CODES
from ml.checkpoint import CheckpointError
from ml.predict import Predictor
from ml.preprocessing import ImageError, resize
from ml.triage import UNMEASURED_POLICY, TriagePolicy, risk

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
    recall: float | None = None  # share of this class's validation images the model finds

    @property
    def percent(self) -> float:
        return round(100 * self.probability, 1)

    @property
    def found_in_10(self) -> int | None:
        """ "Finds about N in 10" of this class on validation."""
        return None if self.recall is None else round(10 * self.recall)


@dataclass(frozen=True)
class Risk:
    """The grouped risk of skin cancer or a precancer: P(MEL) + P(BCC) + P(AKIEC), calibrated.

    ``refer`` when it reaches ``threshold``, chosen on validation images for the stated
    ``sensitivity`` to malignant and precancerous lesions (None where not measured).
    """

    probability: float
    refer: bool
    threshold: float
    sensitivity: float | None
    specificity: float | None

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
    risk: Risk
    inconclusive: bool  # no class stands out enough to name one (the triage policy's rule)
    image_data_uri: str = ""  # what the model saw, for the page; never stored
    heatmap_data_uri: str = ""  # Grad-CAM overlay, when asked for
    heatmap_png: bytes = field(default=b"", repr=False)
    display_width: int = 224  # the preview's size, in the uploaded image's aspect ratio
    display_height: int = 224

    @property
    def ranked(self) -> list[ClassProbability]:
        return sorted(self.probabilities, key=lambda p: p.probability, reverse=True)

    @property
    def top3(self) -> list[ClassProbability]:
        return self.ranked[:3]


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
        sha256=predictor.sha256,
        temperature=predictor.temperature,
        meta=predictor.meta,
    )
    return predictor, info


def predictor_get() -> tuple[Predictor, ModelInfo]:
    """The configured checkpoint, loaded once per process; ``model_unavailable`` when it cannot be."""
    try:
        return _load(str(settings.DERMAI_CHECKPOINT))
    except (OSError, CheckpointError) as error:
        logger.error("the model cannot be loaded from %s: %s", settings.DERMAI_CHECKPOINT, error)
        raise PredictionError("model_unavailable") from None


def model_ready() -> bool:
    """Whether the configured checkpoint loads (the readiness probe)."""
    try:
        predictor_get()
    except PredictionError:
        return False
    return True


def model_info_get() -> ModelInfo:
    return predictor_get()[1]


def class_recalls_get() -> dict[str, float]:
    """Each class's recall on the loaded checkpoint's validation split (empty when not recorded)."""
    validation = model_info_get().meta["metrics"].get("evaluation", {}).get("validation", {})
    return {code: row["recall"] for code, row in validation.get("per_class", {}).items()}


def class_recalls_list() -> list[ClassProbability]:
    """Each class with its validation recall, for "finds about N in 10" (probability left at 0)."""
    recalls = class_recalls_get()
    return [
        ClassProbability(**dataclasses.asdict(content), probability=0.0, recall=recalls[code])
        for code, content in class_contents_get().items()
        if code in recalls
    ]


def triage_get() -> dict[str, Any]:
    """The loaded checkpoint's triage policy and what it measured, or the cautious unmeasured default."""
    triage = model_info_get().meta["metrics"].get("triage")
    if not triage:
        return {"policy": UNMEASURED_POLICY, "measured": {}}
    return {"policy": TriagePolicy(**triage["policy"]), "measured": triage.get("measured", {})}


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


def _prepare(predictor: Predictor, upload: ImageUpload) -> tuple[torch.Tensor, tuple[int, int]]:
    if upload.size > max_file_bytes():
        raise PredictionError("too_large")
    try:
        return predictor.prepare_with_size(upload.data, guard=True)
    except ImageError as error:
        logger.info("refused an upload: %s (%s)", error.code, error.message)  # never the image bytes
        raise PredictionError(error.code) from None


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
    grouped = float(risk(torch.tensor([probs]))[0])
    return PredictionResult(
        model=info,
        prediction=top,
        probabilities=probabilities,
        uncertain=top.probability < settings.DERMAI_UNCERTAIN_BELOW,
        elapsed_ms=round(elapsed_ms, 1),
        risk=Risk(
            probability=grouped,
            refer=grouped >= policy.refer_at,
            threshold=policy.refer_at,
            sensitivity=measured.get("sensitivity"),
            specificity=measured.get("specificity"),
        ),
        inconclusive=top.probability < policy.inconclusive_below,
        **images,
    )


def prediction_create(*, image: ImageUpload, preview: bool = False, explain: bool = False) -> PredictionResult:
    """Classify one image held in memory; raise :class:`PredictionError` for unusable input.

    ``preview`` adds the image as the model saw it, ``explain`` a Grad-CAM overlay for the top class.
    """
    predictor, info = predictor_get()
    started = time.perf_counter()
    pixels, source_size = _prepare(predictor, image)
    assessment = predictor.assess(pixels.unsqueeze(0))
    if assessment.out_of_scope[0]:
        logger.info("refused an upload: out_of_scope (gate score %.2f)", float(assessment.gate_scores[0]))
        raise PredictionError("out_of_scope")
    probs = assessment.probabilities[0]
    elapsed_ms = (time.perf_counter() - started) * 1000
    # Shown in the uploaded image's aspect ratio (the model sees it squeezed to a square).
    height, width = source_size
    scale = 224 / max(height, width)
    display = (max(1, round(height * scale)), max(1, round(width * scale)))
    images: dict[str, Any] = {"display_height": display[0], "display_width": display[1]}
    if preview:
        images["image_data_uri"] = _data_uri(_png(resize(pixels, display)))
    if explain:
        heatmap = predictor.explain(pixels, target=int(probs.argmax()))
        images["heatmap_png"] = _png(heatmap)  # the API's overlay: over the 224×224 model input
        images["heatmap_data_uri"] = _data_uri(_png(resize(heatmap, display)))
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
            prepared[index] = _prepare(predictor, upload)[0]
        except PredictionError as error:
            errors[index] = error
    probs_by_index = {}
    if prepared:
        assessment = predictor.assess(torch.stack(list(prepared.values())))
        for index, probs, refused in zip(prepared, assessment.probabilities.tolist(), assessment.out_of_scope):
            if refused:
                errors[index] = PredictionError("out_of_scope")
            else:
                probs_by_index[index] = probs
    elapsed_ms = (time.perf_counter() - started) * 1000 / max(1, len(prepared))
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


@dataclass(frozen=True)
class ExampleCard:
    """An example as the home page shows it: the image and its class's name in the active language."""

    image_id: str
    code: str
    name: str
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


def example_cards_get() -> list[ExampleCard]:
    classes = class_contents_get()
    return [ExampleCard(e.image_id, e.code, classes[e.code].name, e.static_path) for e in examples_list()]


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
        images = ("image_data_uri", "heatmap_data_uri", "heatmap_png", "display_width", "display_height")
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


def gate_describe(predictor: Predictor) -> dict[str, Any] | None:
    """The out-of-distribution gate of the loaded model: its threshold and what it refused (None without one)."""
    if predictor.gate is None:
        return None
    report = predictor.gate.report
    return {
        "threshold": predictor.gate.threshold,
        "refused": report.get("rows", []),
        "max_refusal": report.get("max_refusal"),
    }


def model_describe() -> dict[str, Any]:
    """What the API and the about page say about the loaded model."""
    predictor, info = predictor_get()
    meta = info.meta
    triage = triage_get()
    return {
        "name": info.name,
        "version": info.version,
        "sha256": info.sha256,
        "classes": list(CLASS_CODES),
        "parameters": sum(p.numel() for p in predictor.model.parameters()),
        "preprocessing": meta["preprocessing"],
        "calibration": {
            "method": "temperature scaling on the validation split",
            "temperature": info.temperature,
            "ece_before": meta["metrics"].get("ece_before"),
            "ece_after": meta["metrics"].get("ece_after"),
        },
        "uncertain_below": settings.DERMAI_UNCERTAIN_BELOW,
        "triage": {
            "risk": "P(MEL) + P(BCC) + P(AKIEC), calibrated",
            "policy": dataclasses.asdict(triage["policy"]),
            "measured": triage["measured"],
        },
        "gate": gate_describe(predictor),
        "metrics": meta["metrics"].get("evaluation", {}),
        "data": meta["data"],
    }
