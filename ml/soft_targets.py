"""A teacher's soft targets, computed once: ``python -m ml.soft_targets --teacher FILE --data DIR… --out FILE``.

The teacher's logits of each training image of its split, averaged over the first ``--views`` flips
and turns (:func:`ml.augment.dihedral`), stored by image id; ``python -m ml.train --soft-targets
FILE`` distils from the table with no teacher in memory, on any machine that has the data
(docs/training.md: what it saves and what it costs).
"""

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from ml import CLASS_CODES
from ml.augment import DIHEDRAL_VIEWS
from ml.checkpoint import load_checkpoint, plain_config
from ml.data import load_pixels_and_sides, read_sources, split_sources
from ml.distill import SOFT_TARGETS_FORMAT
from ml.inference import predict_logits


def soft_targets_write(*, teacher: Path, data: list[Path], out: Path, views: int, chunk: int = 1024) -> dict:
    """Compute the table for the training split the teacher was trained on, and write it to ``out``.

    The split is the one the teacher's checkpoint records; a student trained on another split
    finds images missing from the table and is refused (:func:`ml.distill.soft_targets_for`).
    """
    if not 1 <= views <= DIHEDRAL_VIEWS:  # before minutes of decoding
        raise ValueError(f"views must be between 1 and {DIHEDRAL_VIEWS}, not {views}")
    loaded = load_checkpoint(teacher)
    summary = loaded.meta.get("data") or {}
    if "val_fraction" not in summary or "split_seed" not in summary:
        raise ValueError(f"the teacher {str(teacher)!r} records no split: train it with python -m ml.train")
    splits = split_sources(read_sources(data), val_fraction=summary["val_fraction"], seed=summary["split_seed"])
    pixels, _ = load_pixels_and_sides(splits.train, preprocess=loaded.preprocess)
    model = loaded.model.to("cuda" if torch.cuda.is_available() else "cpu", memory_format=torch.channels_last)
    logits = torch.cat(
        [
            predict_logits(model, part, preprocess=loaded.preprocess, views=views, batch_size=64)
            for part in tqdm(pixels.split(chunk), desc="teacher", unit=f"×{chunk} img")
        ]
    )
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
    parser.add_argument(
        "--views",
        type=int,
        default=2,
        choices=range(1, DIHEDRAL_VIEWS + 1),
        help="flips and turns averaged per image: 1 the image, 2 and its mirror, 4 and both turned half-way, 8 all",
    )
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
