"""The only bridge between the web app and ``ml``: load the model once, predict, join admin content."""

import base64
import csv
import functools
import hashlib
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from django.conf import settings
from django.utils.translation import gettext_lazy as _
from PIL import Image

from classifier.models import LesionClass
from ml import CLASS_CODES
from ml.checkpoint import CheckpointError
from ml.predict import Predictor
from ml.preprocessing import ImageError

DISCLAIMER = _(
    "DermAI is for education and research only. It is not a medical device, does not diagnose, "
    "and must not replace a doctor. Anyone worried about a skin lesion should see a dermatologist."
)


class PredictionError(Exception):
    """An upload that cannot be classified, with a stable ``code`` and a human ``message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    sha256: str
    temperature: float
    meta: dict[str, Any]


@dataclass(frozen=True)
class ClassProbability:
    code: str
    name: str
    category: str
    category_label: str
    description: str
    reference_url: str
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
    preview_data_uri: str = ""

    @property
    def ranked(self) -> list[ClassProbability]:
        return sorted(self.probabilities, key=lambda p: p.probability, reverse=True)


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


def lesion_classes_get() -> dict[str, LesionClass]:
    """The admin-managed content of each class by code; a class missing from the database gets a stub."""
    rows = {row.code: row for row in LesionClass.objects.all()}
    return {
        code: rows.get(code) or LesionClass(code=code, name=code, category="", description="") for code in CLASS_CODES
    }


def prediction_create(*, image: bytes, preview: bool = False) -> PredictionResult:
    """Classify one image held in memory; raise :class:`PredictionError` for unusable input."""
    predictor, info = predictor_get()
    started = time.perf_counter()
    try:
        pixels = predictor.prepare(image)
    except ImageError as error:
        raise PredictionError(error.code, error.message) from None
    probs = predictor.probabilities(pixels.unsqueeze(0))[0].tolist()
    elapsed_ms = (time.perf_counter() - started) * 1000
    classes = lesion_classes_get()
    probabilities = [
        ClassProbability(
            code=code,
            name=classes[code].name,
            category=classes[code].category,
            category_label=classes[code].get_category_display() if classes[code].category else "",
            description=classes[code].description,
            reference_url=classes[code].reference_url,
            probability=p,
        )
        for code, p in zip(CLASS_CODES, probs)
    ]
    top = max(probabilities, key=lambda p: p.probability)
    return PredictionResult(
        model=info,
        prediction=top,
        probabilities=probabilities,
        uncertain=top.probability < settings.DERMAI_UNCERTAIN_BELOW,
        elapsed_ms=round(elapsed_ms, 1),
        preview_data_uri=_data_uri(pixels) if preview else "",
    )


def _data_uri(pixels: torch.Tensor) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


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
    first_per_class = {}
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
        raise PredictionError("unknown_example", f"there is no example image {image_id!r}")
    data = (settings.DERMAI_EXAMPLES_DIR / "images" / f"{image_id}.jpg").read_bytes()
    return example, prediction_create(image=data, preview=True)


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
