"""Fit the gate: ``python -m ml.fit_gate --checkpoint FILE --data DIR [--data DIR] --ood DIR``.

Positives are dermatoscopic images of the checkpoint's own splits: its training images fit the
gate, half of each validation set (by lesion) chooses the threshold, the other half is reported.
Negatives are the photos under ``--ood`` (one subfolder per kind, each with a ``manifest.csv``;
split by the manifest's ``label`` for patient photos, else by file) and generated images
(:mod:`ml.negatives`): part fits the gate, the rest is reported, never used to choose anything.
The gate is stored in the checkpoint.
"""

import argparse
import csv
import random
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ml import SHIPPED_CHECKPOINT
from ml.augment import augment, random_resolution
from ml.checkpoint import LoadedModel, load_checkpoint, record_gate
from ml.data import DataError, Sample, load_pixels_and_sides, read_sources, split_by_lesion, split_sources
from ml.gate import Gate, GateConfig, gate_features
from ml.model import fold_for_inference, forward_with_features
from ml.negatives import KINDS, non_lesion_images
from ml.preprocessing import ImageError, PreprocessConfig, decode, normalize, prepare


@torch.inference_mode()
def extract_features(
    model: torch.nn.Module,
    pixels: torch.Tensor,
    *,
    preprocess: PreprocessConfig,
    augmented: bool = False,
    short_sides: torch.Tensor | None = None,
    batch_size: int = 128,
) -> torch.Tensor:
    """Gate features of N×3×H×W uint8 prepared pixels; ``augmented`` applies the training augmentation."""
    outputs = []
    for start in range(0, len(pixels), batch_size):
        x = pixels[start : start + batch_size].float()
        if augmented:
            if short_sides is not None:
                x = random_resolution(x, short_sides[start : start + batch_size], low=84)
            x = augment(x)
        x = normalize(x, preprocess=preprocess).contiguous(memory_format=torch.channels_last)
        outputs.append(gate_features(*forward_with_features(model, x)))
    return torch.cat(outputs) if outputs else torch.empty(0)


def read_ood(folder: Path) -> list[tuple[Path, str, str]]:
    """(path, group, kind) for every photo listed in the ``manifest.csv`` of each subfolder."""
    items = []
    for manifest in sorted(Path(folder).glob("*/manifest.csv")):
        with manifest.open(newline="") as f:
            for row in csv.DictReader(f):
                kind = f"{manifest.parent.name}/{row['source_tag']}"
                # Patient photos are grouped by patient, so one person's lesions stay on one side.
                group = row["label"] if manifest.parent.name == "clinical" else row["file"]
                items.append((manifest.parent / row["file"], group, kind))
    if not items:
        raise DataError(f"no */manifest.csv with photos under {str(folder)!r}")
    return items


def split_groups(items: list[tuple[Path, str, str]], *, fraction: float, seed: int) -> tuple[list, list]:
    """(fit, held out): ``fraction`` of each kind's groups held out, seeded."""
    by_kind: dict[str, set[str]] = defaultdict(set)
    for _, group, kind in items:
        by_kind[kind].add(group)
    rng = random.Random(seed)
    held: set[tuple[str, str]] = set()
    for kind in sorted(by_kind):
        groups = sorted(by_kind[kind])
        rng.shuffle(groups)
        held.update((kind, g) for g in groups[: round(len(groups) * fraction)])
    fit = [item for item in items if (item[2], item[1]) not in held]
    return fit, [item for item in items if (item[2], item[1]) in held]


def prepare_photo(data: bytes, *, preprocess: PreprocessConfig, rng: random.Random | None = None) -> torch.Tensor:
    """Prepared pixels of a photo; with ``rng``, of a random crop of it (how else a user might frame it)."""
    pixels = decode(data, preprocess=preprocess)
    if rng is not None:
        height, width = pixels.shape[-2:]
        h, w = round(height * rng.uniform(0.4, 1.0)), round(width * rng.uniform(0.4, 1.0))
        top, left = rng.randrange(height - h + 1), rng.randrange(width - w + 1)
        pixels = pixels[:, top : top + h, left : left + w]
    return prepare(pixels, preprocess=preprocess)


def negative_pixels(photos: list[bytes], *, preprocess: PreprocessConfig, views: int, seed: int) -> torch.Tensor:
    """The photos as prepared pixels: the whole photo, plus ``views - 1`` random crops of each."""
    rng = random.Random(seed)
    out = []
    for data in photos:
        try:
            out.append(prepare_photo(data, preprocess=preprocess))
            out += [prepare_photo(data, preprocess=preprocess, rng=rng) for _ in range(views - 1)]
        except ImageError:
            continue
    return torch.stack(out)


def fit_gate(
    positives: torch.Tensor, negatives: torch.Tensor, *, epochs: int = 60, seed: int = 0, hidden: int = 64
) -> Gate:
    """Train the gate on feature rows (label 1: dermatoscopic, 0: not), both kinds weighing the same."""
    torch.manual_seed(seed)
    features = torch.cat([positives, negatives])
    labels = torch.cat([torch.ones(len(positives)), torch.zeros(len(negatives))])
    gate = Gate(GateConfig(features=features.shape[1], hidden=hidden))
    gate.mean.copy_(features.mean(dim=0))
    gate.std.copy_(features.std(dim=0).clamp_min(1e-6))
    weight = torch.where(labels == 1, len(labels) / (2 * len(positives)), len(labels) / (2 * len(negatives)))
    optimizer = torch.optim.AdamW(gate.parameters(), lr=3e-3, weight_decay=0.05)
    gate.train()
    for _ in range(epochs):
        for index in torch.randperm(len(features)).split(256):
            loss = F.binary_cross_entropy_with_logits(gate(features[index]), labels[index], weight=weight[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return gate.eval()


def choose_threshold(scores: dict[str, torch.Tensor], *, max_refusal: float) -> float:
    """The highest threshold that refuses at most ``max_refusal`` of every set of positive scores."""
    return min(float(torch.quantile(s, max_refusal)) for s in scores.values())


def _loaded_split(loaded: LoadedModel, data: list[Path]) -> dict[str, list[Sample]]:
    summary = loaded.meta["data"]
    splits = split_sources(read_sources(data), val_fraction=summary["val_fraction"], seed=summary["split_seed"])
    sets = {"fit": splits.train}
    for name, samples in (("HAM10000 validation", splits.val), ("other-hospital validation", splits.external)):
        if samples:
            threshold_half, report_half = split_by_lesion(samples, val_fraction=0.5, seed=1)
            sets[f"{name} (threshold)"], sets[f"{name} (report)"] = threshold_half, report_half
    return sets


def gate_fit_and_report(
    *,
    checkpoint: Path,
    data: list[Path],
    ood: Path,
    max_refusal: float = 0.015,
    fit_positives: int = 6000,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit the gate of ``checkpoint``, choose its threshold, store both in the checkpoint; return the report."""
    loaded = load_checkpoint(checkpoint)
    model = fold_for_inference(loaded.model)
    preprocess = loaded.preprocess
    sets = _loaded_split(loaded, data)
    train = sets.pop("fit")
    fit_samples = random.Random(seed).sample(train, min(fit_positives, len(train)))

    pixels, sides = load_pixels_and_sides(fit_samples, preprocess=preprocess)
    positives = torch.cat(
        [
            extract_features(model, pixels, preprocess=preprocess),
            extract_features(model, pixels, preprocess=preprocess, augmented=True, short_sides=sides),
        ]
    )
    photos_fit, photos_held = split_groups(read_ood(ood), fraction=0.4, seed=seed)
    generated_fit = [data for _, data in non_lesion_images(per_kind=40, seed=seed)]
    negatives = torch.cat(
        [
            extract_features(
                model,
                negative_pixels([p.read_bytes() for p, _, _ in photos_fit], preprocess=preprocess, views=12, seed=seed),
                preprocess=preprocess,
                augmented=True,
            ),
            extract_features(
                model,
                negative_pixels(generated_fit, preprocess=preprocess, views=3, seed=seed),
                preprocess=preprocess,
                augmented=True,
            ),
        ]
    )
    gate = fit_gate(positives, negatives, seed=seed)

    def scores_of(pixels: torch.Tensor) -> torch.Tensor:
        return gate(extract_features(model, pixels, preprocess=preprocess)).detach()

    positive_scores = {name: scores_of(load_pixels_and_sides(s, preprocess=preprocess)[0]) for name, s in sets.items()}
    threshold = choose_threshold(
        {k: v for k, v in positive_scores.items() if k.endswith("(threshold)")}, max_refusal=max_refusal
    )
    rows = [_row(name, scores, threshold, positive=True) for name, scores in positive_scores.items()]
    by_kind: dict[str, list[bytes]] = defaultdict(list)
    for path, _, kind in photos_held:
        by_kind[kind].append(path.read_bytes())
    for kind_name in KINDS:
        by_kind[f"generated/{kind_name}"] = [
            d for _, d in non_lesion_images(per_kind=25, seed=seed + 1, kinds=(kind_name,))
        ]
    for kind, photos in sorted(by_kind.items()):
        rows.append(
            _row(kind, scores_of(negative_pixels(photos, preprocess=preprocess, views=1, seed=seed)), threshold)
        )
    report = {
        "checkpoint": str(checkpoint),
        "threshold": threshold,
        "max_refusal": max_refusal,
        "fit": {"positives": len(positives), "negatives": len(negatives)},
        "rows": rows,
    }
    record_gate(checkpoint, gate=gate, threshold=threshold, report=report)
    return report


def _row(name: str, scores: torch.Tensor, threshold: float, *, positive: bool = False) -> dict[str, Any]:
    refused = int((scores < threshold).sum())
    return {
        "set": name,
        "dermatoscopic": positive,
        "images": len(scores),
        "refused": refused,
        "refused_share": refused / max(1, len(scores)),
    }


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"gate threshold {report['threshold']:.3f} (refuses ≤ {report['max_refusal']:.1%} of each threshold half)",
        f"{'set':42} {'images':>7} {'refused':>8} {'share':>7}",
    ]
    for row in report["rows"]:
        lines.append(f"{row['set']:42} {row['images']:7d} {row['refused']:8d} {row['refused_share']:7.1%}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ml.fit_gate", description="Fit the out-of-distribution gate.")
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED_CHECKPOINT)
    parser.add_argument("--data", required=True, type=Path, action="append", help="the checkpoint's data folders")
    parser.add_argument("--ood", required=True, type=Path, help="folder of non-dermatoscopic photos (*/manifest.csv)")
    parser.add_argument("--max-refusal", type=float, default=0.015, help="refusals allowed on each threshold half")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        report = gate_fit_and_report(
            checkpoint=args.checkpoint, data=args.data, ood=args.ood, max_refusal=args.max_refusal
        )
    except (FileNotFoundError, DataError) as error:
        parser.error(str(error))
    print(format_report(report))
    print(f"stored the gate in {args.checkpoint}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
