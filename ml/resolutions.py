"""Lesion images at the resolutions people upload: full-resolution folders read through the site's path.

Every lesion image the project trains on is a small copy (HAM10000 at 200×150, ISIC 2019 at
84×84), while people upload dermatoscope exports of 600×450 and more. A folder of full-resolution
dermatoscopic images (``labels.csv`` with ``image`` and ``isic2018_class`` columns, images below the
folder; PH2's layout) is read here and each image sent through the site's own path (decode, guard,
gate, classifier) as it is and re-saved to fit 600×450 and 200×150: for ``python -m ml.fullres``
and the gate's report rows (``ml.fit_gate``).
"""

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from ml import CLASS_CODES
from ml.data import DataError, image_files
from ml.inference import Predictor

# (name, the box an image is fitted into); None keeps the file as it is.
RESOLUTIONS = (("native", None), ("600×450", (600, 450)), ("200×150", (200, 150)))


@dataclass(frozen=True)
class Labelled:
    """One full-resolution image: its file and its ISIC 2018 class index."""

    path: Path
    label: int


def read_folder(folder: Path) -> list[Labelled]:
    """The images listed in ``labels.csv`` (``image``, ``isic2018_class``), found anywhere below ``folder``."""
    labels_csv = Path(folder) / "labels.csv"
    if not labels_csv.exists():
        raise FileNotFoundError(f"no labels.csv in {str(folder)!r} (columns image, isic2018_class)")
    paths = {path.stem: path for path in image_files(Path(folder))}
    items = []
    with labels_csv.open(newline="") as f:
        for row in csv.DictReader(f):
            code = row["isic2018_class"].strip().upper()
            if code not in CLASS_CODES:
                raise DataError(f"unknown class {code!r} for {row['image']!r}; expected one of {CLASS_CODES}")
            if row["image"] not in paths:
                raise FileNotFoundError(f"image {row['image']!r} of labels.csv is missing under {str(folder)!r}")
            items.append(Labelled(paths[row["image"]], CLASS_CODES.index(code)))
    return items


def resized_jpeg(data: bytes, box: tuple[int, int] | None) -> bytes:
    """The image re-saved as a JPEG (quality 90) that fits ``box``, as an export at that size would be."""
    if box is None:
        return data
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image.thumbnail(box, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def assess_files(predictor: Predictor, files: list[bytes]) -> tuple[torch.Tensor, torch.Tensor]:
    """(refused, probabilities) of each file through the site's path: the guard and the gate refuse,
    the classifier scores.

    The probabilities are computed for refused images too, for the discrimination figure.
    """
    refused, probabilities = [], []
    for data in files:
        upload = predictor.read_upload(data)  # decoded once: the guard's verdict and the model's pixels
        assessment = predictor.assess(upload.pixels.unsqueeze(0))
        refused.append(upload.refusal is not None or bool(assessment.out_of_scope[0]))
        probabilities.append(assessment.probabilities[0])
    return torch.tensor(refused), torch.stack(probabilities) if probabilities else torch.empty(0, len(CLASS_CODES))


def by_resolution(
    predictor: Predictor, data: Path
) -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """The folder's labels, and (refused, probabilities) of its images at every resolution of :data:`RESOLUTIONS`."""
    items = read_folder(data)
    originals = [item.path.read_bytes() for item in items]
    results = {name: assess_files(predictor, [resized_jpeg(d, box) for d in originals]) for name, box in RESOLUTIONS}
    return torch.tensor([item.label for item in items]), results
