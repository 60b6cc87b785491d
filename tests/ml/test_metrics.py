import torch

from ml.metrics import balanced_accuracy, balanced_accuracy_interval


def test_bma_is_the_mean_recall_over_classes():
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    predicted = torch.tensor([0, 0, 0, 1, 1, 0])
    assert balanced_accuracy(predicted, labels) == (0.75 + 0.5) / 2


def test_bma_interval_brackets_the_estimate_and_narrows_with_more_lesions():
    generator = torch.Generator().manual_seed(0)

    def interval(n: int) -> tuple[float, float]:
        labels = torch.arange(n) % 3
        predicted = torch.where(torch.rand(n, generator=generator) < 0.7, labels, (labels + 1) % 3)
        groups = [f"lesion{i // 2}" for i in range(n)]  # two images per lesion
        low, high = balanced_accuracy_interval(predicted, labels, groups)
        assert low <= balanced_accuracy(predicted, labels) <= high
        return low, high

    small, large = interval(60), interval(6000)
    assert large[1] - large[0] < (small[1] - small[0]) / 4


def test_bma_interval_of_perfect_predictions_is_one():
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    assert balanced_accuracy_interval(labels, labels, ["a", "a", "b", "c", "d", "e"]) == (1.0, 1.0)
