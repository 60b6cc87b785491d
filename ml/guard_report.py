"""``python -m ml.guard_report --data DIR``: how many lesion images the out-of-scope guard refuses, and why."""

import argparse
import sys
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from ml.data import read_samples, split_by_lesion
from ml.guard import REASONS, out_of_scope_reason
from ml.preprocessing import decode


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ml.guard_report", description="Measure how many lesion images the out-of-scope guard refuses."
    )
    parser.add_argument("--data", required=True, type=Path, help="HAM10000 or ISIC 2018 Task 3 folder")
    parser.add_argument("--split", choices=("val", "all"), default="val", help="the lesion-grouped val split (seed 0)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    samples = read_samples(args.data)
    if args.split == "val":
        _, samples = split_by_lesion(samples, seed=0)
    reasons = Counter()
    for sample in tqdm(samples, desc="checking", unit="img"):
        reason = out_of_scope_reason(decode(sample.path.read_bytes()))
        reasons[REASONS[reason] if reason else "accepted"] += 1
    refused = len(samples) - reasons["accepted"]
    print(f"{args.split} split of {args.data}: {len(samples)} lesion images")
    print(f"refused {refused} ({refused / len(samples):.2%}) — false rejections")
    for reason, count in reasons.most_common():
        print(f"  {count:6d}  {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
