"""Turning the raw table into training and validation examples for the configured task.

Column mapping comes from ``data`` in the config. Values are checked row by row so that a
missing value or a label that does not fit the task ends as a configuration error naming the
source, row and column. The split is deterministic: a permutation seeded with the training
seed for text and tabular data, and chronological (the last part validates) for time series,
because validating on the past of the training data would overstate a forecaster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from ml_training_operator.protocol import DataConfig, Task

from .errors import ConfigError
from .sources import ROW_COLUMN, SOURCE_COLUMN

CLASSIFICATION_TASKS = frozenset({Task.TEXT_CLASSIFICATION, Task.TABULAR_CLASSIFICATION})
MAX_CLASSES = 1000


@dataclass
class Split:
    """One side of the split: inputs (texts or a float tensor) and targets."""

    inputs: list[str] | torch.Tensor
    targets: torch.Tensor
    # Forecasting: the last observed value of each window. The network predicts the change
    # from it, which lets a forecaster follow a trend beyond the range seen in training.
    offsets: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.targets)


@dataclass
class Normalization:
    """Feature and target scaling learned on the training split, stored with the model."""

    feature_mean: list[float] = field(default_factory=list)
    feature_std: list[float] = field(default_factory=list)
    target_mean: float = 0.0
    target_std: float = 1.0


@dataclass
class PreparedData:
    task: Task
    train: Split
    validation: Split
    labels: list[str]
    feature_names: list[str]
    normalization: Normalization
    input_size: int


def prepare(
    table: pd.DataFrame,
    task: Task,
    data: DataConfig,
    seed: int,
    labels: list[str],
    normalization: Normalization | None = None,
) -> PreparedData:
    """Validate the mapped columns and build the split for ``task``.

    ``labels`` fixes the class names (from the config or the base model); empty means they
    are inferred from the data. ``normalization`` comes from the base model when re-training.
    """
    if task is Task.TEXT_CLASSIFICATION:
        return _prepare_text(table, data, seed, labels)
    if task is Task.TIME_SERIES_FORECASTING:
        return _prepare_time_series(table, data, normalization)
    return _prepare_tabular(table, task, data, seed, labels, normalization)


def _prepare_text(table: pd.DataFrame, data: DataConfig, seed: int, labels: list[str]) -> PreparedData:
    text_column = data.textColumn or "text"
    label_column = data.labelColumn or "label"
    _require_columns(table, [text_column, label_column], "dataMapping.textColumn/labelColumn")

    texts = table[text_column]
    for index in range(len(table)):
        value = texts.iloc[index]
        if not isinstance(value, str) or not value.strip():
            _raise_at(table, index, text_column, f"expected non-empty text, got {_show(value)}")

    class_names, targets = _class_targets(table, label_column, labels, Task.TEXT_CLASSIFICATION)
    train_index, validation_index = _shuffled_split(len(table), data.validationSplit, seed)
    text_list = texts.tolist()
    return PreparedData(
        task=Task.TEXT_CLASSIFICATION,
        train=Split([text_list[i] for i in train_index], targets[train_index]),
        validation=Split([text_list[i] for i in validation_index], targets[validation_index]),
        labels=class_names,
        feature_names=[text_column],
        normalization=Normalization(),
        input_size=0,
    )


def _prepare_tabular(
    table: pd.DataFrame,
    task: Task,
    data: DataConfig,
    seed: int,
    labels: list[str],
    normalization: Normalization | None,
) -> PreparedData:
    label_column = data.labelColumn or "label"
    feature_columns = data.featureColumns or [
        column for column in table.columns if column not in (label_column, SOURCE_COLUMN, ROW_COLUMN)
    ]
    _require_columns(table, [*feature_columns, label_column], "dataMapping.featureColumns/labelColumn")
    features = _numeric_matrix(table, feature_columns)

    if task is Task.TABULAR_CLASSIFICATION:
        class_names, targets = _class_targets(table, label_column, labels, task)
    else:
        class_names = []
        targets = torch.tensor(_numeric_matrix(table, [label_column])[:, 0], dtype=torch.float32)

    train_index, validation_index = _shuffled_split(len(table), data.validationSplit, seed)
    if normalization is None:
        normalization = _fit_normalization(features[train_index], targets[train_index].numpy(), task)
    x = _scale(features, normalization)
    return PreparedData(
        task=task,
        train=Split(x[train_index], targets[train_index]),
        validation=Split(x[validation_index], targets[validation_index]),
        labels=class_names,
        feature_names=feature_columns,
        normalization=normalization,
        input_size=len(feature_columns),
    )


def _prepare_time_series(table: pd.DataFrame, data: DataConfig, normalization: Normalization | None) -> PreparedData:
    if not data.labelColumn:
        raise ConfigError("dataMapping.labelColumn is required for TIME_SERIES_FORECASTING: it names the series to forecast")
    target_column = data.labelColumn
    input_columns = [target_column, *[column for column in data.featureColumns if column != target_column]]
    _require_columns(table, [*input_columns, *([data.timeColumn] if data.timeColumn else [])], "dataMapping")

    if data.timeColumn:
        times = pd.to_datetime(table[data.timeColumn], errors="coerce")
        if times.isna().any():
            index = int(np.flatnonzero(times.isna().to_numpy())[0])
            _raise_at(table, index, data.timeColumn, f"{_show(table[data.timeColumn].iloc[index])} is not a date or time")
        table = table.iloc[np.argsort(times.to_numpy(), kind="stable")].reset_index(drop=True)

    series = _numeric_matrix(table, input_columns)
    window_count = len(series) - data.lookback - data.horizon + 1
    if window_count < 2:
        raise ConfigError(
            f"time series has {len(series)} rows, too few for lookback {data.lookback} and horizon {data.horizon}: "
            f"need at least {data.lookback + data.horizon + 1} rows"
        )
    validation_count = max(1, round(window_count * data.validationSplit))
    train_count = window_count - validation_count
    if train_count < 1:
        raise ConfigError(f"time series: validationSplit {data.validationSplit} leaves no window for training")

    # Statistics come from the rows that training windows can see, never the validation future.
    train_rows = train_count + data.lookback + data.horizon - 1
    starts = np.arange(window_count)
    # Targets stay in the series' own units; the loss scales the change with the normalization.
    targets = torch.tensor(series[starts + data.lookback + data.horizon - 1, 0], dtype=torch.float32)
    offsets = torch.tensor(series[starts + data.lookback - 1, 0], dtype=torch.float32)
    if normalization is None:
        changes = (targets - offsets)[:train_count].numpy()
        normalization = _fit_normalization(series[:train_rows], changes, Task.TIME_SERIES_FORECASTING)
    scaled = _scale(series, normalization)
    windows = torch.stack([scaled[start : start + data.lookback] for start in range(window_count)])
    return PreparedData(
        task=Task.TIME_SERIES_FORECASTING,
        train=Split(windows[:train_count], targets[:train_count], offsets[:train_count]),
        validation=Split(windows[train_count:], targets[train_count:], offsets[train_count:]),
        labels=[],
        feature_names=input_columns,
        normalization=normalization,
        input_size=len(input_columns),
    )


def _class_targets(table: pd.DataFrame, column: str, labels: list[str], task: Task) -> tuple[list[str], torch.Tensor]:
    values = table[column]
    names: list[str] = []
    for index in range(len(table)):
        value = values.iloc[index]
        if _is_missing(value):
            _raise_at(table, index, column, "the label is missing")
        if isinstance(value, (float, np.floating)) and not float(value).is_integer():
            _raise_at(
                table, index, column,
                f"label {float(value):g} is not a class: {task.value} needs class names or integer class ids, "
                "use TABULAR_REGRESSION for a continuous target",
            )
        if isinstance(value, (bool, np.bool_)):
            names.append(str(bool(value)).lower())
        elif isinstance(value, (int, float, np.integer, np.floating)):
            names.append(str(int(value)))
        else:
            names.append(str(value))

    if labels:
        known = set(labels)
        for index, name in enumerate(names):
            if name not in known:
                _raise_at(table, index, column, f"label {name!r} is not one of the model's labels {labels}")
        class_names = list(labels)
    else:
        distinct = set(names)
        numeric = all(name.lstrip("-").isdigit() for name in distinct)
        class_names = sorted(distinct, key=int) if numeric else sorted(distinct)
    if len(class_names) < 2:
        raise ConfigError(f"label column {column!r} has only the class {class_names}: classification needs at least two")
    if len(class_names) > MAX_CLASSES:
        raise ConfigError(
            f"label column {column!r} has {len(class_names)} distinct values, more than {MAX_CLASSES} classes: "
            "is it a continuous target? Use TABULAR_REGRESSION then"
        )
    index_of = {name: position for position, name in enumerate(class_names)}
    return class_names, torch.tensor([index_of[name] for name in names], dtype=torch.long)


def _numeric_matrix(table: pd.DataFrame, columns: list[str]) -> np.ndarray:
    matrix = np.empty((len(table), len(columns)), dtype=np.float64)
    for position, column in enumerate(columns):
        raw = table[column]
        numbers = pd.to_numeric(raw, errors="coerce")
        bad = numbers.isna() | ~np.isfinite(numbers.to_numpy(dtype=np.float64, na_value=np.nan))
        if bad.any():
            index = int(np.flatnonzero(bad.to_numpy())[0])
            value = raw.iloc[index]
            reason = "the value is missing" if _is_missing(value) else f"{_show(value)} is not a finite number"
            _raise_at(table, index, column, reason)
        matrix[:, position] = numbers.to_numpy(dtype=np.float64)
    return matrix


def _fit_normalization(features: np.ndarray, targets: np.ndarray, task: Task) -> Normalization:
    std = features.std(axis=0)
    std[std == 0] = 1.0
    normalization = Normalization(feature_mean=features.mean(axis=0).tolist(), feature_std=std.tolist())
    if task not in CLASSIFICATION_TASKS:
        target_std = float(targets.std())
        normalization.target_mean = float(targets.mean())
        normalization.target_std = target_std if target_std > 0 else 1.0
    return normalization


def _scale(features: np.ndarray, normalization: Normalization) -> torch.Tensor:
    mean = np.asarray(normalization.feature_mean)
    std = np.asarray(normalization.feature_std)
    if mean.shape[0] != features.shape[1]:
        raise ConfigError(
            f"the base model expects {mean.shape[0]} input features, the mapped data has {features.shape[1]}"
        )
    return torch.tensor((features - mean) / std, dtype=torch.float32)


def _shuffled_split(count: int, validation_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    validation_count = max(1, round(count * validation_split))
    if count - validation_count < 1:
        raise ConfigError(f"{count} rows are too few to split with validationSplit {validation_split}")
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[validation_count:]), np.sort(order[:validation_count])


def _require_columns(table: pd.DataFrame, columns: list[str], field_name: str) -> None:
    available = [column for column in table.columns if column not in (SOURCE_COLUMN, ROW_COLUMN)]
    for column in columns:
        if column not in table.columns:
            sources = ", ".join(dict.fromkeys(table[SOURCE_COLUMN]))
            raise ConfigError(
                f"data source {sources}: column {column!r} ({field_name}) not found; available columns: {', '.join(map(str, available))}"
            )


def _raise_at(table: pd.DataFrame, index: int, column: str, reason: str) -> None:
    source = table[SOURCE_COLUMN].iloc[index]
    row = int(table[ROW_COLUMN].iloc[index])
    raise ConfigError(f"data source {source} row {row} column {column!r}: {reason}")


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
