"""The evaluation report as people read it: plain-text tables and PNG plots (``python -m ml.evaluate``)."""

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ml import CLASS_CODES  # noqa: E402


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
