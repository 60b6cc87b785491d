"""Knowledge distillation (Hinton et al., 2015): the student also learns a larger teacher's soft targets."""

from pathlib import Path

import torch
import torch.nn.functional as F

from ml.checkpoint import CheckpointError, load_checkpoint
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
    return (1 - weight) * loss + weight * distillation_loss(logits, soft, temperature=temperature)


def load_teacher(path: Path, *, preprocess: PreprocessConfig) -> torch.nn.Module:
    """The teacher model of a checkpoint; it must have seen the student's inputs (same preprocessing)."""
    loaded = load_checkpoint(path)
    if loaded.preprocess != preprocess:
        raise CheckpointError(f"teacher {str(path)!r} was trained on {loaded.preprocess}, the student on {preprocess}")
    return loaded.model
