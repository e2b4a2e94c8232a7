"""The models built from scratch (MLP, LSTM forecaster) and their saved format.

Our format is a directory with ``model.safetensors`` (the weights) and ``model.json`` (how to
rebuild the network, the class names and the input scaling). Re-training loads both, so a
re-trained model keeps the scaling and classes its consumers already rely on.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import torch
from ml_training_operator.protocol import Task
from safetensors.torch import load_file, save_file
from torch import nn

from .data import CLASSIFICATION_TASKS, Normalization
from .errors import ConfigError

WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "model.json"
FORMAT_NAME = "aiml-trainer/v1"


@dataclasses.dataclass
class NetworkSpec:
    """Everything needed to rebuild a network before loading its weights."""

    architecture: str
    task: str
    input_size: int
    output_size: int
    hidden_sizes: list[int]
    lookback: int = 0
    labels: list[str] = dataclasses.field(default_factory=list)
    feature_names: list[str] = dataclasses.field(default_factory=list)
    normalization: dict[str, Any] = dataclasses.field(default_factory=dict)


class MLP(nn.Module):
    """Feed-forward network; for time series it sees the flattened lookback window."""

    def __init__(self, input_size: int, hidden_sizes: list[int], output_size: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = input_size
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, output_size))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.flatten(1))


class LSTMForecaster(nn.Module):
    """Stacked LSTM over the lookback window; the last hidden state predicts the target."""

    def __init__(self, input_size: int, hidden_sizes: list[int], output_size: int) -> None:
        super().__init__()
        hidden = hidden_sizes[0]
        self.lstm = nn.LSTM(input_size, hidden, num_layers=len(hidden_sizes), batch_first=True)
        self.head = nn.Linear(hidden, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)
        output, _ = self.lstm(x)
        return self.head(output[:, -1])


def output_size_for(task: Task, labels: list[str]) -> int:
    return len(labels) if task in CLASSIFICATION_TASKS else 1


def build_network(spec: NetworkSpec) -> nn.Module:
    """Build the network that ``spec`` describes, with freshly initialised weights."""
    if not spec.hidden_sizes or any(size < 1 for size in spec.hidden_sizes):
        raise ConfigError(f"model.hiddenSizes must list positive layer widths, got {spec.hidden_sizes}")
    if spec.architecture == "MLP":
        flat_input = spec.input_size * max(spec.lookback, 1)
        return MLP(flat_input, spec.hidden_sizes, spec.output_size)
    if spec.architecture == "LSTM":
        if len(set(spec.hidden_sizes)) != 1:
            raise ConfigError(f"model.hiddenSizes for LSTM must repeat one width per layer, got {spec.hidden_sizes}")
        return LSTMForecaster(spec.input_size, spec.hidden_sizes, spec.output_size)
    raise ConfigError(
        f"model.architecture {spec.architecture} cannot be trained from scratch; use MLP or LSTM, "
        "or an MLFineTuningRequest for a pre-trained transformer"
    )


def save_network(model: nn.Module, spec: NetworkSpec, directory: pathlib.Path) -> int:
    """Write weights and metadata; return the number of tensors saved."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"format": FORMAT_NAME})
    metadata = {"format": FORMAT_NAME, **dataclasses.asdict(spec)}
    (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return len(tensors)


def load_spec(directory: pathlib.Path) -> NetworkSpec:
    """Read the metadata of a model saved by ``save_network``."""
    path = directory / METADATA_FILE
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"model.basePath {directory}: no readable {METADATA_FILE} from a previous training ({error})") from error
    if metadata.pop("format", None) != FORMAT_NAME:
        raise ConfigError(f"model.basePath {directory}: {METADATA_FILE} is not in format {FORMAT_NAME}")
    return NetworkSpec(**metadata)


def load_network(directory: pathlib.Path) -> tuple[nn.Module, NetworkSpec]:
    """Rebuild a saved network and load its weights, for re-training."""
    spec = load_spec(directory)
    model = build_network(spec)
    try:
        model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
    except (OSError, RuntimeError) as error:
        raise ConfigError(f"model.basePath {directory}: weights do not load into {spec.architecture}: {error}") from error
    return model, spec


def normalization_of(spec: NetworkSpec) -> Normalization | None:
    return Normalization(**spec.normalization) if spec.normalization else None
