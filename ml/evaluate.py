"""Evaluation: ``python -m ml.evaluate --data DIR --checkpoint FILE [--tta]`` prints and saves a report."""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from ml import CLASS_CODES, SHIPPED_CHECKPOINT  # noqa: E402
from ml.calibration import expected_calibration_error, reliability  # noqa: E402
from ml.checkpoint import load_checkpoint, record_evaluation  # noqa: E402
from ml.data import DataError, load_pixels, read_samples, split_by_lesion  # noqa: E402
from ml.metrics import (  # noqa: E402
    abstention_curve,
    balanced_accuracy,
    balanced_accuracy_difference_interval,
    balanced_accuracy_interval,
    classification_report,
)
from ml.model import fold_for_inference  # noqa: E402
from ml.predict import predict_logits  # noqa: E402

ABSTENTION_THRESHOLDS = [0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


class SplitMismatch(ValueError):
    """A baseline checkpoint whose validation split differs: its scores are not comparable."""


def evaluate_checkpoint(
    *, data: Path, checkpoint: Path, split: str = "val", tta: bool = False, baseline: Path | None = None
) -> dict[str, Any]:
    """Score a checkpoint on its own lesion-grouped validation split (``split="val"``) or a whole folder.

    With ``baseline``, also score that checkpoint on the same images and report the paired bootstrap
    interval of the BMA difference (both checkpoints must use the same split).
    """
    loaded = load_checkpoint(checkpoint)
    samples = read_samples(data)
    if split == "val":
        summary = loaded.meta["data"]
        _, samples = split_by_lesion(samples, val_fraction=summary["val_fraction"], seed=summary["split_seed"])
    labels = torch.tensor([s.label for s in samples])
    groups = [s.lesion_id or s.image_id for s in samples]  # without lesion groups, each image its own
    logits = _logits(loaded, samples, tta=tta)
    probs = F.softmax(logits / loaded.temperature, dim=1)
    report = classification_report(probs, labels)
    report.update(
        balanced_accuracy_ci95=balanced_accuracy_interval(probs.argmax(dim=1), labels, groups),
        checkpoint=str(checkpoint),
        data=str(data),
        split=split,
        tta=tta,
        temperature=loaded.temperature,
        ece_uncalibrated=expected_calibration_error(F.softmax(logits, dim=1), labels),
        reliability=reliability(probs, labels),
        abstention=abstention_curve(probs, labels, ABSTENTION_THRESHOLDS),
    )
    if baseline is not None:
        other = load_checkpoint(baseline)
        keys = ("val_fraction", "split_seed")
        if split == "val" and any(other.meta["data"][k] != loaded.meta["data"][k] for k in keys):
            raise SplitMismatch(f"{baseline} was validated on another split; compare checkpoints of the same split")
        predicted = _logits(other, samples, tta=tta).argmax(dim=1)  # temperature does not change the argmax
        report["baseline"] = {
            "checkpoint": str(baseline),
            "balanced_accuracy": balanced_accuracy(predicted, labels),
            "difference_ci95": balanced_accuracy_difference_interval(probs.argmax(dim=1), predicted, labels, groups),
        }
    return report


def _logits(loaded, samples: list, *, tta: bool) -> torch.Tensor:
    pixels = load_pixels(samples, config=loaded.preprocess)
    model = fold_for_inference(loaded.model)  # what the web app runs
    return predict_logits(model, pixels, config=loaded.preprocess, tta=tta)


def format_report(report: dict[str, Any]) -> str:
    """The report as a plain-text table."""
    low, high = report["balanced_accuracy_ci95"]
    lines = [
        f"{report['split']} split of {report['data']}: {report['n']} images, TTA {'on' if report['tta'] else 'off'}",
        f"accuracy {report['accuracy']:.4f}   BMA {report['balanced_accuracy']:.4f} "
        f"(95 % interval over lesions {low:.3f}–{high:.3f})   macro AUC {report['macro_auc']:.4f}",
        f"ECE {report['ece_uncalibrated']:.4f} before → {report['ece']:.4f} after temperature "
        f"{report['temperature']:.3f}",
    ]
    if "baseline" in report:
        base = report["baseline"]
        low, high = base["difference_ci95"]
        verdict = "better" if low > 0 else "worse" if high < 0 else "no clear difference"
        lines.append(
            f"against {base['checkpoint']} (BMA {base['balanced_accuracy']:.4f}): difference "
            f"{report['balanced_accuracy'] - base['balanced_accuracy']:+.4f}, paired 95 % interval "
            f"{low:+.3f} to {high:+.3f} — {verdict}"
        )
    lines += [
        "",
        f"{'class':6} {'precision':>9} {'recall':>7} {'F1':>6} {'AUC':>6} {'support':>8}",
    ]
    for code, row in report["per_class"].items():
        scores = " ".join(f"{row[k]:{w}.3f}" for k, w in (("precision", 9), ("recall", 7), ("f1", 6), ("auc", 6)))
        lines.append(f"{code:6} {scores} {row['support']:8d}")
    lines += [
        "",
        "confusion matrix (rows: truth, columns: prediction)",
        "       " + " ".join(f"{c:>5}" for c in CLASS_CODES),
    ]
    for code, row in zip(CLASS_CODES, report["confusion_matrix"]):
        lines.append(f"{code:6} " + " ".join(f"{v:5d}" for v in row))
    lines += [
        "",
        "abstention: answer only when the top calibrated probability ≥ threshold",
        "threshold coverage accuracy   BMA  classes answered",
    ]
    for row in report["abstention"]:
        lines.append(
            f"{row['threshold']:9.2f} {row['coverage']:8.3f} {row['accuracy']:8.3f} {row['balanced_accuracy']:6.3f}"
            f" {row['classes']:8d}"
        )
    return "\n".join(lines)


def save_plots(report: dict[str, Any], out_dir: Path, *, stem: str) -> list[Path]:
    """Confusion matrix and reliability diagram as PNG files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    matrix = torch.tensor(report["confusion_matrix"], dtype=torch.float)
    normalized = matrix / matrix.sum(dim=1, keepdim=True).clamp_min(1)
    fig, ax = plt.subplots(figsize=(6, 5))
    image = ax.imshow(normalized.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set(
        xticks=range(7),
        yticks=range(7),
        xticklabels=CLASS_CODES,
        yticklabels=CLASS_CODES,
        xlabel="predicted",
        ylabel="true",
        title=f"Confusion matrix (BMA {report['balanced_accuracy']:.3f})",
    )
    for i in range(7):
        for j in range(7):
            ax.text(
                j,
                i,
                int(matrix[i, j]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if normalized[i, j] > 0.5 else "black",
            )
    fig.colorbar(image, ax=ax, label="fraction of the true class")
    fig.tight_layout()
    confusion_path = out_dir / f"{stem}_confusion.png"
    fig.savefig(confusion_path, dpi=120)
    plt.close(fig)

    bins = [b for b in report["reliability"] if b["count"]]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.bar([b["confidence"] for b in bins], [b["accuracy"] for b in bins], width=1 / 15, alpha=0.7, label="accuracy")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="confidence of the top class",
        ylabel="accuracy",
        title=f"Reliability (ECE {report['ece']:.3f})",
    )
    ax.legend(loc="upper left")
    fig.tight_layout()
    reliability_path = out_dir / f"{stem}_reliability.png"
    fig.savefig(reliability_path, dpi=120)
    plt.close(fig)
    return [confusion_path, reliability_path]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ml.evaluate", description="Evaluate a checkpoint.")
    parser.add_argument("--data", required=True, type=Path, help="HAM10000 or ISIC 2018 Task 3 folder")
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED_CHECKPOINT)
    parser.add_argument(
        "--split",
        choices=("val", "all"),
        default="val",
        help="'val': the checkpoint's lesion-grouped validation split; 'all': every image (a test set)",
    )
    parser.add_argument("--tta", action="store_true", help="average over the eight flips and quarter turns")
    parser.add_argument(
        "--baseline", type=Path, help="also score this checkpoint on the same images; report the BMA difference"
    )
    parser.add_argument("--out", type=Path, default=Path("reports"), help="folder for the JSON report and plots")
    parser.add_argument(
        "--record", action="store_true", help="also store the summary in the checkpoint (the web app shows it)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        report = evaluate_checkpoint(
            data=args.data, checkpoint=args.checkpoint, split=args.split, tta=args.tta, baseline=args.baseline
        )
    except (FileNotFoundError, DataError, SplitMismatch) as error:
        parser.error(str(error))
    print(format_report(report))
    stem = f"{args.checkpoint.stem}_{args.split}{'_tta' if args.tta else ''}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    paths = save_plots(report, args.out, stem=stem)
    if args.record:
        key = ("validation" if args.split == "val" else "all") + ("_tta" if args.tta else "")
        summary = {k: v for k, v in report.items() if k not in ("reliability", "checkpoint", "baseline")}
        record_evaluation(args.checkpoint, key=key, report=summary)
    print(f"\nwrote {args.out / (stem + '.json')}, " + ", ".join(map(str, paths)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
