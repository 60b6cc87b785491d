"""Full-resolution check: ``python -m ml.fullres --data DIR [--checkpoint FILE]`` — report only, never for choosing.

Sends a folder of full-resolution dermatoscopic images through the site's path at every resolution
of :mod:`ml.resolutions` and reports the share refused per class and resolution, how well the risk
(:func:`ml.triage.risk`) separates melanomas from nevi, and the shares the triage policy refers.
Referrals are counted over every image, refused ones included, as if the gate had let them through:
what the classifier would say of them.
"""

import argparse
import sys
from pathlib import Path
from typing import Any

from sklearn.metrics import roc_auc_score

from ml import CLASS_CODES, SHIPPED_CHECKPOINT
from ml.checkpoint import record_fullres
from ml.data import DataError
from ml.inference import Predictor
from ml.resolutions import by_resolution
from ml.triage import recorded_policy


def fullres_report(*, checkpoint: Path, data: Path) -> dict[str, Any]:
    """Refusals per class and resolution, and melanoma-vs-nevus figures of the risk, for one folder."""
    predictor = Predictor(checkpoint)
    policy, _ = recorded_policy(predictor.meta)
    labels, results = by_resolution(predictor, data)
    mel, nv = labels == CLASS_CODES.index("MEL"), labels == CLASS_CODES.index("NV")
    rows = []
    for name, (refused, probabilities) in results.items():
        decisions = policy.decide(probabilities)  # the site's rule
        risks, referred = decisions.risk, decisions.refer
        per_class = {
            code: {"images": int((labels == c).sum()), "refused": int(refused[labels == c].sum())}
            for c, code in enumerate(CLASS_CODES)
            if (labels == c).any()
        }
        both = mel | nv
        auc = float(roc_auc_score(mel[both].numpy(), risks[both].numpy())) if mel.any() and nv.any() else None
        rows.append(
            {
                "resolution": name,
                "images": len(labels),
                "refused": int(refused.sum()),
                "per_class": per_class,
                "melanoma_vs_nevus_auc": auc,
                "melanomas_referred": float(referred[mel].float().mean()) if mel.any() else None,
                "nevi_referred": float(referred[nv].float().mean()) if nv.any() else None,
            }
        )
    return {"checkpoint": str(checkpoint), "data": str(data), "refer_at": policy.refer_at, "rows": rows}


def format_report(report: dict[str, Any]) -> str:
    codes = [code for code in CLASS_CODES if code in report["rows"][0]["per_class"]]
    lines = [
        f"{report['data']} through the site's path (refer at risk ≥ {report['refer_at']:.3f})",
        f"{'resolution':10} {'refused':>9} " + " ".join(f"{code + ' refused':>13}" for code in codes)
        + f" {'MEL-vs-NV AUC':>14} {'MEL referred':>13} {'NV referred':>12}",
    ]  # fmt: skip
    for row in report["rows"]:
        cells = [f"{row['per_class'][c]['refused']:>4}/{row['per_class'][c]['images']:<4} " for c in codes]
        share = row["refused"] / row["images"]
        lines.append(
            f"{row['resolution']:10} {share:9.1%} "
            + " ".join(f"{cell:>13}" for cell in cells)
            + f" {_opt(row['melanoma_vs_nevus_auc'], '.3f'):>14} {_opt(row['melanomas_referred'], '.0%'):>13}"
            + f" {_opt(row['nevi_referred'], '.0%'):>12}"
        )
    return "\n".join(lines)


def _opt(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ml.fullres", description="Refusals and melanoma-vs-nevus AUC on full-resolution images."
    )
    parser.add_argument("--data", required=True, type=Path, help="folder with labels.csv and the images, e.g. PH2")
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED_CHECKPOINT)
    parser.add_argument(
        "--record", action="store_true", help="store the report in the checkpoint (the site quotes its referrals)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        report = fullres_report(checkpoint=args.checkpoint, data=args.data)
    except (FileNotFoundError, DataError) as error:
        parser.error(str(error))
    print(format_report(report))
    if args.record:
        record_fullres(args.checkpoint, report=report)
        print(f"recorded in {args.checkpoint}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
