"""Pure parts of the reconciler: the output MLModel and repaired conditions."""

from __future__ import annotations

import logging

from ml_training_operator import names, protocol
from ml_training_operator.__main__ import QuietWatchersFilter
from ml_training_operator.reconciler import RequestState, _missing_job_conditions, output_model_body
from tests.unit.operator_fixtures import fine_tuning_request, training_request


def report(**values):
    return protocol.TrainerReport.model_validate({"outcome": "SUCCEEDED", **values})


def test_output_model_of_fine_tuning():
    state = RequestState(fine_tuning_request(), names.FINE_TUNING_REQUEST)
    body = output_model_body(state, report(artifactFormat="PEFT_ADAPTER"), {"name": "minilm", "namespace": "models"})
    assert body["metadata"] == {
        "name": "sentiment-lora-model",
        "namespace": "team-a",
        "labels": {"app.kubernetes.io/managed-by": "aiml-operator", "aiml.mns.io/request-uid": state.uid},
    }
    spec = body["spec"]
    assert spec["mLTrainingType"] == "FINE_TUNING"
    assert spec["inferenceScope"] == ["SENTIMENT"]
    assert spec["aIMLInferenceName"] == "SENTIMENT"
    assert spec["artifact"] == {"uri": "pvc://models-out/sentiment-lora", "format": "PEFT_ADAPTER"}
    assert spec["sourceTrainedMLModelRef"] == {"name": "minilm", "namespace": "models"}
    assert spec["trainingRequestRef"] == {"kind": "MLFineTuningRequest", "name": "sentiment-lora", "namespace": "team-a"}
    assert "ownerReferences" not in body["metadata"]


def test_output_model_name_and_format_fallbacks():
    request = training_request()
    request["spec"]["output"]["modelName"] = "load-v2"
    request["spec"]["mLTrainingType"] = "PRE_SPECIALISED_TRAINING"
    request["spec"]["expectedInferenceScope"] = ["A", "B"]
    state = RequestState(request, names.TRAINING_REQUEST)
    body = output_model_body(state, report(artifactFormat="SOMETHING_ELSE"), None)
    assert body["metadata"]["name"] == "load-v2"
    assert body["spec"]["artifact"]["format"] == "SAFETENSORS"
    assert body["spec"]["inferenceScope"] == ["A", "B"]
    assert "sourceTrainedMLModelRef" not in body["spec"]


def test_missing_conditions_filled_for_existing_job():
    state = RequestState(fine_tuning_request(), names.FINE_TUNING_REQUEST)
    job = {"metadata": {"name": "j-1"}}
    missing = _missing_job_conditions(state, job)
    assert missing["JobCreated"][0] is True
    assert missing["Authorized"][0] is True
    state.body["status"] = {"conditions": [{"type": "JobCreated", "status": "True"}, {"type": "Authorized", "status": "True"}]}
    assert _missing_job_conditions(state, job) == {}


def test_watcher_success_lines_filtered():
    quiet = QuietWatchersFilter()
    assert not quiet.filter(logging.LogRecord("kopf.objects", logging.INFO, "", 0, "Handler 'pod_changed' succeeded.", None, None))
    assert quiet.filter(logging.LogRecord("kopf.objects", logging.ERROR, "", 0, "Handler 'pod_changed' failed.", None, None))
