"""Classification metrics for the seven ISIC classes: BMA, per-class scores, AUC, confusion."""

import warnings
from typing import Any

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score

from ml import CLASS_CODES
from ml.calibration import expected_calibration_error


def balanced_accuracy(predicted: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean recall over the classes present (BMA / UAR, the ISIC 2018 ranking metric)."""
    with warnings.catch_warnings():  # a class predicted but absent from the labels has no recall: left out
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
        return float(balanced_accuracy_score(labels.cpu().numpy(), predicted.cpu().numpy()))


def balanced_accuracy_interval(
    predicted: torch.Tensor, labels: torch.Tensor, groups: list[str], *, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95 % bootstrap interval of the BMA, resampling whole lesions (``groups``) with replacement.

    Images of one lesion are not independent, so lesions, not images, are drawn. With 24 DF and 28
    VASC validation images the interval is wide; differences inside it are noise.
    """
    (bma,) = _bootstrap_balanced_accuracy([predicted], labels, groups, resamples=resamples, seed=seed)
    low, high = np.percentile(bma, [2.5, 97.5])
    return float(low), float(high)


def balanced_accuracy_difference_interval(
    predicted: torch.Tensor,
    baseline: torch.Tensor,
    labels: torch.Tensor,
    groups: list[str],
    *,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """95 % interval of BMA(``predicted``) − BMA(``baseline``) on the same images, paired: both are
    scored on each bootstrap resample of lesions. Much narrower than comparing two intervals, since
    the images both models find hard are drawn for both; a model is better when the interval is > 0.
    """
    bma, bma_baseline = _bootstrap_balanced_accuracy(
        [predicted, baseline], labels, groups, resamples=resamples, seed=seed
    )
    low, high = np.percentile(bma - bma_baseline, [2.5, 97.5])
    return float(low), float(high)


def _bootstrap_balanced_accuracy(
    predictions: list[torch.Tensor], labels: torch.Tensor, groups: list[str], *, resamples: int, seed: int
) -> list[np.ndarray]:
    """The BMA of each prediction on the same ``resamples`` draws of whole groups."""
    _, group_of = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = group_of.max() + 1
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n_groups, np.full(n_groups, 1 / n_groups), size=resamples)[:, group_of]
    results = []
    for predicted in predictions:
        correct = (predicted == labels).numpy()
        recalls = []
        for c in labels.unique().tolist():
            in_class = (labels == c).numpy()
            with np.errstate(invalid="ignore", divide="ignore"):
                recalls.append((draws * (in_class & correct)).sum(1) / (draws * in_class).sum(1))
        results.append(np.nanmean(np.stack(recalls), axis=0))
    return results


def classification_report(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Accuracy, BMA, per-class precision/recall/F1/AUC, macro AUC, confusion matrix and ECE."""
    predicted = probs.argmax(dim=1)
    y_true, y_pred, y_prob = labels.numpy(), predicted.numpy(), probs.double().numpy()
    classes = list(range(len(CLASS_CODES)))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    auc = [
        float(roc_auc_score(y_true == c, y_prob[:, c])) if 0 < (y_true == c).sum() < len(y_true) else float("nan")
        for c in classes
    ]
    return {
        "n": len(y_true),
        "accuracy": float((y_pred == y_true).mean()),
        "balanced_accuracy": balanced_accuracy(predicted, labels),
        "macro_auc": float(np.nanmean(auc)),
        "ece": expected_calibration_error(probs, labels),
        "per_class": {
            code: {
                "precision": float(precision[c]),
                "recall": float(recall[c]),
                "f1": float(f1[c]),
                "auc": auc[c],
                "support": int(support[c]),
            }
            for c, code in enumerate(CLASS_CODES)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=classes).tolist(),
    }


def abstention_curve(probs: torch.Tensor, labels: torch.Tensor, thresholds: list[float]) -> list[dict[str, float]]:
    """Coverage and the scores of the answered cases when answers below each threshold are withheld.

    A case is answered when its top calibrated probability is at least the threshold. The BMA of
    the answered cases averages over the classes that still have answered cases (``classes``):
    at high thresholds a rare class can drop out and no longer count.
    """
    confidence, predicted = probs.max(dim=1)
    rows = []
    for threshold in thresholds:
        answered = confidence >= threshold
        rows.append(
            {
                "threshold": threshold,
                "coverage": float(answered.float().mean()),
                "accuracy": float((predicted[answered] == labels[answered]).float().mean()) if answered.any() else 0.0,
                "balanced_accuracy": balanced_accuracy(predicted[answered], labels[answered])
                if answered.any()
                else 0.0,
                "classes": int(labels[answered].unique().numel()),
            }
        )
    return rows
