"""Evaluation: ``python -m ml.evaluate --data DIR --checkpoint FILE [--tta]`` prints and saves a report."""

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from ml import CLASS_CODES, SHIPPED_CHECKPOINT  # noqa: E402
from ml.calibration import expected_calibration_error, reliability  # noqa: E402
from ml.checkpoint import load_checkpoint, record_evaluation, record_triage  # noqa: E402
from ml.data import DataError, load_pixels, read_sources, split_by_lesion, split_sources  # noqa: E402
from ml.metrics import (  # noqa: E402
    abstention_curve,
    balanced_accuracy,
    balanced_accuracy_difference_interval,
    balanced_accuracy_interval,
    classification_report,
)
from ml.model import fold_for_inference  # noqa: E402
from ml.predict import predict_logits  # noqa: E402
from ml.triage import (  # noqa: E402
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
    return predict_logits(model, pixels, preprocess=loaded.preprocess, tta=tta)


def format_report(result: dict[str, Any]) -> str:
    """The report as plain-text tables: the sets side by side, then each set's detail."""
    sets = result["sets"]
    names = list(sets)

    def line(label: str, value) -> str:
        return f"{label:34}" + "".join(f"{value(sets[n]):>22}" for n in names)

    def verdict(report: dict[str, Any]) -> str:
        base = report.get("baseline")
        if base is None:
            return ""
        low, high = base["difference_ci95"]
        word = "better" if low > 0 else "worse" if high < 0 else "no clear diff."
        return f"{report['balanced_accuracy'] - base['balanced_accuracy']:+.3f} ({low:+.3f}..{high:+.3f}) {word}"

    def opt(value, fmt: str = ".3f") -> str:
        return "–" if value is None else format(value, fmt)

    scored = " + ".join([result["checkpoint"], *result["ensemble"]])
    lines = [
        f"{scored}: {result['split']} sets, TTA {'on' if result['tta'] else 'off'}",
        "",
        f"{'':34}" + "".join(f"{n:>22}" for n in names),
        line("sources", lambda r: ", ".join(r["sources"])[:21]),
        line("images", lambda r: r["n"]),
        line("accuracy", lambda r: f"{r['accuracy']:.3f}"),
        line("BMA", lambda r: f"{r['balanced_accuracy']:.3f}"),
        line("BMA 95 % interval (lesions)", lambda r: "{:.3f}–{:.3f}".format(*r["balanced_accuracy_ci95"])),
        line("macro AUC (one-vs-rest)", lambda r: f"{r['macro_auc']:.3f}"),
        line("malignant-vs-benign AUC", lambda r: opt(r["malignant_auc"])),
        line("ECE before → after temperature", lambda r: f"{r['ece_uncalibrated']:.3f} → {r['ece']:.3f}"),
        line("referral at risk ≥", lambda r: f"{r['triage']['refer_at']:.3f}"),
        line("  sensitivity", lambda r: opt(r["triage"]["sensitivity"])),
        line("  specificity", lambda r: opt(r["triage"]["specificity"])),
        line("answered (not inconclusive)", lambda r: opt(r["triage"]["coverage"])),
        line("  accuracy when answered", lambda r: opt(r["triage"]["selective_accuracy"])),
    ]
    lines += [line(f"recall {code}", lambda r, c=code: f"{r['per_class'][c]['recall']:.3f}") for code in CLASS_CODES]
    if any("baseline" in r for r in sets.values()):
        lines.append(line("baseline BMA", lambda r: f"{r['baseline']['balanced_accuracy']:.3f}"))
        lines.append(line("difference (paired 95 % interval)", verdict))
    if result.get("triage"):
        triage, measured = result["triage"], result["triage"]["measured"]
        lines += [
            "",
            f"triage policy chosen on {triage['chosen_on']}: refer at risk ≥ {triage['policy']['refer_at']:.3f}, "
            f"inconclusive below top probability {triage['policy']['inconclusive_below']:.3f}",
            f"measured on {triage['measured_on']} ({measured['images']} images): sensitivity "
            f"{opt(measured['sensitivity'])}, specificity {opt(measured['specificity'])}, answered "
            f"{opt(measured['coverage'])} with accuracy {opt(measured['selective_accuracy'])}",
        ]
    for name, report in sets.items():
        lines += ["", f"── {name}", f"{'class':6} {'precision':>9} {'recall':>7} {'F1':>6} {'AUC':>6} {'support':>8}"]
        for code, row in report["per_class"].items():
            scores = " ".join(f"{row[k]:{w}.3f}" for k, w in (("precision", 9), ("recall", 7), ("f1", 6), ("auc", 6)))
            lines.append(f"{code:6} {scores} {row['support']:8d}")
        lines += [
            "confusion matrix (rows: truth, columns: prediction)",
            "       " + " ".join(f"{c:>5}" for c in CLASS_CODES),
        ]
        for code, row in zip(CLASS_CODES, report["confusion_matrix"]):
            lines.append(f"{code:6} " + " ".join(f"{v:5d}" for v in row))
        lines += [
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
