"""Triage: the grouped risk of skin cancer or a precancer, when to refer, and when to say "inconclusive".

A small model is often wrong about the exact diagnosis, but its probabilities still rank how
worrying a lesion is. The site leads with that grouped risk and its action line, and calls a
result inconclusive when no class stands out; both thresholds are chosen on validation images.
"""

from dataclasses import asdict, dataclass
from typing import Any

import torch

from ml import CLASS_CODES

# Melanoma, basal cell carcinoma, and actinic keratoses / intraepithelial carcinoma.
MALIGNANT_OR_PRECANCEROUS = ("MEL", "BCC", "AKIEC")
MALIGNANT_INDEX = [CLASS_CODES.index(code) for code in MALIGNANT_OR_PRECANCEROUS]
TARGET_SENSITIVITY = 0.90
TARGET_SELECTIVE_ACCURACY = 0.70
# Below the referral threshold but at least this share of it, a result is "near the line": the site
# does not reassure (no "few warning signs", no green label). A display rule, not fitted; measure_policy
# reports how many lesions it covers.
NEAR_SHARE = 0.5


@dataclass(frozen=True)
class Decisions:
    """What a :class:`TriagePolicy` decides for each row of an N×7 probability tensor."""

    risk: torch.Tensor  # N grouped risks, P(MEL) + P(BCC) + P(AKIEC)
    refer: torch.Tensor  # N booleans: show a dermatologist
    near: torch.Tensor  # N booleans: not referred, but too close to the threshold to reassure
    inconclusive: torch.Tensor  # N booleans: no class stands out enough to name one


@dataclass(frozen=True)
class TriagePolicy:
    """Refer when the grouped risk is at least ``refer_at``; inconclusive when the top probability is
    below ``inconclusive_below``. Stored in the checkpoint by ``python -m ml.evaluate --record``.

    :meth:`decide` is the one rule: the evaluator measures it and the site serves it.
    """

    refer_at: float
    inconclusive_below: float

    @property
    def near_at(self) -> float:
        """The risk from which an unreferred result is near the line (:data:`NEAR_SHARE` of ``refer_at``)."""
        return NEAR_SHARE * self.refer_at

    def decide(self, probabilities: torch.Tensor) -> Decisions:
        """The policy's decisions for calibrated N×7 probabilities (``CLASS_CODES`` order)."""
        grouped = risk(probabilities)
        refer = grouped >= self.refer_at
        return Decisions(
            risk=grouped,
            refer=refer,
            near=~refer & (grouped >= self.near_at),
            inconclusive=probabilities.max(dim=1).values < self.inconclusive_below,
        )


# Until a checkpoint's own policy is measured: refer at a low risk, call most answers inconclusive.
UNMEASURED_POLICY = TriagePolicy(refer_at=0.2, inconclusive_below=0.6)


def recorded_policy(meta: dict[str, Any]) -> tuple[TriagePolicy, dict[str, Any]]:
    """A checkpoint's recorded policy and what it measured, or the unmeasured default and ``{}``."""
    triage = meta["metrics"].get("triage")
    if not triage:
        return UNMEASURED_POLICY, {}
    return TriagePolicy(**triage["policy"]), triage.get("measured", {})


def risk(probabilities: torch.Tensor) -> torch.Tensor:
    """P(MEL) + P(BCC) + P(AKIEC) of each row of an N×7 probability tensor."""
    return probabilities[:, MALIGNANT_INDEX].sum(dim=1)


def is_malignant(labels: torch.Tensor) -> torch.Tensor:
    return torch.isin(labels, torch.tensor(MALIGNANT_INDEX))


def refer_threshold(probabilities: torch.Tensor, labels: torch.Tensor, *, sensitivity: float) -> float:
    """The highest risk threshold that refers at least ``sensitivity`` of the malignant and precancerous."""
    malignant_risk = risk(probabilities)[is_malignant(labels)].sort().values
    if not len(malignant_risk):
        raise ValueError("no malignant or precancerous lesion among the labels: cannot set a referral threshold")
    allowed_misses = int(round((1 - sensitivity) * len(malignant_risk), 9))  # 1 - 0.9 is 0.0999…
    return float(malignant_risk[allowed_misses])


def inconclusive_threshold(probabilities: torch.Tensor, labels: torch.Tensor, *, selective_accuracy: float) -> float:
    """The lowest top-probability threshold at which the answered images reach ``selective_accuracy``.

    Answers are sorted by their top probability; the threshold is the smallest one whose answered
    set (top probability ≥ it) is at least that accurate. If none is, 1.0 (always inconclusive).
    """
    top, predicted = probabilities.max(dim=1)
    order = top.argsort(descending=True)
    correct = (predicted[order] == labels[order]).float()
    running = correct.cumsum(0) / torch.arange(1, len(correct) + 1)
    reaching = (running >= selective_accuracy).nonzero().flatten()
    return float(top[order][reaching.max()]) if len(reaching) else 1.0


def fit_policy(
    probabilities: torch.Tensor,
    labels: torch.Tensor,
    *,
    sensitivity: float = TARGET_SENSITIVITY,
    selective_accuracy: float = TARGET_SELECTIVE_ACCURACY,
) -> TriagePolicy:
    """Both thresholds, chosen on calibrated validation probabilities and their labels."""
    return TriagePolicy(
        refer_at=refer_threshold(probabilities, labels, sensitivity=sensitivity),
        inconclusive_below=inconclusive_threshold(probabilities, labels, selective_accuracy=selective_accuracy),
    )


def strictest(policies: list[TriagePolicy]) -> TriagePolicy:
    """One policy that keeps each one's promise: the lowest referral threshold (every set keeps its
    sensitivity) and the highest inconclusive threshold (every set keeps its selective accuracy)."""
    return TriagePolicy(
        refer_at=min(p.refer_at for p in policies),
        inconclusive_below=max(p.inconclusive_below for p in policies),
    )


def measure_policy(probabilities: torch.Tensor, labels: torch.Tensor, policy: TriagePolicy) -> dict[str, Any]:
    """What the policy does on labelled images: referral sensitivity/specificity, answered share and accuracy."""
    decisions = policy.decide(probabilities)
    referred, near, answered = decisions.refer, decisions.near, ~decisions.inconclusive
    malignant = is_malignant(labels)
    correct = probabilities.argmax(dim=1) == labels
    return {
        **asdict(policy),
        "images": len(labels),
        "sensitivity": _share(referred[malignant]),
        "specificity": _share(~referred[~malignant]),
        # Of the lesions not referred, how many are told "near the line" instead of "few warning signs".
        "near_of_unreferred_malignant": _share(near[malignant & ~referred]),
        "near_of_unreferred_benign": _share(near[~malignant & ~referred]),
        "coverage": _share(answered),
        "selective_accuracy": _share(correct[answered]),
        "accuracy_inconclusive": _share(correct[~answered]),
    }


def _share(mask: torch.Tensor) -> float | None:
    return float(mask.float().mean()) if len(mask) else None
