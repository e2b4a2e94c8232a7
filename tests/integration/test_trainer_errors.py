"""Invalid data and invalid configuration end with exit code 78 and a message naming the place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ml_training_operator.protocol import CONFIG_ERROR_EXIT_CODE, Outcome

from tests.integration.trainer_support import config_document, run_trainer, termination_report, write_config

BAD_DATA_CASES = {
    "missing file": (
        "csv", None, {},
        ["data source pvc://claim/data/input.csv: file not found"],
    ),
    "unreadable csv row": (
        "csv", "a,b,vote\n1,2,x\n3,4,y,extra\n", {},
        ["data source pvc://claim/data/input.csv", "unreadable CSV row", "line 3"],
    ),
    "invalid jsonl row": (
        "jsonl", '{"a": 1, "b": 2, "vote": "x"}\n{"a": 3, "b": \n', {},
        ["data source pvc://claim/data/input.jsonl row 2: invalid JSON"],
    ),
    "missing column": (
        "csv", "a,b,party\n1,2,x\n3,4,y\n", {},
        ["data source pvc://claim/data/input.csv: column 'vote'", "available columns: a, b, party"],
    ),
    "non-numeric feature": (
        "csv", "a,b,vote\n1,2,x\n3,four,y\n5,6,x\n", {},
        ["data source pvc://claim/data/input.csv row 2 column 'b': 'four' is not a finite number"],
    ),
    "continuous label for classification": (
        "csv", "a,b,vote\n1,2,1\n3,4,2.5\n5,6,1\n", {},
        ["data source pvc://claim/data/input.csv row 2 column 'vote': label 2.5 is not a class", "TABULAR_REGRESSION"],
    ),
    "text label for regression": (
        "csv", "a,b,vote\n1,2,1.5\n3,4,2.5\n5,6,high\n", {"task": "TABULAR_REGRESSION"},
        ["data source pvc://claim/data/input.csv row 3 column 'vote': 'high' is not a finite number"],
    ),
    "missing label": (
        "jsonl", '{"a": 1, "b": 2, "vote": "x"}\n\n{"a": 3, "b": 4}\n', {},
        ["data source pvc://claim/data/input.jsonl row 3 column 'vote': the label is missing"],
    ),
}


@pytest.mark.parametrize("case", BAD_DATA_CASES, ids=list(BAD_DATA_CASES))
def test_bad_data_is_config_error(tmp_path, case):
    suffix, content, sections, expected = BAD_DATA_CASES[case]
    path = tmp_path / f"input.{suffix}"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    document = config_document(
        tmp_path,
        data={"sources": [f"file://{path}"], "consumerUris": [f"pvc://claim/data/input.{suffix}"], "labelColumn": "vote", "featureColumns": ["a", "b"]},
        **sections,
    )

    result = run_trainer(tmp_path, write_config(tmp_path, document))

    report = termination_report(tmp_path)
    assert result.returncode == CONFIG_ERROR_EXIT_CODE, result.stderr[-2000:]
    assert report.outcome is Outcome.CONFIG_ERROR
    for fragment in expected:
        assert fragment in report.message
        assert fragment in result.stderr
    full = json.loads((Path(document["output"]["path"]) / "report.json").read_text())
    assert full["message"] == report.message


BAD_CONFIG_CASES = {
    "unknown field": (
        {"hyperparameters": {"epochs": 1, "learningRatio": 0.1}},
        ["trainer configuration", "hyperparameters.learningRatio: Extra inputs are not permitted"],
    ),
    "metric that does not fit the task": (
        {"performanceRequirements": [{"performanceMetric": "MAE", "performanceScore": 1}]},
        ["performanceRequirements: MAE cannot be computed for task TABULAR_CLASSIFICATION"],
    ),
    "re-training without base model": (
        {"mLTrainingType": "RE_TRAINING"},
        ["model.basePath is required for RE_TRAINING"],
    ),
    "package that is not installed": (
        {"task": "TEXT_CLASSIFICATION", "model": {"basePath": "python-package://no_such_model_package"}},
        ["model.basePath python-package://no_such_model_package: Python package 'no_such_model_package' is not installed"],
    ),
    "LSTM with mixed widths": (
        {"task": "TIME_SERIES_FORECASTING", "data": {"sources": ["DATA"], "labelColumn": "co2", "timeColumn": "month"},
         "model": {"architecture": "LSTM", "hiddenSizes": [32, 16]}},
        ["model.hiddenSizes for LSTM must repeat one width per layer, got [32, 16]"],
    ),
}


@pytest.mark.parametrize("case", BAD_CONFIG_CASES, ids=list(BAD_CONFIG_CASES))
def test_bad_config_is_config_error(tmp_path, case):
    sections, expected = BAD_CONFIG_CASES[case]
    document = config_document(tmp_path, **sections)
    if document["data"]["sources"] == ["DATA"]:
        document["data"]["sources"] = [str(Path(__file__).resolve().parents[2] / "examples/data/statsmodels/co2_monthly.csv")]

    result = run_trainer(tmp_path, write_config(tmp_path, document))

    report = termination_report(tmp_path)
    assert result.returncode == CONFIG_ERROR_EXIT_CODE, result.stderr[-2000:]
    assert report.outcome is Outcome.CONFIG_ERROR
    for fragment in expected:
        assert fragment in report.message


def test_config_that_is_not_json_is_config_error(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json", encoding="utf-8")

    result = run_trainer(tmp_path, path)

    assert result.returncode == CONFIG_ERROR_EXIT_CODE
    assert f"trainer configuration {path} is not valid JSON" in termination_report(tmp_path).message
