"""Initial training, re-training and checkpoint/resume of the trainer on real example data."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
from pathlib import Path

import pytest
from ml_training_operator.protocol import Outcome, ProgressEvent

from tests.integration.trainer_support import (
    ANES96_CSV,
    CO2_CSV,
    TRAINER,
    config_document,
    full_report,
    run_trainer,
    scores,
    termination_report,
    trainer_env,
    write_config,
)


def co2_document(tmp_path: Path, **sections) -> dict:
    defaults = {
        "task": "TIME_SERIES_FORECASTING",
        "data": {"sources": [str(CO2_CSV)], "timeColumn": "month", "labelColumn": "co2", "lookback": 12},
        "model": {"architecture": "MLP", "hiddenSizes": [64, 64]},
        "hyperparameters": {"epochs": 20, "batchSize": 32, "learningRate": 0.01, "seed": 3},
        "performanceRequirements": [{"performanceMetric": "MAE", "performanceScore": 1.0}],
    }
    defaults.update(sections)
    return config_document(tmp_path, **defaults)


def naive_forecast_mae(validation_count: int) -> float:
    """MAE of forecasting each month with the month before, on the last ``validation_count`` months."""
    with CO2_CSV.open(encoding="utf-8") as file:
        values = [float(row["co2"]) for row in csv.DictReader(file)]
    tail = range(len(values) - validation_count, len(values))
    return sum(abs(values[i] - values[i - 1]) for i in tail) / validation_count


def test_time_series_mlp_beats_naive_forecast(tmp_path):
    document = co2_document(tmp_path)
    result = run_trainer(tmp_path, write_config(tmp_path, document))
    assert result.returncode == 0, result.stderr[-3000:]

    report = termination_report(tmp_path)
    predictions = (Path(document["output"]["path"]) / "validation-predictions.jsonl").read_text().splitlines()
    naive = naive_forecast_mae(len(predictions))
    assert report.outcome is Outcome.SUCCEEDED
    assert scores(report)["MAE"] < 0.6 * naive
    assert report.modelPerformanceValidation[0].requirementMet is (scores(report)["MAE"] <= 1.0)
    assert report.artifactFormat == "SAFETENSORS"
    assert report.stopReason == "EPOCHS_COMPLETED"
    assert report.modelConfidenceIndication is not None
    assert report.modelConfidenceIndication > 90


def test_tabular_classification_beats_majority_class(tmp_path):
    document = config_document(
        tmp_path,
        performanceRequirements=[{"performanceMetric": "ACCURACY", "performanceScore": 0.8}, {"performanceMetric": "F1", "performanceScore": 0.8}],
    )
    result = run_trainer(tmp_path, write_config(tmp_path, document))
    assert result.returncode == 0, result.stderr[-3000:]

    with ANES96_CSV.open(encoding="utf-8") as file:
        votes = [row["vote"] for row in csv.DictReader(file)]
    majority_share = max(votes.count(name) for name in set(votes)) / len(votes)
    report = termination_report(tmp_path)
    assert scores(report)["ACCURACY"] > majority_share + 0.2
    assert scores(report)["F1"] > 0.8
    assert full_report(document)["labels"] == ["Clinton", "Dole"]
    assert report.dataRatioTrainingAndValidation == 80


def test_retraining_starts_from_base_model(tmp_path):
    base = co2_document(tmp_path / "base")
    (tmp_path / "base").mkdir()
    assert run_trainer(tmp_path, write_config(tmp_path, base, "base.json")).returncode == 0
    base_mae = scores(termination_report(tmp_path))["MAE"]

    # One epoch at a tiny learning rate barely moves the weights: only a model that really
    # starts from the base can be as good as the base after it.
    retrain = co2_document(
        tmp_path / "retrain",
        mLTrainingType="RE_TRAINING",
        model={"architecture": "MLP", "basePath": base["output"]["path"]},
        hyperparameters={"epochs": 1, "batchSize": 32, "learningRate": 1e-6, "seed": 3},
    )
    (tmp_path / "retrain").mkdir()
    result = run_trainer(tmp_path, write_config(tmp_path, retrain, "retrain.json"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert scores(termination_report(tmp_path))["MAE"] == pytest.approx(base_mae, rel=0.05)


def test_sigterm_checkpoints_and_rerun_resumes(tmp_path):
    sections = {
        "model": {"architecture": "LSTM", "hiddenSizes": [16]},
        "hyperparameters": {"epochs": 40, "batchSize": 4, "learningRate": 0.005, "seed": 11},
        "progress": {"minIntervalSeconds": 0},
        "output": {
            "path": str(tmp_path / "interrupted"),
            "checkpointPath": str(tmp_path / "interrupted" / ".checkpoints"),
            "checkpointIntervalSeconds": 3600,
        },
    }
    document = co2_document(tmp_path, **sections)
    config_path = write_config(tmp_path, document)

    process = subprocess.Popen(
        [str(TRAINER), "run", "--config", str(config_path)],
        env=trainer_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        for line in process.stdout:
            event = ProgressEvent.model_validate_json(line)
            if event.step is not None and event.step >= 150:
                process.send_signal(signal.SIGTERM)
                break
        process.stdout.read()
        assert process.wait(timeout=120) == 143, process.stderr.read()[-3000:]
    finally:
        process.kill()

    interrupted = termination_report(tmp_path)
    assert interrupted.outcome is Outcome.INTERRUPTED
    checkpoint_dirs = sorted(path.name for path in (tmp_path / "interrupted" / ".checkpoints").iterdir())
    assert checkpoint_dirs == [f"step-{interrupted.steps:09d}"]
    assert 150 <= interrupted.steps < full_report(document)["totalSteps"]

    result = run_trainer(tmp_path, config_path)
    assert result.returncode == 0, result.stderr[-3000:]
    events = [ProgressEvent.model_validate_json(line) for line in result.stdout.splitlines()]
    first_training = next(event for event in events if event.phase.value == "TRAINING")
    assert first_training.step == interrupted.steps
    assert first_training.message == f"resumed from checkpoint at epoch {first_training.epoch} step {interrupted.steps}"
    resumed = full_report(document)
    assert resumed["resumedFromStep"] == interrupted.steps
    assert resumed["steps"] == resumed["totalSteps"]

    # The same configuration without interruption must end with the same model.
    straight = co2_document(tmp_path, **{**sections, "output": {
        "path": str(tmp_path / "straight"), "checkpointPath": str(tmp_path / "straight" / ".checkpoints"),
    }})
    assert run_trainer(tmp_path, write_config(tmp_path, straight, "straight.json")).returncode == 0
    assert full_report(straight)["modelPerformanceValidation"] == resumed["modelPerformanceValidation"]
    straight_predictions = (tmp_path / "straight" / "validation-predictions.jsonl").read_text()
    resumed_predictions = (tmp_path / "interrupted" / "validation-predictions.jsonl").read_text()
    assert [json.loads(line)["prediction"] for line in straight_predictions.splitlines()] == [
        json.loads(line)["prediction"] for line in resumed_predictions.splitlines()
    ]
