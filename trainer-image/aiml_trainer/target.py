"""Training target: a model plus the way to compute its loss and predictions.

The loop stays the same for a network trained from scratch and a fine-tuned transformer; each
supplies a ``TrainingTarget``. ``predict`` returns class logits for classification and
predictions in the target's own units for regression and forecasting.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from .data import Split


class TrainingTarget(Protocol):
    model: nn.Module

    def loss(self, split: Split, indices: torch.Tensor) -> torch.Tensor: ...

    def predict(self, split: Split) -> torch.Tensor: ...


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Return copies of the parameters that training changes, for checkpoints."""
    return {name: parameter.detach().cpu().clone() for name, parameter in model.named_parameters() if parameter.requires_grad}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load parameters saved by ``trainable_state``; every saved name must exist in ``model``."""
    parameters = dict(model.named_parameters())
    missing = sorted(set(state) - set(parameters))
    if missing:
        raise KeyError(f"checkpoint parameters not found in the model: {missing[:5]}")
    with torch.no_grad():
        for name, tensor in state.items():
            parameters[name].copy_(tensor.to(parameters[name].device))


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """Return (trainable, total) parameter counts."""
    trainable = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    total = sum(parameter.numel() for parameter in model.parameters())
    return trainable, total
