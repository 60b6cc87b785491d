"""``python -m ml.predict FILE|DIR… --out predictions.csv``: the ISIC CSV of a checkpoint's predictions."""

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from ml import SHIPPED_CHECKPOINT
from ml.data import image_files
from ml.inference import Predictor
from ml.isic_csv import IsicCsvWriter, image_ids
from ml.preprocessing import ImageError


def find_images(paths: list[Path]) -> list[Path]:
    """The image files among ``paths``, folders searched recursively, in a stable order."""
    found = []
    for path in paths:
        if path.is_dir():
            found += image_files(path)
        else:
            found.append(path)
    return found


OUT_OF_SCOPE_MODES = ("keep", "mark", "skip")


def predict_to_csv(
    paths: list[Path],
    *,
    checkpoint: Path,
    out: Path,
    tta: bool = False,
    batch_size: int = 64,
    out_of_scope: str = "keep",
) -> tuple[int, int]:
    """Write the ISIC 2018 Task 3 submission CSV; unreadable files are reported and skipped.

    ``out_of_scope`` decides what happens to images the guard or the gate refuses: ``keep`` writes
    them like any other (the ISIC CSV needs every row), ``mark`` adds an ``out_of_scope`` column
    (1 for refused), ``skip`` leaves them out. Returns (rows written, files skipped).
    """
    if out_of_scope not in OUT_OF_SCOPE_MODES:
        raise ValueError(f"unknown out_of_scope mode {out_of_scope!r}; expected one of {OUT_OF_SCOPE_MODES}")
    predictor = Predictor(checkpoint)
    files = find_images(paths)
    ids = image_ids([path.name for path in files])  # a.jpg and a.png are two rows
    gated = out_of_scope != "keep"
    written = skipped = 0
    with open(out, "w", newline="") as f:
        writer = IsicCsvWriter(f, extra=["out_of_scope"] if out_of_scope == "mark" else [])
        for start in tqdm(range(0, len(files), batch_size), desc="predicting", unit="batch"):
            names, pixels, refused = [], [], []
            for path, image_id in zip(files[start : start + batch_size], ids[start : start + batch_size]):
                try:
                    image, is_refused = _read(predictor, path.read_bytes(), mode=out_of_scope)
                except (ImageError, OSError) as error:
                    skipped += 1
                    tqdm.write(f"skipped {path}: {error}", file=sys.stderr)
                    continue
                if image is None:  # refused by the guard, and refused images are skipped
                    skipped += 1
                    continue
                pixels.append(image)
                refused.append(is_refused)
                names.append(image_id)
            if not pixels:
                continue
            batch = torch.stack(pixels)
            if tta:
                probs, gate_refused = predictor.probabilities(batch, tta=True), predictor.assess(batch).out_of_scope
            else:
                assessment = predictor.assess(batch)
                probs, gate_refused = assessment.probabilities, assessment.out_of_scope
            for name, row, guard_refused, by_gate in zip(names, probs.tolist(), refused, gate_refused.tolist()):
                is_refused = gated and (guard_refused or by_gate)
                if is_refused and out_of_scope == "skip":
                    skipped += 1
                    continue
                writer.row(name, row, *([int(is_refused)] if out_of_scope == "mark" else []))
                written += 1
    return written, skipped


def _read(predictor: Predictor, data: bytes, *, mode: str) -> tuple[torch.Tensor | None, bool]:
    """Model pixels and whether the guard refused them (never with ``keep``): None instead of the
    pixels of a refused image with ``skip``."""
    upload = predictor.read_upload(data, guard=mode != "keep")
    refused = upload.refusal is not None
    if refused and mode == "skip":
        return None, True
    return upload.pixels, refused


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ml.predict", description="Classify images into the ISIC 2018 Task 3 CSV format."
    )
    parser.add_argument("paths", nargs="+", type=Path, help="image files and/or folders")
    parser.add_argument("--csv", required=True, type=Path, help="output CSV (image,MEL,NV,BCC,AKIEC,BKL,DF,VASC)")
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED_CHECKPOINT)
    parser.add_argument("--tta", action="store_true", help="average over the eight flips and quarter turns")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--out-of-scope",
        choices=OUT_OF_SCOPE_MODES,
        default="keep",
        help="images the guard or gate refuses: write them (keep), add an out_of_scope column (mark), or skip them",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    written, skipped = predict_to_csv(
        args.paths,
        checkpoint=args.checkpoint,
        out=args.csv,
        tta=args.tta,
        batch_size=args.batch_size,
        out_of_scope=args.out_of_scope,
    )
    print(f"wrote {written} rows to {args.csv}; skipped {skipped} files", file=sys.stderr)
    return 0 if written or not skipped else 1


if __name__ == "__main__":
    sys.exit(main())
