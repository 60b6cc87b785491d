import torch

from ml.calibration import expected_calibration_error, fit_temperature


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
