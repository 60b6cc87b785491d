"""Dermatoscopic data (HAM10000, ISIC 2018 and ISIC 2019 layouts): read labels, split by lesion, decode once."""

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
# ISIC 2019 has eight diagnoses: actinic keratosis and squamous cell carcinoma are ISIC 2018's AKIEC
# ("actinic keratoses and intraepithelial carcinoma"); UNK (unknown) images are left out.
ISIC2019_CLASSES = {code: code for code in CLASS_CODES} | {"AK": "AKIEC", "SCC": "AKIEC"}
ISIC2019_DROPPED = ("UNK",)
# The source the external validation split is drawn from (another hospital than HAM10000's).
EXTERNAL_SOURCE = "BCN_20000"


class DataError(ValueError):
    """A data folder that cannot be used as asked, with what to do about it."""


@dataclass(frozen=True)
class Sample:
    """One labelled image; ``lesion_id`` groups the images of the same lesion (None when unknown).

    ``source`` names the collection it comes from (``HAM10000``, ``BCN_20000``, ``MSK``, ``ISIC archive``…).
    """

    image_id: str
    lesion_id: str | None
    label: int
    path: Path
    source: str = "HAM10000"


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
    labels, lesions, sources = _read_labels(root)
    paths = {p.stem: p for p in image_files(root)}
    missing = [image_id for image_id in labels if image_id not in paths]
    if missing:
        raise FileNotFoundError(f"{len(missing)} labelled images are missing under {str(root)!r}, e.g. {missing[0]!r}")
    return [
        Sample(image_id, lesions.get(image_id), label, paths[image_id], sources.get(image_id, "HAM10000"))
        for image_id, label in sorted(labels.items())
    ]


def read_sources(roots: list[Path]) -> list[Sample]:
    """Read several data folders (any layout :func:`read_samples` reads) as one list.

    An image id or lesion id that occurs in two folders is refused: the same lesion could then
    land on both sides of a split.
    """
    samples: list[Sample] = []
    for root in roots:
        samples += read_samples(root)
    seen: set[str] = set()
    for sample in samples:
        if sample.image_id in seen:
            raise DataError(f"image {sample.image_id!r} occurs in more than one of {[str(r) for r in roots]}")
        seen.add(sample.image_id)
    return samples


def image_files(folder: Path) -> list[Path]:
    """The JPEG, PNG and WebP files anywhere below ``folder``, in a stable order."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _read_labels(root: Path) -> tuple[dict[str, int], dict[str, str], dict[str, str]]:
    """(label, lesion id, source) by image id, from whichever layout the folder has."""
    metadata = next(root.rglob(METADATA_CSV), None)
    if metadata is not None:
        with metadata.open(newline="") as f:
            rows = list(csv.DictReader(f))
        labels = {row["image_id"]: CLASS_CODES.index(row["dx"].upper()) for row in rows}
        return labels, {row["image_id"]: row["lesion_id"] for row in rows}, {}
    ground_truth = next(root.rglob("*GroundTruth*.csv"), None)
    if ground_truth is None:
        raise FileNotFoundError(f"neither {METADATA_CSV} nor an ISIC *GroundTruth*.csv was found under {str(root)!r}")
    with ground_truth.open(newline="") as f:
        reader = csv.DictReader(f)
        columns = [c for c in reader.fieldnames or [] if c != "image"]
        if "AK" in columns or "SCC" in columns:
            return _read_isic2019(root, reader, columns)
        labels = {
            row["image"]: max(range(len(CLASS_CODES)), key=lambda i: float(row[CLASS_CODES[i]])) for row in reader
        }
    lesions = {}
    groupings = next(root.rglob("*LesionGroupings.csv"), None)
    if groupings is not None:
        with groupings.open(newline="") as f:
            lesions = {row["image"]: row["lesion_id"] for row in csv.DictReader(f)}
    return labels, lesions, {}


def _read_isic2019(
    root: Path, reader: csv.DictReader, columns: list[str]
) -> tuple[dict[str, int], dict[str, str], dict[str, str]]:
    """ISIC 2019 Task 1: one-hot over eight diagnoses, lesion ids in ``*_Metadata.csv``.

    AK and SCC become AKIEC, UNK images are dropped, and an image without a lesion id is its own
    lesion (the older archive images have none). The source is read from the lesion id's prefix.
    """
    unknown = [c for c in columns if c not in ISIC2019_CLASSES and c not in ISIC2019_DROPPED]
    if unknown:
        raise DataError(f"unknown ISIC 2019 diagnosis columns {unknown}; expected {sorted(ISIC2019_CLASSES)} and UNK")
    labels = {}
    for row in reader:
        diagnosis = max(columns, key=lambda c: float(row[c]))
        if diagnosis not in ISIC2019_DROPPED:
            labels[row["image"]] = CLASS_CODES.index(ISIC2019_CLASSES[diagnosis])
    lesions = {image_id: image_id for image_id in labels}
    metadata = next(root.rglob("*Metadata.csv"), None)
    if metadata is not None:
        with metadata.open(newline="") as f:
            lesions |= {row["image"]: row["lesion_id"] for row in csv.DictReader(f) if row.get("lesion_id")}
    sources = {image_id: _isic2019_source(lesions[image_id], image_id) for image_id in labels}
    return labels, {image_id: lesions[image_id] for image_id in labels}, sources


def _isic2019_source(lesion_id: str, image_id: str) -> str:
    if lesion_id.startswith("HAM_"):  # the full ISIC 2019 download includes HAM10000
        return "HAM10000"
    if lesion_id.startswith("BCN_"):
        return "BCN_20000"
    if lesion_id.startswith("MSK"):
        return "MSK"
    return "ISIC archive" if lesion_id == image_id else lesion_id.split("_")[0]


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


@dataclass(frozen=True)
class Splits:
    """Training images and the two validation sets, no lesion on two sides.

    ``val`` is the lesion-grouped validation split of the first source (HAM10000 for the shipped
    models); ``external`` holds out lesions of another hospital (:data:`EXTERNAL_SOURCE`) to
    measure generalisation; every other image trains.
    """

    train: list[Sample]
    val: list[Sample]
    external: list[Sample]


def split_sources(
    samples: list[Sample], *, val_fraction: float = 0.2, seed: int = 0, external_source: str = EXTERNAL_SOURCE
) -> Splits:
    """Split samples of one or several sources (see :class:`Splits`).

    The first sample's source is the primary one: its split is exactly :func:`split_by_lesion` of
    its samples alone, so models trained with and without a second source are scored on the same
    validation images.
    """
    if not samples:
        raise DataError("no labelled images to split")
    primary = samples[0].source
    train, val = split_by_lesion([s for s in samples if s.source == primary], val_fraction=val_fraction, seed=seed)
    external_pool = [s for s in samples if s.source == external_source and s.source != primary]
    external: list[Sample] = []
    if external_pool:
        rest, external = split_by_lesion(external_pool, val_fraction=val_fraction, seed=seed)
        train += rest
    train += [s for s in samples if s.source not in (primary, external_source)]
    return Splits(train=train, val=val, external=external)


def source_counts(samples: list[Sample]) -> dict[str, dict[str, int]]:
    """Images per class of each source: ``{source: {class code: count}}``."""
    sources = sorted({s.source for s in samples})
    return {
        source: dict(zip(CLASS_CODES, class_counts([s for s in samples if s.source == source]))) for source in sources
    }


def load_pixels(samples: list[Sample], *, preprocess: PreprocessConfig, progress: bool = True) -> torch.Tensor:
    """Decode and prepare every image once: an N×3×size×size uint8 tensor (1.5 GB for HAM10000)."""
    return load_pixels_and_sides(samples, preprocess=preprocess, progress=progress)[0]


def load_pixels_and_sides(
    samples: list[Sample], *, preprocess: PreprocessConfig, progress: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`load_pixels` and each image's short side before the final resize (its level of detail)."""
    pixels = torch.empty((len(samples), 3, preprocess.size, preprocess.size), dtype=torch.uint8)
    sides = torch.empty(len(samples), dtype=torch.int16)
    for i, sample in enumerate(tqdm(samples, desc="decoding", unit="img", disable=not progress)):
        decoded = decode(sample.path.read_bytes(), preprocess=preprocess)
        sides[i] = min(min(decoded.shape[-2:]), preprocess.source_short_side)
        pixels[i] = prepare(decoded, preprocess=preprocess)
    return pixels, sides


def class_counts(samples: list[Sample]) -> list[int]:
    """Number of samples of each class, in ``CLASS_CODES`` order."""
    counts = [0] * len(CLASS_CODES)
    for sample in samples:
        counts[sample.label] += 1
    return counts
