"""Performance metrics on a split, and the model confidence indication.

Classification metrics are macro averages over the classes (each class counts the same,
whatever its size). MAPE is in percent and skips targets equal to zero, where it is undefined.

``modelConfidenceIndication`` (0..100):
- classification: the mean, over the validation samples, of the highest softmax probability,
  times 100; how sure the model is of its own answers, not whether they are right;
- regression and forecasting: the coefficient of determination R² on the validation split,
  clipped to 0..1, times 100; the share of the target's variance that the model explains.
"""

from __future__ import annotations

import math

import torch
from ml_training_operator.protocol import PerformanceMetric, Task

from .data import CLASSIFICATION_TASKS

CLASSIFICATION_METRICS = (
    PerformanceMetric.ACCURACY,
    PerformanceMetric.F1,
    PerformanceMetric.PRECISION,
    PerformanceMetric.RECALL,
)
REGRESSION_METRICS = (PerformanceMetric.MAE, PerformanceMetric.RMSE, PerformanceMetric.MAPE)
DEFAULT_METRICS = {
    True: (PerformanceMetric.ACCURACY, PerformanceMetric.F1),
    False: (PerformanceMetric.MAE, PerformanceMetric.RMSE),
}


def metrics_for(task: Task, requested: list[PerformanceMetric]) -> list[PerformanceMetric]:
    """Metrics to compute: the requested ones, or a default pair for the task when none is."""
    return list(dict.fromkeys(requested)) or list(DEFAULT_METRICS[task in CLASSIFICATION_TASKS])


def check_metrics_fit_task(task: Task, requested: list[PerformanceMetric]) -> list[PerformanceMetric]:
    """Return the requested metrics that cannot be computed for ``task``."""
    allowed = CLASSIFICATION_METRICS if task in CLASSIFICATION_TASKS else REGRESSION_METRICS
    return [metric for metric in requested if metric not in allowed]


def classification_metrics(
    logits: torch.Tensor, targets: torch.Tensor, metrics: list[PerformanceMetric]
) -> tuple[dict[PerformanceMetric, float], float]:
    """Return the metric values and the confidence indication (0..100) for class logits."""
    probabilities = torch.softmax(logits.float(), dim=-1)
    predictions = probabilities.argmax(dim=-1)
    class_count = logits.shape[-1]

    true_positive = torch.zeros(class_count)
    predicted = torch.zeros(class_count)
    actual = torch.zeros(class_count)
    for cls in range(class_count):
        true_positive[cls] = ((predictions == cls) & (targets == cls)).sum()
        predicted[cls] = (predictions == cls).sum()
        actual[cls] = (targets == cls).sum()
    # Classes absent from both predictions and targets carry no information for macro averages.
    present = (predicted + actual) > 0
    precision = torch.where(predicted > 0, true_positive / predicted.clamp(min=1), torch.zeros(class_count))
    recall = torch.where(actual > 0, true_positive / actual.clamp(min=1), torch.zeros(class_count))
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12), torch.zeros(class_count))

    values = {
        PerformanceMetric.ACCURACY: float((predictions == targets).float().mean()),
        PerformanceMetric.PRECISION: float(precision[present].mean()),
        PerformanceMetric.RECALL: float(recall[present].mean()),
        PerformanceMetric.F1: float(f1[present].mean()),
    }
    confidence = float(probabilities.max(dim=-1).values.mean()) * 100
    return {metric: round(values[metric], 6) for metric in metrics}, confidence


def regression_metrics(
    predictions: torch.Tensor, targets: torch.Tensor, metrics: list[PerformanceMetric]
) -> tuple[dict[PerformanceMetric, float], float]:
    """Return the metric values and the confidence indication (0..100) in the target's units."""
    predictions = predictions.double().flatten()
    targets = targets.double().flatten()
    errors = predictions - targets
    nonzero = targets != 0
    values = {
        PerformanceMetric.MAE: float(errors.abs().mean()),
        PerformanceMetric.RMSE: math.sqrt(float((errors**2).mean())),
        PerformanceMetric.MAPE: float((errors[nonzero] / targets[nonzero]).abs().mean() * 100) if nonzero.any() else math.inf,
    }
    variance = float(((targets - targets.mean()) ** 2).sum())
    r_squared = 1 - float((errors**2).sum()) / variance if variance > 0 else 0.0
    confidence = min(max(r_squared, 0.0), 1.0) * 100
    return {metric: round(values[metric], 6) for metric in metrics}, confidence
