"""Training target for the networks built from scratch (MLP, LSTM).

Regression and forecasting targets are standardised with the training statistics for the
loss and turned back into the target's units for predictions, so metrics such as MAE are in
the units the consumer uses. A forecaster predicts the change from the window's last value.
"""

from __future__ import annotations

import torch
from ml_training_operator.protocol import Task
from torch import nn

from .data import CLASSIFICATION_TASKS, Normalization, Split
from .runtime import Runtime

EVALUATION_BATCH_SIZE = 256


class NetworkTarget:
    def __init__(self, model: nn.Module, task: Task, normalization: Normalization, runtime: Runtime) -> None:
        self.model = model.to(runtime.device)
        self._classification = task in CLASSIFICATION_TASKS
        self._mean = normalization.target_mean
        self._std = normalization.target_std
        self._runtime = runtime

    def loss(self, split: Split, indices: torch.Tensor) -> torch.Tensor:
        inputs = split.inputs[indices].to(self._runtime.device)
        targets = split.targets[indices].to(self._runtime.device)
        with self._runtime.autocast():
            output = self.model(inputs)
        if self._classification:
            return nn.functional.cross_entropy(output.float(), targets)
        if split.offsets is not None:
            targets = targets - split.offsets[indices].to(self._runtime.device)
        scaled = (targets - self._mean) / self._std
        return nn.functional.mse_loss(output.float().squeeze(-1), scaled)

    @torch.inference_mode()
    def predict(self, split: Split) -> torch.Tensor:
        self.model.eval()
        outputs = []
        for start in range(0, len(split), EVALUATION_BATCH_SIZE):
            inputs = split.inputs[start : start + EVALUATION_BATCH_SIZE].to(self._runtime.device)
            with self._runtime.autocast():
                outputs.append(self.model(inputs).float().cpu())
        self.model.train()
        output = torch.cat(outputs)
        if self._classification:
            return output
        prediction = output.squeeze(-1) * self._std + self._mean
        return prediction + split.offsets if split.offsets is not None else prediction
