"""Prediction: calibrated probabilities for image bytes or files, and the batch CSV command."""

import argparse
import csv
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ml import CLASS_CODES, SHIPPED_CHECKPOINT
from ml.augment import dihedral
from ml.checkpoint import CheckpointError, load_checkpoint
from ml.data import image_files
from ml.guard import check_in_scope
from ml.model import SimpleBNConv, fold_for_inference
from ml.preprocessing import ImageError, PreprocessConfig, decode, normalize, prepare, reduce_to_source


@torch.inference_mode()
def predict_logits(
    model: torch.nn.Module,
    pixels: torch.Tensor,
    *,
    config: PreprocessConfig,
    tta: bool = False,
    batch_size: int = 256,
) -> torch.Tensor:
    """Logits for an N×3×H×W uint8 batch; with ``tta`` the mean over the eight flips and quarter turns."""
    device = next(model.parameters()).device
    outputs = []
    for batch in pixels.split(batch_size):
        x = normalize(batch.to(device), config=config).contiguous(memory_format=torch.channels_last)
        views = dihedral(x) if tta else [x]
        outputs.append(torch.stack([model(v) for v in views]).mean(dim=0).float().cpu())
    return torch.cat(outputs) if outputs else torch.empty(0, len(CLASS_CODES))


class Predictor:
    """A checkpoint loaded once, answering calibrated probabilities in ``CLASS_CODES`` order."""

    def __init__(self, checkpoint: Path) -> None:
        loaded = load_checkpoint(checkpoint)
        if not isinstance(loaded.model, SimpleBNConv):  # Grad-CAM and the folded fast path need its layers
            raise CheckpointError(f"{str(checkpoint)!r} holds a {loaded.meta['arch']}; only a SimpleBNConv is served")
        self.model = loaded.model  # the trained layers, for Grad-CAM
        self.inference_model = fold_for_inference(loaded.model)  # the same logits, faster
        self.config = loaded.preprocess
        self.temperature = loaded.temperature
        self.meta = loaded.meta

    def prepare(self, data: bytes, *, guard: bool = False) -> torch.Tensor:
        """Image bytes → 3×H×W uint8 model pixels; raises :class:`ml.preprocessing.ImageError`.

        With ``guard``, images that are clearly not lesion photos are refused (``out_of_scope``).
        """
        pixels = reduce_to_source(decode(data, config=self.config), config=self.config)  # once, for both
        if guard:
            check_in_scope(pixels)
        return prepare(pixels, config=self.config)

    def probabilities(self, pixels: torch.Tensor, *, tta: bool = False) -> torch.Tensor:
        """N×7 calibrated probabilities for prepared pixels, in one batched forward pass."""
        logits = predict_logits(self.inference_model, pixels, config=self.config, tta=tta)
        return F.softmax(logits / self.temperature, dim=1)


def find_images(paths: list[Path]) -> list[Path]:
    """The image files among ``paths``, folders searched recursively, in a stable order."""
    found = []
    for path in paths:
        if path.is_dir():
            found += image_files(path)
        else:
            found.append(path)
    return found


def predict_to_csv(
    paths: list[Path], *, checkpoint: Path, out: Path, tta: bool = False, batch_size: int = 64
) -> tuple[int, int]:
    """Write the ISIC 2018 Task 3 submission CSV; unreadable files are reported and skipped.

    Returns (rows written, files skipped).
    """
    predictor = Predictor(checkpoint)
    files = find_images(paths)
    written = skipped = 0
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", *CLASS_CODES])
        for start in tqdm(range(0, len(files), batch_size), desc="predicting", unit="batch"):
            names, pixels = [], []
            for path in files[start : start + batch_size]:
                try:
                    pixels.append(predictor.prepare(path.read_bytes()))
                except (ImageError, OSError) as error:
                    skipped += 1
                    tqdm.write(f"skipped {path}: {error}", file=sys.stderr)
                    continue
                names.append(path.stem)
            if not pixels:
                continue
            probs = predictor.probabilities(torch.stack(pixels), tta=tta)
            for name, row in zip(names, probs.tolist()):
                writer.writerow([name, *(f"{p:.6f}" for p in row)])
                written += 1
    return written, skipped


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ml.predict", description="Classify images into the ISIC 2018 Task 3 CSV format."
    )
    parser.add_argument("paths", nargs="+", type=Path, help="image files and/or folders")
    parser.add_argument("--csv", required=True, type=Path, help="output CSV (image,MEL,NV,BCC,AKIEC,BKL,DF,VASC)")
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED_CHECKPOINT)
    parser.add_argument("--tta", action="store_true", help="average over the eight flips and quarter turns")
    parser.add_argument("--batch-size", type=int, default=64)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    written, skipped = predict_to_csv(
        args.paths, checkpoint=args.checkpoint, out=args.csv, tta=args.tta, batch_size=args.batch_size
    )
    print(f"wrote {written} rows to {args.csv}; skipped {skipped} unreadable files", file=sys.stderr)
    return 0 if written or not skipped else 1


if __name__ == "__main__":
    sys.exit(main())
