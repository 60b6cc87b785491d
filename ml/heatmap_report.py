"""How often the Grad-CAM heat lies mostly off the image's centre, and how right the model is then.

``python -m ml.heatmap_report --data ../shared/data/ham10000 --data ../shared/data/isic2019-nonham-84px``
scores the checkpoint's validation sets with the rule the site serves (:func:`ml.explain.explain`).
"""

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from ml import SHIPPED_CHECKPOINT
from ml.data import DataError, Sample, read_sources, split_sources
from ml.inference import Predictor
from ml.preprocessing import decode, prepare


def heatmap_rows(predictor: Predictor, samples: list[Sample]) -> dict[str, Any]:
    """For one set: how many images, the share whose heat lies off-centre, and the top answer's
    accuracy on those and on the rest."""
    off, right = [], []
    for sample in samples:
        pixels = prepare(
            decode(sample.path.read_bytes(), preprocess=predictor.preprocess), preprocess=predictor.preprocess
        )
        top = int(predictor.probabilities(pixels.unsqueeze(0))[0].argmax())
        off.append(predictor.explain(pixels, target=top).off_centre)
        right.append(top == sample.label)
    off_t, right_t = torch.tensor(off), torch.tensor(right)

    def accuracy(mask: torch.Tensor) -> float | None:
        return float(right_t[mask].float().mean()) if mask.any() else None

    return {
        "images": len(samples),
        "off_centre": float(off_t.float().mean()) if len(off) else None,
        "accuracy_off_centre": accuracy(off_t),
        "accuracy_centred": accuracy(~off_t),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ml.heatmap_report", description="Measure the Grad-CAM off-centre rule on the validation sets."
    )
    parser.add_argument(
        "--data", required=True, type=Path, action="append", help="the checkpoint's data folders, as given to ml.train"
    )
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED_CHECKPOINT)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    predictor = Predictor(args.checkpoint)
    summary = predictor.meta["data"]
    try:
        splits = split_sources(
            read_sources(args.data), val_fraction=summary["val_fraction"], seed=summary["split_seed"]
        )
    except (FileNotFoundError, DataError) as error:
        parser.error(str(error))
    for name, samples in (("validation", splits.val), ("external", splits.external)):
        if not samples:
            continue
        row = heatmap_rows(predictor, samples)
        cells = ", ".join(
            f"{key} {value:.3f}" if isinstance(value, float) else f"{key} {value}" for key, value in row.items()
        )
        print(f"{name}: {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
