"""Full-resolution check: ``python -m ml.fullres --data DIR [--checkpoint FILE]`` — report only, never for choosing.

Every lesion image the project trains on is a small copy (HAM10000 at 200×150, ISIC 2019 at
84×84), while people upload dermatoscope exports of 600×450 and more. This command reads a folder
of full-resolution dermatoscopic images (``labels.csv`` with ``image`` and ``isic2018_class``
columns, images below the folder; PH2's layout) and sends each one through the site's own path
(decode, guard, gate, classifier) at several resolutions: as it is, and re-saved to fit 600×450
and 200×150. It reports the share refused per class and resolution, and how well the risk
(:func:`ml.triage.risk`) separates melanomas from nevi.
"""

import argparse
import csv
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from ml import CLASS_CODES, SHIPPED_CHECKPOINT
from ml.data import DataError, image_files
from ml.inference import Predictor
from ml.preprocessing import ImageError, ImageErrorCode
from ml.triage import recorded_policy

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
        guard_refused = False
        try:
            pixels = predictor.read(data, guard=True)
        except ImageError as error:
            if error.code != ImageErrorCode.OUT_OF_SCOPE:
                raise
            guard_refused, pixels = True, predictor.read(data)
        assessment = predictor.assess(pixels.unsqueeze(0))
        refused.append(guard_refused or bool(assessment.out_of_scope[0]))
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


def fullres_report(*, checkpoint: Path, data: Path) -> dict[str, Any]:
    """Refusals per class and resolution, and melanoma-vs-nevus figures of the risk, for one folder."""
    predictor = Predictor(checkpoint)
    policy, _ = recorded_policy(predictor.meta)
    labels, results = by_resolution(predictor, data)
    mel, nv = labels == CLASS_CODES.index("MEL"), labels == CLASS_CODES.index("NV")
    rows = []
    for name, (refused, probabilities) in results.items():
        decisions = policy.decide(probabilities)  # the site's rule
        risks, referred = decisions.risk, decisions.refer
        per_class = {
            code: {"images": int((labels == c).sum()), "refused": int(refused[labels == c].sum())}
            for c, code in enumerate(CLASS_CODES)
            if (labels == c).any()
        }
        both = mel | nv
        auc = float(roc_auc_score(mel[both].numpy(), risks[both].numpy())) if mel.any() and nv.any() else None
        rows.append(
            {
                "resolution": name,
                "images": len(labels),
                "refused": int(refused.sum()),
                "per_class": per_class,
                "melanoma_vs_nevus_auc": auc,
                "melanomas_referred": float(referred[mel].float().mean()) if mel.any() else None,
                "nevi_referred": float(referred[nv].float().mean()) if nv.any() else None,
            }
        )
    return {"checkpoint": str(checkpoint), "data": str(data), "refer_at": policy.refer_at, "rows": rows}


def format_report(report: dict[str, Any]) -> str:
    codes = [code for code in CLASS_CODES if code in report["rows"][0]["per_class"]]
    lines = [
        f"{report['data']} through the site's path (refer at risk ≥ {report['refer_at']:.3f})",
        f"{'resolution':10} {'refused':>9} " + " ".join(f"{code + ' refused':>13}" for code in codes)
        + f" {'MEL-vs-NV AUC':>14} {'MEL referred':>13} {'NV referred':>12}",
    ]  # fmt: skip
    for row in report["rows"]:
        cells = [f"{row['per_class'][c]['refused']:>4}/{row['per_class'][c]['images']:<4} " for c in codes]
        share = row["refused"] / row["images"]
        lines.append(
            f"{row['resolution']:10} {share:9.1%} "
            + " ".join(f"{cell:>13}" for cell in cells)
            + f" {_opt(row['melanoma_vs_nevus_auc'], '.3f'):>14} {_opt(row['melanomas_referred'], '.0%'):>13}"
            + f" {_opt(row['nevi_referred'], '.0%'):>12}"
        )
    return "\n".join(lines)


def _opt(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ml.fullres", description="Refusals and melanoma-vs-nevus AUC on full-resolution images."
    )
    parser.add_argument("--data", required=True, type=Path, help="folder with labels.csv and the images, e.g. PH2")
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED_CHECKPOINT)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        report = fullres_report(checkpoint=args.checkpoint, data=args.data)
    except (FileNotFoundError, DataError) as error:
        parser.error(str(error))
    print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
