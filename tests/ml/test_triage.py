import pytest
import torch

from ml import CLASS_CODES
from ml.triage import (
    TriagePolicy,
    fit_policy,
    inconclusive_threshold,
    measure_policy,
    refer_threshold,
    risk,
)

MEL, NV, BCC, AKIEC, BKL = (CLASS_CODES.index(c) for c in ("MEL", "NV", "BCC", "AKIEC", "BKL"))


def _probs(rows: list[dict[int, float]]) -> torch.Tensor:
    """Probability rows from {class index: probability}; the rest spread evenly over the others."""
    out = torch.zeros(len(rows), len(CLASS_CODES))
    for i, row in enumerate(rows):
        rest = (1 - sum(row.values())) / (len(CLASS_CODES) - len(row))
        out[i] = rest
        for c, p in row.items():
            out[i, c] = p
    return out


def test_risk_adds_melanoma_basal_cell_and_actinic_probabilities():
    probs = _probs([{MEL: 0.2, BCC: 0.1, AKIEC: 0.05, NV: 0.5}])
    assert float(risk(probs)[0]) == pytest.approx(0.35)


def test_refer_threshold_keeps_the_asked_sensitivity():
    # Ten malignant lesions with risks 0.1 … 1.0, and benign ones below.
    malignant = _probs([{MEL: r / 10} for r in range(1, 11)])
    benign = _probs([{NV: 0.9, MEL: 0.01}] * 5)
    probs, labels = torch.cat([malignant, benign]), torch.tensor([MEL] * 10 + [NV] * 5)
    threshold = refer_threshold(probs, labels, sensitivity=0.9)
    referred = risk(probs) >= threshold
    assert referred[:10].float().mean() == pytest.approx(0.9)  # nine of ten, not fewer
    assert threshold == pytest.approx(float(risk(malignant).sort().values[1]))
    assert not referred[10:].any()


def test_inconclusive_threshold_is_the_lowest_reaching_the_selective_accuracy():
    # Top probabilities 0.9, 0.8, 0.7, 0.6, 0.5: right, right, wrong, right, wrong.
    probs = _probs([{NV: 0.9}, {NV: 0.8}, {MEL: 0.7}, {NV: 0.6}, {MEL: 0.5}])
    labels = torch.tensor([NV, NV, NV, NV, NV])
    # Answering down to 0.6 gives 3 of 4 right (0.75); down to 0.5, 3 of 5 (0.6).
    assert inconclusive_threshold(probs, labels, selective_accuracy=0.75) == pytest.approx(0.6)
    assert inconclusive_threshold(probs, labels, selective_accuracy=0.6) == pytest.approx(0.5)
    assert inconclusive_threshold(probs, labels, selective_accuracy=1.01) == 1.0  # never reached


def test_decide_refers_at_the_threshold_and_calls_flat_answers_inconclusive():
    probs = _probs([{MEL: 0.8}, {NV: 0.9}, {NV: 0.5, MEL: 0.35}])
    decisions = TriagePolicy(refer_at=0.4, inconclusive_below=0.6).decide(probs)
    assert decisions.refer.tolist() == [True, False, True]
    assert decisions.near.tolist() == [False, False, False]  # referred, or far below 0.2
    assert decisions.inconclusive.tolist() == [False, False, True]
    assert torch.allclose(decisions.risk, risk(probs))


def test_an_unreferred_risk_from_half_the_threshold_is_near_the_line():
    probs = _probs([{MEL: 0.05, NV: 0.9}, {MEL: 0.3, NV: 0.65}, {MEL: 0.5, NV: 0.45}])  # risks 0.07, 0.32, 0.52
    policy = TriagePolicy(refer_at=0.6, inconclusive_below=0.6)
    assert policy.near_at == pytest.approx(0.3)
    decisions = policy.decide(probs)
    assert decisions.near.tolist() == [False, True, True] and not decisions.refer.any()
    measured = measure_policy(probs, torch.tensor([MEL, NV, MEL]), policy)
    assert measured["near_of_unreferred_malignant"] == 0.5
    assert measured["near_of_unreferred_benign"] == 1.0


def test_measure_policy_reports_what_the_policy_does():
    probs = _probs([{MEL: 0.8}, {MEL: 0.3, NV: 0.4}, {NV: 0.9}, {NV: 0.5, MEL: 0.35}])
    labels = torch.tensor([MEL, MEL, NV, NV])
    measured = measure_policy(probs, labels, TriagePolicy(refer_at=0.4, inconclusive_below=0.6))
    # Risks: 0.8+, 0.3+2·0.06, small, 0.35+2·0.0375 — refer the 1st, 2nd and 4th.
    assert measured["sensitivity"] == 1.0
    assert measured["specificity"] == 0.5
    assert measured["coverage"] == 0.5  # tops 0.8 and 0.9 answer
    assert measured["selective_accuracy"] == 1.0


def test_fit_policy_needs_a_malignant_lesion():
    with pytest.raises(ValueError, match="no malignant"):
        fit_policy(_probs([{NV: 0.9}]), torch.tensor([NV]))
