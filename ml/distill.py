"""Knowledge distillation (Hinton et al., 2015): the student also learns a larger teacher's soft targets.

From the teacher itself on each batch, or from a table of its logits per training image made once
by ``python -m ml.soft_targets`` (no teacher in memory: on this CPU its forward pass is two thirds
of a distilled step).
"""

from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ml import CLASS_CODES
from ml.augment import dihedral
from ml.checkpoint import CheckpointError, load_checkpoint, plain_config
from ml.data import Sample
from ml.preprocessing import PreprocessConfig, normalize


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
# The order in which views are added: the image, its mirror, both turned half-way, then the
# quarter turns and their mirrors (indices into ml.augment.dihedral's eight).
VIEW_ORDER = (0, 4, 2, 6, 1, 5, 3, 7)


@torch.inference_mode()
def teacher_logits(
    teacher: torch.nn.Module, pixels: torch.Tensor, *, preprocess: PreprocessConfig, views: int, batch_size: int = 64
) -> torch.Tensor:
    """N×7 logits of an N×3×H×W uint8 batch, each the mean over the first ``views`` of :data:`VIEW_ORDER`."""
    if not 1 <= views <= len(VIEW_ORDER):
        raise ValueError(f"views must be between 1 and {len(VIEW_ORDER)}, not {views}")
    outputs = []
    for batch in tqdm(pixels.split(batch_size), desc="teacher", unit="batch", leave=False):
        x = normalize(batch, preprocess=preprocess).contiguous(memory_format=torch.channels_last)
        flips = dihedral(x)
        outputs.append(torch.stack([teacher(flips[i]) for i in VIEW_ORDER[:views]]).mean(dim=0).float())
    return torch.cat(outputs) if outputs else torch.empty(0, len(CLASS_CODES))


def soft_targets_for(path: Path, samples: list[Sample], *, preprocess: PreprocessConfig) -> torch.Tensor:
    """The stored logits of ``samples`` (N×7 float, in their order); every sample must be in the table."""
    table = torch.load(path, map_location="cpu", weights_only=True)
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
    return table["logits"][[row[s.image_id] for s in samples]].float()
