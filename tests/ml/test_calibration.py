import pytest
import torch

from ml.calibration import expected_calibration_error, fit_temperature
from ml.metrics import abstention_curve


def test_fit_temperature_recovers_the_temperature_that_made_the_labels():
    torch.manual_seed(0)
    logits = torch.randn(4000, 7) * 3
    labels = torch.multinomial(torch.softmax(logits / 2.0, dim=1), 1).squeeze(1)
    assert abs(fit_temperature(logits, labels) - 2.0) < 0.15


def test_ece_is_zero_when_confidence_equals_accuracy_and_large_when_overconfident():
    labels = torch.tensor([0, 0, 0, 1])
    calibrated = torch.tensor([[0.75, 0.25]] * 4)
    assert expected_calibration_error(calibrated, labels) < 1e-6
    overconfident = torch.tensor([[0.99, 0.01]] * 4)
    assert abs(expected_calibration_error(overconfident, labels) - 0.24) < 1e-6


def test_abstention_trades_coverage_for_accuracy():
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.45, 0.55], [0.6, 0.4]])
    labels = torch.tensor([0, 0, 0, 1])  # the two confident answers are right, the others wrong
    rows = abstention_curve(probs, labels, [0.0, 0.7])
    assert rows[0]["coverage"] == 1.0 and rows[0]["accuracy"] == 0.5
    assert rows[0]["balanced_accuracy"] == pytest.approx((2 / 3 + 0) / 2)  # recall of class 0, of class 1
    assert rows[1]["coverage"] == 0.5 and rows[1]["accuracy"] == 1.0
