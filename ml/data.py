"""HAM10000 / ISIC 2018 Task 3 data: read the labels, find the images, split by lesion, decode once."""

import csv
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from ml import CLASS_CODES
from ml.preprocessing import PreprocessConfig, decode, prepare

METADATA_CSV = "HAM10000_metadata.csv"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


class DataError(ValueError):
    """A data folder that cannot be used as asked, with what to do about it."""


@dataclass(frozen=True)
class Sample:
    """One labelled image; ``lesion_id`` groups the images of the same lesion (None when unknown)."""

    image_id: str
    lesion_id: str | None
    label: int
    path: Path


def read_samples(root: Path) -> list[Sample]:
    """Read a HAM10000 or ISIC 2018 Task 3 folder as users download it.

    Labels come from ``HAM10000_metadata.csv`` (lesion_id, image_id, dx, …) or, failing that,
    from an ISIC 2018 one-hot ground-truth CSV (``image,MEL,NV,…``) with lesion groups from
    ``*LesionGroupings.csv`` when present. Images are found anywhere below ``root``
    (``images/``, ``HAM10000_images_part_1/``, ``ISIC2018_Task3_Training_Input/`` …).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {str(root)!r} does not exist")
    labels, lesions = _read_labels(root)
    paths = {p.stem: p for p in image_files(root)}
    missing = [image_id for image_id in labels if image_id not in paths]
    if missing:
        raise FileNotFoundError(f"{len(missing)} labelled images are missing under {str(root)!r}, e.g. {missing[0]!r}")
    return [
        Sample(image_id, lesions.get(image_id), label, paths[image_id]) for image_id, label in sorted(labels.items())
    ]


def image_files(folder: Path) -> list[Path]:
    """The JPEG, PNG and WebP files anywhere below ``folder``, in a stable order."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _read_labels(root: Path) -> tuple[dict[str, int], dict[str, str]]:
    metadata = next(root.rglob(METADATA_CSV), None)
    if metadata is not None:
        with metadata.open(newline="") as f:
            rows = list(csv.DictReader(f))
        labels = {row["image_id"]: CLASS_CODES.index(row["dx"].upper()) for row in rows}
        return labels, {row["image_id"]: row["lesion_id"] for row in rows}
    ground_truth = next(root.rglob("*GroundTruth*.csv"), None)
    if ground_truth is None:
        raise FileNotFoundError(f"neither {METADATA_CSV} nor an ISIC *GroundTruth*.csv was found under {str(root)!r}")
    with ground_truth.open(newline="") as f:
        labels = {
            row["image"]: max(range(len(CLASS_CODES)), key=lambda i: float(row[CLASS_CODES[i]]))
            for row in csv.DictReader(f)
        }
    lesions = {}
    groupings = next(root.rglob("*LesionGroupings.csv"), None)
    if groupings is not None:
        with groupings.open(newline="") as f:
            lesions = {row["image"]: row["lesion_id"] for row in csv.DictReader(f)}
    return labels, lesions


def split_by_lesion(
    samples: list[Sample], *, val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Split into train and validation so that no lesion is on both sides, stratified by class.

    Within each class a seeded shuffle of the lesions sends ``val_fraction`` of them to
    validation; every image of a lesion follows its lesion.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    ungrouped = [s.image_id for s in samples if s.lesion_id is None]
    if ungrouped:
        # Split by image instead, and the images of one lesion would land on both sides.
        raise DataError(
            f"{len(ungrouped)} images have no lesion_id (e.g. {ungrouped[0]!r}): put {METADATA_CSV} or the ISIC "
            "*LesionGroupings.csv in the data folder, so that no lesion is on both sides of the split"
        )
    lesions_by_class: dict[int, set[str]] = defaultdict(set)
    for sample in samples:
        lesions_by_class[sample.label].add(sample.lesion_id)
    rng = random.Random(seed)
    val_lesions: set[str] = set()
    for label in sorted(lesions_by_class):
        lesions = sorted(lesions_by_class[label])
        rng.shuffle(lesions)
        val_lesions.update(lesions[: max(1, round(len(lesions) * val_fraction))])
    train = [s for s in samples if s.lesion_id not in val_lesions]
    val = [s for s in samples if s.lesion_id in val_lesions]
    return train, val


def load_pixels(samples: list[Sample], *, config: PreprocessConfig, progress: bool = True) -> torch.Tensor:
    """Decode and prepare every image once: an N×3×size×size uint8 tensor (1.5 GB for HAM10000)."""
    pixels = torch.empty((len(samples), 3, config.size, config.size), dtype=torch.uint8)
    for i, sample in enumerate(tqdm(samples, desc="decoding", unit="img", disable=not progress)):
        pixels[i] = prepare(decode(sample.path.read_bytes(), config=config), config=config)
    return pixels


def class_counts(samples: list[Sample]) -> list[int]:
    """Number of samples of each class, in ``CLASS_CODES`` order."""
    counts = [0] * len(CLASS_CODES)
    for sample in samples:
        counts[sample.label] += 1
    return counts
