"""Fit the gate: ``python -m ml.fit_gate --checkpoint FILE --data DIR [--data DIR] --ood DIR``.

Positives are dermatoscopic images of the checkpoint's own splits: its training images fit the
gate, half of each validation set (by lesion) standardises the two networks' scores and chooses
the threshold, the other half is reported. Negatives are the photos under ``--ood`` (one
subfolder per kind, each with a ``manifest.csv``; split by the manifest's ``label`` for patient
photos, else by file) and generated images (:mod:`ml.negatives`): part fits the gate, the rest is
reported, never used to choose anything. The gate is stored in the checkpoint.

``--gate-of FILE`` fits nothing: the checkpoint is served with the gate of ``FILE`` instead
(:func:`ml.checkpoint.record_gate_from`).
"""

import argparse
import csv
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from ml import CLASS_CODES, SHIPPED_CHECKPOINT
from ml.augment import augment, random_resolution, simulated_upload
from ml.checkpoint import load_checkpoint, record_gate, record_gate_from
from ml.data import DataError, Sample, load_pixels_and_sides, read_sources, split_by_lesion, split_sources
from ml.gate import EvidenceNet, Gate, GateConfig, PixelNet, gate_features
from ml.inference import Predictor
from ml.model import fold_for_inference, forward_with_features
from ml.negatives import KINDS, non_lesion_images
from ml.preprocessing import ImageError, PreprocessConfig, decode, normalize, prepare
from ml.resolutions import by_resolution
from ml.triage import MALIGNANT_INDEX


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
    """Evidence features of N×3×H×W uint8 prepared pixels; ``augmented`` applies the training augmentation."""
    outputs = []
    for start in range(0, len(pixels), batch_size):
        x = pixels[start : start + batch_size].float()
        if augmented:
            if short_sides is not None:
                x = random_resolution(x, short_sides[start : start + batch_size], low=84)
            x = augment(x)
        inputs = normalize(x, preprocess=preprocess).contiguous(memory_format=torch.channels_last)
        outputs.append(gate_features(*forward_with_features(model, inputs), x))
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


def photo_pixels(data: bytes, *, preprocess: PreprocessConfig, rng: random.Random | None = None) -> torch.Tensor:
    """Prepared pixels of a photo; with ``rng``, of a random crop of it (how else a user might frame it),
    half of the time saved again as a :func:`ml.augment.simulated_upload`."""
    pixels = decode(data, preprocess=preprocess)
    if rng is not None:
        height, width = pixels.shape[-2:]
        h, w = round(height * rng.uniform(0.4, 1.0)), round(width * rng.uniform(0.4, 1.0))
        top, left = rng.randrange(height - h + 1), rng.randrange(width - w + 1)
        pixels = pixels[:, top : top + h, left : left + w]
        if rng.random() < 0.5:
            crop = Image.fromarray(pixels.permute(1, 2, 0).numpy())
            pixels = decode(simulated_upload(crop, rng), preprocess=preprocess)
    return prepare(pixels, preprocess=preprocess)


def negative_pixels(photos: list[bytes], *, preprocess: PreprocessConfig, views: int, seed: int) -> torch.Tensor:
    """The photos as prepared pixels: the whole photo, plus ``views - 1`` random crops of each."""
    rng = random.Random(seed)
    out = []
    for data in photos:
        try:
            out.append(photo_pixels(data, preprocess=preprocess))
            out += [photo_pixels(data, preprocess=preprocess, rng=rng) for _ in range(views - 1)]
        except ImageError:
            continue
    return torch.stack(out)


def upload_pixels(samples: list[Sample], *, preprocess: PreprocessConfig, seed: int) -> torch.Tensor:
    """Prepared pixels of one :func:`ml.augment.simulated_upload` of each sample, through the site's path."""
    rng = random.Random(seed)
    out = []
    for sample in samples:
        with Image.open(sample.path) as image:
            upload = simulated_upload(image, rng)
        out.append(prepare(decode(upload, preprocess=preprocess), preprocess=preprocess))
    return torch.stack(out) if out else torch.empty(0, 3, preprocess.size, preprocess.size, dtype=torch.uint8)


def balanced_draw(samples: list[Sample], *, count: int, seed: int) -> list[Sample]:
    """``count`` samples drawn with replacement, every class as often: the rare pink and non-pigmented
    lesions (BCC, AKIEC, VASC) weigh as much in the gate's positives as nevi."""
    per_class = Counter(sample.label for sample in samples)
    weights = [1 / per_class[sample.label] for sample in samples]
    return random.Random(seed).choices(samples, weights=weights, k=count)


def fit_evidence(
    positives: torch.Tensor, negatives: torch.Tensor, *, config: GateConfig, epochs: int = 60, seed: int = 0
) -> EvidenceNet:
    """Train the evidence network on feature rows (label 1: dermatoscopic, 0: not), both kinds weighing the same."""
    torch.manual_seed(seed)
    features = torch.cat([positives, negatives])
    labels = torch.cat([torch.ones(len(positives)), torch.zeros(len(negatives))])
    net = EvidenceNet(config)
    net.mean.copy_(features.mean(dim=0))
    net.std.copy_(features.std(dim=0).clamp_min(1e-6))
    weight = torch.where(labels == 1, len(labels) / (2 * len(positives)), len(labels) / (2 * len(negatives)))
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=0.05)
    net.train()
    for _ in range(epochs):
        for index in torch.randperm(len(features)).split(256):
            loss = F.binary_cross_entropy_with_logits(net(features[index]), labels[index], weight=weight[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return net.eval()


def fit_pixels(
    positives: torch.Tensor,
    short_sides: torch.Tensor,
    negatives: torch.Tensor,
    *,
    config: GateConfig,
    preprocess: PreprocessConfig,
    epochs: int = 8,
    batch_size: int = 32,
    seed: int = 0,
) -> PixelNet:
    """Train the pixel network on prepared uint8 pixels with the training augmentation, balanced batches."""
    torch.manual_seed(seed)
    net = PixelNet(config)
    steps = len(positives) // batch_size
    optimizer = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=epochs * steps)
    labels = torch.cat([torch.ones(batch_size), torch.zeros(batch_size)])
    for epoch in range(epochs):
        net.train()
        started, total = time.monotonic(), 0.0
        order = torch.randperm(len(positives))
        for step in range(steps):
            chosen = order[step * batch_size : (step + 1) * batch_size]
            drawn = torch.randint(len(negatives), (batch_size,))
            pos = augment(random_resolution(positives[chosen].float(), short_sides[chosen], low=84))
            x = normalize(torch.cat([pos, augment(negatives[drawn].float())]), preprocess=preprocess)
            loss = F.binary_cross_entropy_with_logits(net(x), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        print(
            f"pixel gate epoch {epoch + 1}/{epochs}: loss {total / steps:.4f}, {time.monotonic() - started:.0f}s",
            file=sys.stderr,
        )
    return net.eval()


@torch.inference_mode()
def gate_parts(gate: Gate, model: torch.nn.Module, pixels: torch.Tensor, preprocess: PreprocessConfig) -> torch.Tensor:
    """N×k raw scores (evidence, then pixels where the gate has a pixel network) of prepared uint8 pixels."""
    if not len(pixels):
        return torch.empty(0, 1 if gate.pixels is None else 2)
    rows = []
    for batch in pixels.split(128):
        x = normalize(batch, preprocess=preprocess).contiguous(memory_format=torch.channels_last)
        logits, blocks = forward_with_features(model, x)
        rows.append(gate.parts(gate_features(logits, blocks, batch.float()), x))
    return torch.cat(rows)


def choose_threshold(
    scores: dict[str, torch.Tensor],
    *,
    max_refusal: float,
    labels: dict[str, torch.Tensor] | None = None,
    max_cancer_refusal: float = 1.0,
) -> float:
    """The highest threshold that refuses at most ``max_refusal`` of every set of positive scores and,
    with ``labels`` (the sets' class indices), at most ``max_cancer_refusal`` of each malignant or
    precancerous class (:data:`ml.triage.MALIGNANT_OR_PRECANCEROUS`) in every set.

    A refused cancer is a cancer the site sends away unanswered: the gate may miss a few more photos
    that are not lesions rather than that.
    """
    # "lower": a score of the set itself, so that at most the share of the set lies below it.
    limits = [float(torch.quantile(s, max_refusal, interpolation="lower")) for s in scores.values()]
    for name, classes in (labels or {}).items() if max_cancer_refusal < 1 else ():
        for c in MALIGNANT_INDEX:
            chosen = scores[name][classes == c]
            if len(chosen):
                limits.append(float(torch.quantile(chosen, max_cancer_refusal, interpolation="lower")))
    return min(limits)


def _validation_sets(loaded, data: list[Path]) -> tuple[list[Sample], dict[str, list[Sample]]]:
    summary = loaded.meta["data"]
    splits = split_sources(read_sources(data), val_fraction=summary["val_fraction"], seed=summary["split_seed"])
    sets = {}
    for name, samples in (("HAM10000 validation", splits.val), ("other-hospital validation", splits.external)):
        if samples:
            report_half, threshold_half = split_by_lesion(samples, val_fraction=0.5, seed=1)  # every class in both
            sets[f"{name} (threshold)"], sets[f"{name} (report)"] = threshold_half, report_half
    return splits.train, sets


def gate_fit_and_report(
    *,
    checkpoint: Path,
    data: list[Path],
    ood: Path,
    fullres: Path | None = None,
    max_refusal: float = 0.015,
    max_cancer_refusal: float = 0.03,
    fit_positives: int = 8000,
    pixel_network: bool = True,
    pixels_from: Path | None = None,
    pixel_epochs: int = 8,
    generated: tuple[int, int] = (60, 25),
    seed: int = 0,
) -> dict[str, Any]:
    """Fit the gate of ``checkpoint``, choose its threshold, store both in the checkpoint; return the report.

    Positives are drawn class-balanced from the training split, each as its small copy and as a
    simulated upload (:func:`ml.augment.simulated_upload`); the threshold is the highest that
    refuses at most ``max_refusal`` of every threshold half, as copies and as uploads, and at most
    ``max_cancer_refusal`` of its melanomas, basal cell carcinomas and AKIEC (:func:`choose_threshold`). ``fullres``
    is a folder of full-resolution lesions (:mod:`ml.fullres`), reported at every resolution, never
    used to choose. ``pixel_network=False`` fits the evidence network alone (no second forward
    pass); ``pixels_from`` reuses the pixel network of another checkpoint's gate (it does not
    depend on the classifier). ``generated`` is how many generated images of each kind fit the
    gate and how many are reported.
    """
    loaded = load_checkpoint(checkpoint)
    model, preprocess = fold_for_inference(loaded.model), loaded.preprocess
    train, sets = _validation_sets(loaded, data)
    fit_samples = balanced_draw(train, count=fit_positives, seed=seed)
    copies, sides = load_pixels_and_sides(fit_samples, preprocess=preprocess)
    uploads = upload_pixels(fit_samples, preprocess=preprocess, seed=seed)
    photos_fit, photos_held = split_groups(read_ood(ood), fraction=0.4, seed=seed)
    photo_pixels = negative_pixels(
        [p.read_bytes() for p, _, _ in photos_fit], preprocess=preprocess, views=16, seed=seed
    )
    generated_pixels = negative_pixels(
        [d for _, d in non_lesion_images(per_kind=generated[0], seed=seed)], preprocess=preprocess, views=2, seed=seed
    )
    negatives = torch.cat([photo_pixels, generated_pixels])

    evidence_positives = torch.cat(
        [
            extract_features(model, copies, preprocess=preprocess),
            extract_features(model, copies, preprocess=preprocess, augmented=True, short_sides=sides),
            extract_features(model, uploads, preprocess=preprocess, augmented=True),
        ]
    )
    evidence_negatives = extract_features(model, negatives, preprocess=preprocess, augmented=True)
    config = GateConfig(features=evidence_positives.shape[1], channels=GateConfig.channels if pixel_network else ())
    gate = Gate(config)
    gate.evidence = fit_evidence(evidence_positives, evidence_negatives, config=config, seed=seed)
    if gate.pixels is not None and pixels_from is not None:
        lender = load_checkpoint(pixels_from).gate
        if lender is None or lender.gate.pixels is None:
            raise DataError(f"{str(pixels_from)!r} has no pixel network of its own to reuse")
        gate.pixels = lender.gate.pixels
    elif gate.pixels is not None:
        positives = torch.cat([copies, uploads])
        gate.pixels = fit_pixels(
            positives,
            torch.cat([sides, torch.full((len(uploads),), preprocess.source_short_side)]),
            negatives,
            config=config,
            preprocess=preprocess,
            epochs=pixel_epochs,
            seed=seed,
        )
    gate.eval()
    _as_stored(gate)

    positive_sets = {}
    for name, samples in sets.items():
        labels = torch.tensor([s.label for s in samples])
        positive_sets[name] = (load_pixels_and_sides(samples, preprocess=preprocess)[0], labels)
        as_uploads = name.replace(" (", ", as uploads (")
        positive_sets[as_uploads] = (upload_pixels(samples, preprocess=preprocess, seed=seed + 1), labels)
    parts = {name: gate_parts(gate, model, pixels, preprocess) for name, (pixels, _) in positive_sets.items()}
    reference = torch.cat([v for k, v in parts.items() if k.endswith("(threshold)")])
    gate.scale.copy_(torch.stack([reference.mean(dim=0), reference.std(dim=0)], dim=1))
    _as_stored(gate)

    scores = {name: gate.combine(raw) for name, raw in parts.items()}
    threshold_sets = [name for name in scores if name.endswith("(threshold)")]
    threshold = choose_threshold(
        {name: scores[name] for name in threshold_sets},
        max_refusal=max_refusal,
        labels={name: positive_sets[name][1] for name in threshold_sets},
        max_cancer_refusal=max_cancer_refusal,
    )
    rows = [_row(name, s, threshold, labels=positive_sets[name][1]) for name, s in scores.items()]
    by_kind: dict[str, list[bytes]] = defaultdict(list)
    for path, _, kind in photos_held:
        by_kind[kind].append(path.read_bytes())
    for kind_name in KINDS:
        kind_images = non_lesion_images(per_kind=generated[1], seed=seed + 1, kinds=(kind_name,))
        by_kind[f"generated/{kind_name}"] = [d for _, d in kind_images]
    for kind, photos in sorted(by_kind.items()):
        held = negative_pixels(photos, preprocess=preprocess, views=1, seed=seed)
        rows.append(_row(kind, gate.combine(gate_parts(gate, model, held, preprocess)), threshold))
    report = {
        "checkpoint": str(checkpoint),
        "threshold": threshold,
        "max_refusal": max_refusal,
        "max_cancer_refusal": max_cancer_refusal,
        "fit": {
            "positives": len(copies),
            "positive_views": ["small copy", "small copy augmented", "simulated upload augmented"],
            "negatives": len(negatives),
            "pixel_network": gate.pixels is not None,
            "pixels_from": str(pixels_from or ""),
        },
        "rows": rows,
    }
    record_gate(checkpoint, gate=gate, threshold=threshold, report=report)
    if fullres is not None:  # through the site's own path (guard and gate), with the gate just stored
        report["rows"] += fullres_rows(Predictor(checkpoint), fullres)
        record_gate(checkpoint, gate=gate, threshold=threshold, report=report)
    return report


def fullres_rows(predictor: Predictor, folder: Path) -> list[dict[str, Any]]:
    """Report rows for a folder of full-resolution lesions (:mod:`ml.fullres`), at every resolution."""
    labels, results = by_resolution(predictor, folder)
    return [
        _refusals(f"{folder.name}, {resolution} (report)", refused, labels=labels)
        for resolution, (refused, _) in results.items()
    ]


@torch.no_grad()
def _as_stored(gate: Gate) -> None:
    """Round the gate to the half precision it is stored in, so that what is scored is what ships."""
    for tensor in [*gate.parameters(), *gate.buffers()]:
        if tensor.is_floating_point():
            tensor.copy_(tensor.half().float())


def _row(name: str, scores: torch.Tensor, threshold: float, *, labels: torch.Tensor | None = None) -> dict[str, Any]:
    return _refusals(name, scores < threshold, labels=labels)


def _refusals(name: str, refused: torch.Tensor, *, labels: torch.Tensor | None = None) -> dict[str, Any]:
    """A report row: how many of a set were refused, and per class for dermatoscopic sets (with ``labels``)."""
    row = {
        "set": name,
        "dermatoscopic": labels is not None,
        "images": len(refused),
        "refused": int(refused.sum()),
        "refused_share": int(refused.sum()) / max(1, len(refused)),
    }
    if labels is not None:
        row["per_class"] = {
            code: {"images": int((labels == c).sum()), "refused": int(refused[labels == c].sum())}
            for c, code in enumerate(CLASS_CODES)
            if (labels == c).any()
        }
    return row


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"gate threshold {report['threshold']:.3f} (refuses ≤ {report['max_refusal']:.1%} of each threshold half, "
        f"≤ {report.get('max_cancer_refusal', 1):.1%} of its MEL, BCC and AKIEC)",
        f"{'set':52} {'images':>7} {'refused':>8} {'share':>7}  refused per class",
    ]
    for row in report["rows"]:
        per_class = "  ".join(
            f"{code} {c['refused'] / c['images']:.1%}" for code, c in row.get("per_class", {}).items()
        )
        lines.append(f"{row['set']:52} {row['images']:7d} {row['refused']:8d} {row['refused_share']:7.1%}  {per_class}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ml.fit_gate", description="Fit the out-of-distribution gate.")
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED_CHECKPOINT)
    parser.add_argument("--data", type=Path, action="append", help="the checkpoint's data folders (required to fit)")
    parser.add_argument("--ood", type=Path, help="folder of non-dermatoscopic photos (*/manifest.csv; required to fit)")
    parser.add_argument("--max-refusal", type=float, default=0.015, help="refusals allowed on each threshold half")
    parser.add_argument(
        "--max-cancer-refusal",
        type=float,
        default=0.03,
        help="refusals allowed of each of MEL, BCC and AKIEC in each threshold half (1: no such limit)",
    )
    parser.add_argument(
        "--fullres", type=Path, help="folder of full-resolution lesions to report on (labels.csv; never for choosing)"
    )
    parser.add_argument(
        "--no-pixel-network",
        dest="pixel_network",
        action="store_false",
        help="fit the evidence network alone: the gate then costs no second forward pass",
    )
    parser.add_argument(
        "--pixels-from",
        type=Path,
        help="reuse the pixel network of this checkpoint's gate; fit only the evidence network",
    )
    parser.add_argument(
        "--gate-of",
        type=Path,
        help="fit nothing: serve the checkpoint with the gate of this one, in the same folder (its model runs too)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.gate_of:
        if args.data or args.ood or args.fullres:
            parser.error(
                "--gate-of fits nothing: it takes no --data, --ood or --fullres (python -m ml.fullres reports)"
            )
        try:
            record_gate_from(args.checkpoint, source=args.gate_of)
        except (FileNotFoundError, ValueError) as error:
            parser.error(str(error))
        print(f"{args.checkpoint} is served with the gate of {args.gate_of}", file=sys.stderr)
        return 0
    if not args.data or not args.ood:
        parser.error("fitting a gate needs --data and --ood")
    try:
        report = gate_fit_and_report(
            checkpoint=args.checkpoint,
            data=args.data,
            ood=args.ood,
            max_refusal=args.max_refusal,
            max_cancer_refusal=args.max_cancer_refusal,
            fullres=args.fullres,
            pixel_network=args.pixel_network,
            pixels_from=args.pixels_from,
        )
    except (FileNotFoundError, DataError) as error:
        parser.error(str(error))
    print(format_report(report))
    print(f"stored the gate in {args.checkpoint}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
