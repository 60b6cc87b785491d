"""A teacher's soft targets, computed once: ``python -m ml.soft_targets --teacher FILE --data DIR… --out FILE``.

On this CPU the teacher's forward pass is two thirds of a distilled student step. Its logits for
each training image, averaged over a fixed set of flips and half turns (``views``), are computed
once and stored by image id; ``python -m ml.train --soft-targets FILE`` then distils from the table
with no teacher in memory, on any machine that has the data. The student sees each image rotated,
zoomed and recoloured: the views keep the table close to what the teacher says of an image in any
orientation, and a lesion has no "up".
"""

import argparse
import sys
from pathlib import Path

import torch

from ml import CLASS_CODES
from ml.checkpoint import load_checkpoint, plain_config
from ml.data import load_pixels_and_sides, read_sources, split_sources
from ml.distill import SOFT_TARGETS_FORMAT, teacher_logits


def soft_targets_write(*, teacher: Path, data: list[Path], out: Path, views: int) -> dict:
    """Compute the table for the training split the teacher was trained on, and write it to ``out``.

    The split is the teacher's (its stored validation fraction and seed); a student trained on
    another split finds images missing from the table and is refused (:func:`soft_targets_for`).
    """
    loaded = load_checkpoint(teacher)
    summary = loaded.meta.get("data") or {}
    splits = split_sources(
        read_sources(data), val_fraction=summary.get("val_fraction", 0.2), seed=summary.get("split_seed", 0)
    )
    pixels, _ = load_pixels_and_sides(splits.train, preprocess=loaded.preprocess)
    logits = teacher_logits(loaded.model.eval(), pixels, preprocess=loaded.preprocess, views=views)
    table = {
        "format": SOFT_TARGETS_FORMAT,
        "teacher": {"file": teacher.name, "sha256": loaded.sha256, "arch": loaded.meta.get("arch", "")},
        "preprocessing": plain_config(loaded.preprocess),
        "views": views,
        "class_codes": list(CLASS_CODES),
        "image_ids": [s.image_id for s in splits.train],
        # Half precision: the logits of a 7-way softmax need no more, and the table stays small.
        "logits": logits.half(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(table, out)
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ml.soft_targets", description="Store a teacher's logits for every training image."
    )
    parser.add_argument("--teacher", required=True, type=Path, help="the teacher's checkpoint (python -m ml.train)")
    parser.add_argument("--data", required=True, type=Path, action="append", help="the teacher's data, in order")
    parser.add_argument("--out", required=True, type=Path, help="the table to write, e.g. runs/soft-targets.pt")
    parser.add_argument("--views", type=int, default=4, help="flips and half turns averaged per image (1–8)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        table = soft_targets_write(teacher=args.teacher, data=args.data, out=args.out, views=args.views)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    print(f"wrote {args.out}: {len(table['image_ids'])} images × {table['views']} views", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
