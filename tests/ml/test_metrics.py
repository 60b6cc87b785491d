import torch

from ml.metrics import balanced_accuracy, balanced_accuracy_difference_interval, balanced_accuracy_interval


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


def _predictions(n: int, accuracy: float, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    predicted = torch.where(torch.rand(n, generator=generator) < accuracy, labels, (labels + 1) % 3)
    return predicted, labels, [f"lesion{i // 2}" for i in range(n)]


def test_paired_difference_interval_finds_a_real_improvement_and_not_noise():
    better, labels, groups = _predictions(3000, 0.8, seed=1)
    worse, _, _ = _predictions(3000, 0.6, seed=2)
    low, high = balanced_accuracy_difference_interval(better, worse, labels, groups)
    assert 0 < low < balanced_accuracy(better, labels) - balanced_accuracy(worse, labels) < high
    high_of_reverse = balanced_accuracy_difference_interval(worse, better, labels, groups)[1]
    assert high_of_reverse < 0
    assert balanced_accuracy_difference_interval(better, better, labels, groups) == (0.0, 0.0)


def test_paired_interval_is_narrower_than_the_two_intervals_when_models_agree_mostly():
    first, labels, groups = _predictions(600, 0.7, seed=3)
    second = first.clone()
    second[:30] = labels[:30]  # the second model fixes a few of the first one's cases
    low, high = balanced_accuracy_difference_interval(second, first, labels, groups)
    one_low, one_high = balanced_accuracy_interval(first, labels, groups)
    assert high - low < (one_high - one_low) / 2
