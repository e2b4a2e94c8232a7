"""Reading the training data files (CSV, JSONL, Parquet) into one table.

Every row keeps the URI it came from and its 1-based row number in that file (the header
line of a CSV does not count), so that a data error can name the exact place to fix. The
user-facing URI is the consumer's ``candidateTrainingDataSource`` entry when the operator
passed it in ``consumerUris``, because the consumer never sees the mounted path.
"""

from __future__ import annotations

import json
import pathlib

import pandas as pd
from ml_training_operator.protocol import DataConfig

from .config import local_path
from .errors import ConfigError

SOURCE_COLUMN = "__aiml_source"
ROW_COLUMN = "__aiml_row"

_FORMAT_BY_SUFFIX = {".csv": "CSV", ".jsonl": "JSONL", ".ndjson": "JSONL", ".parquet": "PARQUET"}


def read_sources(data: DataConfig) -> pd.DataFrame:
    """Read every source in order and return one table with the source and row columns added."""
    frames = []
    for index, uri in enumerate(data.sources):
        name = data.consumerUris[index] if index < len(data.consumerUris) else uri
        path = local_path(uri)
        frame = read_file(path, name, data.format)
        frame[SOURCE_COLUMN] = name
        if ROW_COLUMN not in frame.columns:
            frame[ROW_COLUMN] = range(1, len(frame) + 1)
        frames.append(frame)

    table = pd.concat(frames, ignore_index=True, sort=False)
    if data.maxRows is not None:
        table = table.iloc[: data.maxRows].reset_index(drop=True)
    if table.empty:
        raise ConfigError(f"data sources {', '.join(_names(data))} contain no rows")
    return table


def read_file(path: pathlib.Path, name: str, data_format: str | None) -> pd.DataFrame:
    """Read one file, turning every read or parse problem into a ConfigError that names it."""
    if not path.is_file():
        raise ConfigError(f"data source {name}: file not found (looked for {path})")
    file_format = data_format or _FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if file_format is None:
        raise ConfigError(
            f"data source {name}: cannot tell the format from the extension {path.suffix!r}; "
            "set dataMapping.format to CSV, JSONL or PARQUET"
        )
    try:
        if file_format == "CSV":
            return _read_csv(path, name)
        if file_format == "JSONL":
            return _read_jsonl(path, name)
        return pd.read_parquet(path)
    except ConfigError:
        raise
    except (OSError, ValueError) as error:
        raise ConfigError(f"data source {name}: cannot read it as {file_format}: {error}") from error


def _read_csv(path: pathlib.Path, name: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path, on_bad_lines="error", skip_blank_lines=True)
    except pd.errors.ParserError as error:
        # pandas names the file line ("Expected 2 fields in line 7, saw 3"); line 1 is the header.
        raise ConfigError(f"data source {name}: unreadable CSV row: {error}".strip()) from error
    except UnicodeDecodeError as error:
        raise ConfigError(f"data source {name}: not UTF-8 text at byte {error.start}") from error
    except pd.errors.EmptyDataError as error:
        raise ConfigError(f"data source {name}: the file is empty") from error


def _read_jsonl(path: pathlib.Path, name: str) -> pd.DataFrame:
    records = []
    rows = []
    with path.open(encoding="utf-8") as file:
        for row, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ConfigError(f"data source {name} row {row}: invalid JSON: {error.msg} at column {error.colno}") from error
            if not isinstance(record, dict):
                raise ConfigError(f"data source {name} row {row}: expected a JSON object, got {type(record).__name__}")
            records.append(record)
            rows.append(row)
    frame = pd.DataFrame.from_records(records)
    # Blank lines are skipped, so the row number is the line number, not the record index.
    frame[ROW_COLUMN] = rows
    return frame


def _names(data: DataConfig) -> list[str]:
    return data.consumerUris or data.sources
