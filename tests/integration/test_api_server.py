"""The generated CRDs on the real API server: examples apply, invalid objects are rejected.

Each rejection must name the field and state what is accepted, because that message is all
a user sees from ``kubectl apply``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from ml_training_operator.api import MLFineTuningRequest, MLModel, MLTrainingRequest, TrainingRequestStatus
from tests.conftest import ClusterHandle

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
KINDS = {kind.__name__: kind for kind in (MLTrainingRequest, MLFineTuningRequest, MLModel)}


@pytest.fixture(scope="module")
def crds(cluster: ClusterHandle) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{path.name.removesuffix('.yaml')}")


def example(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / name).read_text())


def apply(cluster: ClusterHandle, namespace: str, manifest: dict[str, Any], check: bool = True):
    return cluster.kubectl(
        "apply", "--validate=strict", "-n", namespace, "-f", "-", input=json.dumps(manifest), check=check
    )


def rejected(cluster: ClusterHandle, namespace: str, manifest: dict[str, Any]) -> str:
    result = apply(cluster, namespace, manifest, check=False)
    assert result.returncode != 0, f"the API server accepted {json.dumps(manifest['spec'])}"
    return result.stderr


@pytest.mark.parametrize("file_name", ["pretrained-model.yaml", "finetuning-request.yaml", "training-request.yaml"])
def test_example_applies(cluster: ClusterHandle, crds: None, namespace: str, file_name: str) -> None:
    manifest = example(file_name)
    apply(cluster, namespace, manifest)

    stored = cluster.kubectl_json("get", manifest["kind"], manifest["metadata"]["name"], "-n", namespace)
    parsed = KINDS[manifest["kind"]].model_validate(stored)
    assert parsed.to_wire()["spec"] == stored["spec"]
    # The API server fills in the same defaults as the models.
    assert KINDS[manifest["kind"]].model_validate(manifest).to_wire()["spec"] == stored["spec"]


def set_path(manifest: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    result = copy.deepcopy(manifest)
    *parents, last = path.split(".")
    node = result
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return result


DELETE = object()

# (example file, dotted path under the manifest, new value, fragments the error must contain)
INVALID_CASES = [
    ("finetuning-request.yaml", "spec.performanceRequirements.0.performanceMetric", "BLEU",
     ["spec.performanceRequirements[0].performanceMetric", "Unsupported value", "ACCURACY"]),
    ("finetuning-request.yaml", "spec.performanceRequirements.0.performanceScore", 50,
     ["spec.performanceRequirements[0].performanceScore", "between 0 and 1"]),
    ("training-request.yaml", "spec.performanceRequirements.0.performanceScore", -1,
     ["spec.performanceRequirements[0].performanceScore", "greater than or equal to 0"]),
    ("finetuning-request.yaml", "spec.candidateTrainingDataSource", DELETE,
     ["spec.candidateTrainingDataSource", "Required value"]),
    ("finetuning-request.yaml", "spec.mLModelRef", DELETE, ["spec.mLModelRef", "Required value"]),
    ("finetuning-request.yaml", "spec.candidateTrainingDataSource", ["http://example.com/topics.csv"],
     ["spec.candidateTrainingDataSource[0]", "pvc://<claimName>/<path> or configmap://<configMapName>/<key>"]),
    ("finetuning-request.yaml", "spec.candidateTrainingDataSource", ["pvc://training-data/../secrets/x"],
     ["spec.candidateTrainingDataSource[0]", "no '..' segment"]),
    ("finetuning-request.yaml", "spec.output.uri", "configmap://cm/key", ["spec.output.uri", "pvc://<claimName>/<path>"]),
    ("finetuning-request.yaml", "spec.fineTuning.method", "IA3", ["spec.fineTuning.lora", "only valid with method LORA"]),
    ("finetuning-request.yaml", "spec.mLTrainingType", "RE_TRAINING", ["spec.mLTrainingType", "FINE_TUNING"]),
    ("training-request.yaml", "spec.mLTrainingType", "FINE_TUNING", ["spec.mLTrainingType", "MLFineTuningRequest"]),
    ("training-request.yaml", "spec.mLTrainingType", "RE_TRAINING", ["spec.mLModelRef", "RE_TRAINING"]),
    ("training-request.yaml", "spec.mLTrainingType", "PRE_SPECIALISED_TRAINING", ["spec.expectedInferenceScope", "Required value"]),
    ("training-request.yaml", "spec.trainer.cpu", "two cores", ["spec.trainer.cpu"]),
    ("training-request.yaml", "spec.trainingDataQualityScore", 101, ["spec.trainingDataQualityScore", "less than or equal to 100"]),
    ("pretrained-model.yaml", "spec.artifact.uri", "https://huggingface.co/x", ["spec.artifact.uri", "python-package://<module>"]),
    ("pretrained-model.yaml", "spec.artifact.format", "ONNX", ["spec.artifact.format", "Unsupported value", "HF_TRANSFORMERS"]),
    ("finetuning-request.yaml", "spec.trainingDataSource", ["pvc://training-data/x.csv"], ['unknown field "spec.trainingDataSource"']),
    ("finetuning-request.yaml", "spec.fineTuning.lora.rank", 8, ['unknown field "spec.fineTuning.lora.rank"']),
]


@pytest.mark.parametrize(("file_name", "path", "value", "fragments"), INVALID_CASES,
                         ids=[f"{case[1].removeprefix('spec.')}={case[2] if case[2] is not DELETE else 'unset'}" for case in INVALID_CASES])
def test_invalid_object_rejected(cluster: ClusterHandle, crds: None, namespace: str,
                                 file_name: str, path: str, value: Any, fragments: list[str]) -> None:
    message = rejected(cluster, namespace, set_path(example(file_name), path, value))
    for fragment in fragments:
        assert fragment in message


UPDATE_CASES: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]], list[str]]] = [
    ("finetuning-request.yaml", lambda m: set_path(m, "spec.mLModelRef.name", "another-model"), ["spec.mLModelRef", "immutable"]),
    ("finetuning-request.yaml", lambda m: set_path(m, "spec.mLModelRef.namespace", "models"), ["spec.mLModelRef", "immutable"]),
    ("training-request.yaml", lambda m: set_path(m, "spec.aIMLInferenceName", "OTHER"), ["spec.aIMLInferenceName", "immutable"]),
    (
        "training-request.yaml",
        lambda m: set_path(set_path(m, "spec.mLTrainingType", "RE_TRAINING"), "spec.mLModelRef", {"name": "co2"}),
        ["spec.mLModelRef", "cannot be added or removed"],
    ),
]


@pytest.mark.parametrize(("file_name", "change", "fragments"), UPDATE_CASES,
                         ids=["model-ref-name", "model-ref-namespace", "inference-name", "model-ref-added"])
def test_immutable_field_update_rejected(cluster: ClusterHandle, crds: None, namespace: str, file_name: str,
                                         change: Callable[[dict[str, Any]], dict[str, Any]], fragments: list[str]) -> None:
    manifest = example(file_name)
    apply(cluster, namespace, manifest)

    message = rejected(cluster, namespace, change(manifest))
    for fragment in fragments:
        assert fragment in message


def test_cancel_cannot_be_undone(cluster: ClusterHandle, crds: None, namespace: str) -> None:
    manifest = example("finetuning-request.yaml")
    apply(cluster, namespace, manifest)
    apply(cluster, namespace, set_path(manifest, "spec.cancelRequest", True))

    message = rejected(cluster, namespace, set_path(manifest, "spec.cancelRequest", False))
    assert "spec.cancelRequest" in message
    assert "cannot go back from true to false" in message

    # Leaving the field out means false by default, which is the same transition.
    assert "spec.cancelRequest" in rejected(cluster, namespace, manifest)


def full_status() -> dict[str, Any]:
    """A status with every field the operator may write, built and checked by the model."""
    status = {
        "requestStatus": "IN_PROGRESS",
        "observedGeneration": 1,
        "conditions": [
            {"type": "Running", "status": "True", "reason": "Training", "message": "epoch 2 of 3",
             "lastTransitionTime": "2026-01-02T03:04:05Z", "observedGeneration": 1},
        ],
        "process": {
            "progressStatus": {"status": "RUNNING", "progressPercentage": 42, "progressStateInfo": "TRAINING",
                               "resultStateInfo": "running"},
            "startTime": "2026-01-02T03:00:00Z",
            "endTime": "2026-01-02T04:00:00Z",
            "jobRef": {"name": "topic-classifier-1", "uid": "0f7c"},
            "attempt": 1, "epoch": 2, "totalEpochs": 3, "step": 20, "totalSteps": 30, "loss": 0.5,
            "interimMetrics": {"ACCURACY": 0.81}, "etaSeconds": 12.5, "lastProgressTime": "2026-01-02T03:30:00Z",
            "device": "cpu", "precision": "FP32", "checkpointAvailable": True,
        },
        "report": {
            "modelPerformanceTraining": [{"performanceMetric": "ACCURACY", "performanceScore": 0.9}],
            "modelPerformanceValidation": [
                {"performanceMetric": "ACCURACY", "performanceScore": 0.81, "requiredScore": 0.5, "requirementMet": True,
                 "inferenceOutputName": "topic", "decisionConfidenceScore": 0.7},
            ],
            "modelConfidenceIndication": 81, "usedConsumerTrainingData": ["pvc://training-data/chatterbot/topics.csv"],
            "areNewTrainingDataUsed": True, "dataRatioTrainingAndValidation": 80,
            "mLModelGeneratedRef": {"name": "topic-classifier", "namespace": "x"}, "lastTrainingRef": "none",
            "trainableParameters": 1000, "totalParameters": 22000000, "artifactUri": "pvc://models/topic-classifier",
            "artifactFormat": "PEFT_ADAPTER", "device": "cpu", "precision": "FP32", "durationSeconds": 60.5,
            "stopReason": "MAX_EPOCHS",
        },
    }
    return TrainingRequestStatus.model_validate(status).to_wire()


def test_status_kept_and_columns_shown(cluster: ClusterHandle, crds: None, namespace: str) -> None:
    manifest = example("finetuning-request.yaml")
    apply(cluster, namespace, manifest)
    status = full_status()
    name = manifest["metadata"]["name"]

    cluster.kubectl("patch", "mlftr", name, "-n", namespace, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": status}))

    stored = cluster.kubectl_json("get", "mlftr", name, "-n", namespace)
    assert stored["status"] == status, "the API server pruned status fields that the model has"
    table = cluster.kubectl("get", "mlftr", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "INFERENCE", "STATUS", "PROGRESS", "STATE", "STEP", "METRIC", "SCORE", "AGE"]
    assert table[1].split()[:8] == [
        name, "TEXT_TOPIC_CLASSIFICATION", "IN_PROGRESS", "42", "RUNNING", "TRAINING", "ACCURACY", "0.81"
    ]


def test_model_columns(cluster: ClusterHandle, crds: None, namespace: str) -> None:
    apply(cluster, namespace, example("pretrained-model.yaml"))

    table = cluster.kubectl("get", "mlm", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "INFERENCE", "FORMAT", "BASE", "AGE"]
    assert "HF_TRANSFORMERS" in table[1]
    assert "TEXT_TOPIC_CLASSIFICATION" in table[1]


def test_category_lists_all_kinds(cluster: ClusterHandle, crds: None, namespace: str) -> None:
    for file_name in ("pretrained-model.yaml", "finetuning-request.yaml", "training-request.yaml"):
        apply(cluster, namespace, example(file_name))

    output = cluster.kubectl("get", "aiml", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(output) == [
        "mlfinetuningrequest.aiml.mns.io/topic-classifier",
        "mlmodel.aiml.mns.io/all-minilm-l6-v2",
        "mltrainingrequest.aiml.mns.io/co2-forecaster",
    ]


def test_explain_shows_descriptions(cluster: ClusterHandle, crds: None) -> None:
    spec = cluster.kubectl("explain", "mlftr.spec").stdout
    assert "aIMLInferenceName" in spec
    assert "Inference the model is trained for" in spec
    assert "Extension (not in TS 28.105)" in spec

    lora = cluster.kubectl("explain", "mlftr.spec.fineTuning.lora.r").stdout
    assert "Rank of the low-rank update matrices" in lora
