"""Checkpoints in ``output.checkpointPath``: written atomically, newest one resumed.

A checkpoint is a directory ``step-<n>`` holding one ``state.pt`` with the trainable weights,
optimizer, scheduler, RNG states and the position in the data (epoch and step within it). It
is written under a temporary name and renamed into place, so a Pod killed mid-write leaves at
most a stray temporary directory, never a half checkpoint that a rerun would load. The
configuration fingerprint guards against resuming a run whose settings changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import shutil
from typing import Any

import torch
from ml_training_operator.protocol import TrainerConfig

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
PREFIX = "step-"
KEEP = 2


def fingerprint(config: TrainerConfig) -> str:
    """Hash the settings that shape training; output, progress and termination may change on a rerun."""
    relevant = config.model_dump(mode="json", include={"task", "data", "model", "fineTuning", "hyperparameters"})
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def save(directory: pathlib.Path, step: int, state: dict[str, Any]) -> pathlib.Path:
    """Write ``state`` as the checkpoint for ``step`` and drop all but the newest ones."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{PREFIX}{step:09d}"
    temporary = directory / f".tmp-{PREFIX}{step:09d}-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    with open(temporary / STATE_FILE, "wb") as file:
        torch.save(state, file)
        file.flush()
        os.fsync(file.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(temporary, final)
    for old in _complete(directory)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_newest(directory: pathlib.Path, expected_fingerprint: str) -> dict[str, Any] | None:
    """Return the newest checkpoint's state, or None when there is none usable."""
    for candidate in reversed(_complete(directory)):
        try:
            state = torch.load(candidate / STATE_FILE, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError) as error:
            log.warning("skipping unreadable checkpoint %s: %s", candidate, error)
            continue
        if state.get("fingerprint") != expected_fingerprint:
            log.warning(
                "checkpoint %s comes from a different configuration (fingerprint %s, expected %s); starting fresh",
                candidate, state.get("fingerprint"), expected_fingerprint,
            )
            return None
        log.info("resuming from checkpoint %s at step %s", candidate, state.get("step"))
        return state
    return None


def _complete(directory: pathlib.Path) -> list[pathlib.Path]:
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.iterdir() if path.name.startswith(PREFIX) and (path / STATE_FILE).is_file())
