"""The model's lifecycle in a web process: load the configured checkpoint once per path, on the
configured number of torch threads, and say whether it is ready.

gunicorn loads it in each worker before the worker takes traffic (``post_worker_init`` in
``gunicorn.conf.py``); elsewhere (``runserver``, tests) the first request that needs it does.
"""

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from django.conf import settings

from classifier.errors import PredictionError
from ml.checkpoint import CheckpointError
from ml.inference import Predictor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    """The loaded checkpoint: its name, version (file stem), sha256 of the loaded bytes, temperature, metadata."""

    name: str
    version: str
    sha256: str
    temperature: float
    meta: dict[str, Any]


@functools.lru_cache(maxsize=2)
def _load(checkpoint: str) -> tuple[Predictor, ModelInfo]:
    # Before the first tensor operation of the process: each worker's share of the cores, no more.
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
    """The configured checkpoint, loaded once per process and path; ``model_unavailable`` when it cannot be."""
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
