"""Knowledge distillation (Hinton et al., 2015): the student also learns a larger teacher's soft targets.

From the teacher itself on each batch, or from a table of its logits per training image made once
by ``python -m ml.soft_targets`` (no teacher in memory; what that saves: docs/training.md).
"""

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ml import CLASS_CODES
from ml.checkpoint import CheckpointError, load_checkpoint, plain_config
from ml.data import Sample
from ml.preprocessing import PreprocessConfig


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """Hinton et al.'s soft-target loss: T² · KL(softmax(teacher / T) ‖ softmax(student / T)).

    The T² keeps its gradients on the scale of the cross-entropy's whatever the temperature.
    """
    return temperature**2 * F.kl_div(
        F.log_softmax(student / temperature, dim=1),
        F.log_softmax(teacher / temperature, dim=1),
        log_target=True,
        reduction="batchmean",
    )


def with_teacher(
    loss: torch.Tensor,
    logits: torch.Tensor,
    x: torch.Tensor,
    *,
    teacher: torch.nn.Module,
    weight: float,
    temperature: float,
) -> torch.Tensor:
    """(1 − weight) · ``loss`` + weight · the distillation loss of ``logits`` against the teacher on ``x``."""
    # The teacher's soft targets need no fp32 precision: bfloat16 on a GPU.
    with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=x.device.type == "cuda"):
        soft = teacher(x).float()
    return with_soft_targets(loss, logits, soft, weight=weight, temperature=temperature)


def with_soft_targets(
    loss: torch.Tensor, logits: torch.Tensor, soft: torch.Tensor, *, weight: float, temperature: float
) -> torch.Tensor:
    """(1 − weight) · ``loss`` + weight · the distillation loss of ``logits`` against the teacher's logits ``soft``."""
    return (1 - weight) * loss + weight * distillation_loss(logits, soft, temperature=temperature)


def load_teacher(path: Path, *, preprocess: PreprocessConfig) -> torch.nn.Module:
    """The teacher model of a checkpoint; it must have seen the student's inputs (same preprocessing)."""
    loaded = load_checkpoint(path)
    if loaded.preprocess != preprocess:
        raise CheckpointError(f"teacher {str(path)!r} was trained on {loaded.preprocess}, the student on {preprocess}")
    return loaded.model


SOFT_TARGETS_FORMAT = "dermai-soft-targets/1"


@dataclass(frozen=True)
class SoftTargets:
    """A teacher's stored logits of some training images (N×7, in their order) and where they come from."""

    logits: torch.Tensor
    source: dict[str, Any]  # the table's file and sha256, its teacher and number of views


def soft_targets_for(path: Path, samples: list[Sample], *, preprocess: PreprocessConfig) -> SoftTargets:
    """The logits that the table at ``path`` (``python -m ml.soft_targets``) holds for ``samples``.

    Refused with :class:`ml.checkpoint.CheckpointError`: a file that is no such table, a table for
    other classes or other preprocessing, or one that lacks any of the samples.
    """
    data = Path(path).read_bytes()  # FileNotFoundError passes through
    try:
        table = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # the unpickler raises many types for a file that is not a table
        raise CheckpointError(f"{str(path)!r} is not a readable soft-target table: {error}") from None
    if not isinstance(table, dict) or table.get("format") != SOFT_TARGETS_FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a soft-target table of python -m ml.soft_targets")
    if table["class_codes"] != list(CLASS_CODES):
        raise CheckpointError(f"the soft targets in {str(path)!r} are for the classes {table['class_codes']}")
    if table["preprocessing"] != plain_config(preprocess):
        raise CheckpointError(
            f"the soft targets in {str(path)!r} come from a teacher trained on {table['preprocessing']}, "
            f"the student on {plain_config(preprocess)}"
        )
    row = {image_id: i for i, image_id in enumerate(table["image_ids"])}
    missing = [s.image_id for s in samples if s.image_id not in row]
    if missing:
        raise CheckpointError(
            f"the soft targets in {str(path)!r} lack {len(missing)} of the {len(samples)} training images "
            f"(first: {missing[0]}): they were made for another split or other data"
        )
    return SoftTargets(
        logits=table["logits"][[row[s.image_id] for s in samples]].float(),
        source={
            "file": str(path),
            "sha256": hashlib.sha256(data).hexdigest(),
            "teacher": table["teacher"],
            "views": table["views"],
        },
    )
