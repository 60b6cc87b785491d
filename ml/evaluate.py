"""Evaluation: ``python -m ml.evaluate --data DIR --checkpoint FILE [--tta]`` prints and saves a report."""

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from ml import SHIPPED_CHECKPOINT
from ml.calibration import expected_calibration_error, reliability
from ml.checkpoint import load_checkpoint, record_evaluation, record_triage
from ml.data import DataError, load_pixels, read_sources, split_by_lesion, split_sources
from ml.inference import predict_logits
from ml.metrics import (
    abstention_curve,
    balanced_accuracy,
    balanced_accuracy_difference_interval,
    balanced_accuracy_interval,
    classification_report,
)
from ml.model import fold_for_inference
from ml.report import format_report, save_plots
from ml.triage import (
    TriagePolicy,
    fit_policy,
    is_malignant,
    measure_policy,
    recorded_policy,
    risk,
    strictest,
)

ABSTENTION_THRESHOLDS = [0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


class SplitMismatch(ValueError):
    """A baseline checkpoint whose validation split differs: its scores are not comparable."""


def evaluate_checkpoint(
    *,
    data: Path | list[Path],
    checkpoint: Path,
    split: str = "val",
    tta: bool = False,
    baseline: Path | None = None,
    ensemble: list[Path] = (),
) -> dict[str, Any]:
    """Score a checkpoint on its validation sets (``split="val"``) or on every image of ``data`` (``"all"``).

    The validation sets are those of :func:`ml.data.split_sources`: the first folder's lesion-grouped
    split (``validation``) and, with BCN_20000 images, the other hospital's held-out lesions
    (``external``). Returns ``{"sets": {name: report}, "triage": …}``. With ``baseline``, each set's
    report also has that checkpoint's BMA and the paired bootstrap interval of the difference.
    With ``ensemble``, the checkpoint's calibrated probabilities are averaged with those of these
    checkpoints (trained on the same split), and the average is what is scored.
    """
    loaded = load_checkpoint(checkpoint)
    samples = read_sources([data] if isinstance(data, Path) else data)
    summary = loaded.meta["data"]
    if split == "val":
        splits = split_sources(samples, val_fraction=summary["val_fraction"], seed=summary["split_seed"])
        sets = {name: s for name, s in (("validation", splits.val), ("external", splits.external)) if s}
    else:
        sets = {"all": samples}
    other = load_checkpoint(baseline) if baseline is not None else None
    members = [load_checkpoint(path) for path in ensemble]
    keys = ("val_fraction", "split_seed")
    for path, compared in [(baseline, other), *zip(ensemble, members)]:
        if compared is not None and split == "val" and any(compared.meta["data"][k] != summary[k] for k in keys):
            raise SplitMismatch(f"{path} was validated on another split; compare checkpoints of the same split")
    reports, scored = {}, {}
    for name, set_samples in sets.items():
        labels = torch.tensor([s.label for s in set_samples])
        logits = _logits(loaded, set_samples, tta=tta)
        probs = F.softmax(logits / loaded.temperature, dim=1)
        if members:
            for member in members:
                probs = probs + F.softmax(_logits(member, set_samples, tta=tta) / member.temperature, dim=1)
            probs = probs / (1 + len(members))
            logits = probs.log()  # the uncalibrated ECE below is then the ensemble's own
        scored[name] = (set_samples, probs, labels)
        reports[name] = _set_report(probs, logits, labels, set_samples, temperature=loaded.temperature)
        if other is not None:
            groups = [s.lesion_id or s.image_id for s in set_samples]
            predicted = _logits(other, set_samples, tta=tta).argmax(dim=1)  # temperature does not change the argmax
            reports[name]["baseline"] = {
                "checkpoint": str(baseline),
                "balanced_accuracy": balanced_accuracy(predicted, labels),
                "difference_ci95": balanced_accuracy_difference_interval(
                    probs.argmax(dim=1), predicted, labels, groups
                ),
            }
    triage = triage_report(scored) if split == "val" else None
    for name, (_, probs, labels) in scored.items():
        policy = TriagePolicy(**triage["policy"]) if triage else recorded_policy(loaded.meta)[0]
        reports[name]["triage"] = measure_policy(probs, labels, policy)
    return {
        "checkpoint": str(checkpoint),
        "ensemble": [str(path) for path in ensemble],
        "split": split,
        "tta": tta,
        "sets": reports,
        "triage": triage,
    }


def _set_report(
    probs: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, samples: list, *, temperature: float
) -> dict[str, Any]:
    groups = [s.lesion_id or s.image_id for s in samples]  # without lesion groups, each image its own
    report = classification_report(probs, labels)
    malignant = is_malignant(labels)
    report.update(
        balanced_accuracy_ci95=balanced_accuracy_interval(probs.argmax(dim=1), labels, groups),
        malignant_auc=float(roc_auc_score(malignant, risk(probs))) if 0 < malignant.sum() < len(labels) else None,
        sources=sorted({s.source for s in samples}),
        temperature=temperature,
        ece_uncalibrated=expected_calibration_error(F.softmax(logits, dim=1), labels),
        reliability=reliability(probs, labels),
        abstention=abstention_curve(probs, labels, ABSTENTION_THRESHOLDS),
    )
    return report


def triage_report(scored: dict[str, tuple[list, torch.Tensor, torch.Tensor]]) -> dict[str, Any]:
    """Fit the triage policy on half of each validation set's lesions; measure it on the other half.

    Each set gets its own thresholds and the strictest are kept (:func:`ml.triage.strictest`): a
    hospital with fewer malignant lesions must not get a lower sensitivity than the pooled one.
    """
    policies, held = [], {}
    for name, (samples, probs, labels) in scored.items():
        _, fit_half = split_by_lesion(samples, val_fraction=0.5, seed=1)  # every class has a lesion in it
        fit_ids = {f.image_id for f in fit_half}
        chosen = torch.tensor([s.image_id in fit_ids for s in samples])
        policies.append(fit_policy(probs[chosen], labels[chosen]))
        held[name] = (probs[~chosen], labels[~chosen])
    policy = strictest(policies)
    all_probs = torch.cat([p for p, _ in held.values()])
    all_labels = torch.cat([lab for _, lab in held.values()])
    return {
        "policy": asdict(policy),
        "chosen_on": "half of each validation set's lesions (seed 1), the strictest thresholds of the sets",
        "measured": measure_policy(all_probs, all_labels, policy),
        "measured_by_set": {name: measure_policy(p, lab, policy) for name, (p, lab) in held.items()},
        "measured_on": "the other half",
    }


def _logits(loaded, samples: list, *, tta: bool) -> torch.Tensor:
    pixels = load_pixels(samples, preprocess=loaded.preprocess)
    model = fold_for_inference(loaded.model)  # what the web app runs
    # Batches of 64, as in training: the teacher's activations at 256 images page-fault more than they compute.
    return predict_logits(model, pixels, preprocess=loaded.preprocess, views=8 if tta else 1, batch_size=64)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ml.evaluate", description="Evaluate a checkpoint.")
    parser.add_argument(
        "--data",
        required=True,
        type=Path,
        action="append",
        help="the checkpoint's data folders, as given to ml.train (HAM10000 first; ISIC 2019 adds the external set)",
    )
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED_CHECKPOINT)
    parser.add_argument(
        "--split",
        choices=("val", "all"),
        default="val",
        help="'val': the checkpoint's validation sets; 'all': every image (a test set)",
    )
    parser.add_argument("--tta", action="store_true", help="average over the eight flips and quarter turns")
    parser.add_argument(
        "--baseline", type=Path, help="also score this checkpoint on the same images; report the BMA difference"
    )
    parser.add_argument(
        "--ensemble",
        type=Path,
        action="append",
        default=[],
        help="average the calibrated probabilities with this checkpoint's (repeatable); not with --record",
    )
    parser.add_argument("--out", type=Path, default=Path("reports"), help="folder for the JSON report and plots")
    parser.add_argument(
        "--record",
        action="store_true",
        help="also store the summaries (and, for --split val, the triage policy) in the checkpoint; the site uses them",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.record and args.ensemble:
        parser.error("--record stores one checkpoint's figures; an ensemble's are not that checkpoint's")
    try:
        result = evaluate_checkpoint(
            data=args.data,
            checkpoint=args.checkpoint,
            split=args.split,
            tta=args.tta,
            baseline=args.baseline,
            ensemble=args.ensemble,
        )
    except (FileNotFoundError, DataError, SplitMismatch) as error:
        parser.error(str(error))
    print(format_report(result))
    members = "".join(f"+{path.stem}" for path in args.ensemble)
    stem = f"{args.checkpoint.stem}{members}_{args.split}{'_tta' if args.tta else ''}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    paths = []
    for name, report in result["sets"].items():
        paths += save_plots(report, args.out, stem=f"{stem}_{name}")
    if args.record:
        for name, report in result["sets"].items():
            key = ("validation" if name == "validation" else name) + ("_tta" if args.tta else "")
            summary = {k: v for k, v in report.items() if k not in ("reliability", "baseline")}
            record_evaluation(args.checkpoint, key=key, report=summary)
        if result["triage"] and not args.tta:  # the site runs single passes: its policy comes from those
            record_triage(args.checkpoint, triage=result["triage"])
    print(f"\nwrote {args.out / (stem + '.json')}, " + ", ".join(map(str, paths)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
