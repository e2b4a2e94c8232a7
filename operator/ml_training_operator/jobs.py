"""Building the trainer's ConfigMap and batch/v1 Job for one attempt of a request.

Everything here is a pure function of the request, its base MLModel and the operator
settings, so the same inputs give the same Job, byte for byte. That is what makes Job
creation idempotent: after a restart the operator computes the same name and adopts the
Job it finds instead of starting a second one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import names, protocol
from .settings import Settings
from .uris import parse_uri

CONFIG_DIR = "/etc/aiml"
CONFIG_PATH = f"{CONFIG_DIR}/{protocol.CONFIG_FILE_NAME}"
DATA_ROOT = "/data"
OUTPUT_ROOT = "/output"
MODEL_ROOT = "/models"
SCRATCH_DIR = "/scratch"
TOKEN_DIR = "/var/run/secrets/aiml.mns.io/progress"
TOKEN_PATH = f"{TOKEN_DIR}/token"
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
TOKEN_EXPIRATION_SECONDS = 3600
TRAINER_USER_ID = 1000
DEFAULT_BACKOFF_LIMIT = 2
MAX_NAME_LENGTH = 63

_INVALID_NAME_CHARACTERS = re.compile(r"[^a-z0-9-]")


@dataclass(frozen=True)
class JobPlan:
    """The objects of one attempt: the Job, its ConfigMap and the trainer configuration inside it."""

    job: dict[str, Any]
    config_map: dict[str, Any]
    config: protocol.TrainerConfig

    @property
    def job_name(self) -> str:
        return self.job["metadata"]["name"]


def job_name(kind: str, namespace: str, name: str, uid: str, attempt: int) -> str:
    """Return the Job name of an attempt: ``<name>-<attempt>-<hash>``, at most 63 characters.

    The hash covers kind, namespace, name and uid, so two kinds with the same name, or a
    request recreated under an old name, never share a Job.
    """
    digest = hashlib.sha256(f"{kind}/{namespace}/{name}/{uid}".encode()).hexdigest()[:8]
    suffix = f"-{attempt}-{digest}"
    stem = _INVALID_NAME_CHARACTERS.sub("-", name.lower())[: MAX_NAME_LENGTH - len(suffix)].strip("-")
    return f"{stem or 'request'}{suffix}"


def config_map_name(job: str) -> str:
    return f"{job}-config"


def request_labels(kind: str, name: str, uid: str, attempt: int) -> dict[str, str]:
    """Return the labels that tie a Job, its Pods and ConfigMap to a request."""
    labels = {
        names.LABEL_NAME: "aiml-trainer",
        names.LABEL_COMPONENT: "trainer",
        names.LABEL_MANAGED_BY: names.MANAGED_BY,
        names.LABEL_REQUEST_KIND: kind,
        names.LABEL_REQUEST_UID: uid,
        names.LABEL_ATTEMPT: str(attempt),
    }
    # A label value holds at most 63 characters; the uid label identifies the request either way.
    if len(name) <= 63:
        labels[names.LABEL_REQUEST_NAME] = name
    return labels


def owner_reference(request: Mapping[str, Any]) -> dict[str, Any]:
    metadata = request["metadata"]
    return {
        "apiVersion": names.API_VERSION,
        "kind": request["kind"],
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


@dataclass
class _Mounts:
    """Volumes and mounts collected while translating URIs into Pod paths."""

    volumes: list[dict[str, Any]]
    mounts: list[dict[str, Any]]

    def add(self, volume: dict[str, Any], mount_path: str, read_only: bool) -> None:
        for mount in self.mounts:
            if mount["mountPath"] == mount_path:
                # A second reference to the same claim or ConfigMap reuses the first mount.
                return
        self.volumes.append(volume)
        self.mounts.append({"name": volume["name"], "mountPath": mount_path, "readOnly": read_only})


def _mount_source(mounts: _Mounts, uri: str, root: str, volume_prefix: str, read_only: bool) -> str:
    """Mount the claim or ConfigMap a URI names, and return the URI's path in the Pod."""
    parsed = parse_uri(uri)
    mount_path = f"{root}/{parsed.scheme}/{parsed.source}"
    volume_name = f"{volume_prefix}-{len(mounts.volumes)}"
    if parsed.scheme == "pvc":
        volume = {"name": volume_name, "persistentVolumeClaim": {"claimName": parsed.source, "readOnly": read_only}}
    elif parsed.scheme == "configmap":
        volume = {"name": volume_name, "configMap": {"name": parsed.source}}
    else:
        raise ValueError(f"{uri!r}: only pvc:// and configmap:// sources are mounted")
    mounts.add(volume, mount_path, read_only)
    return parsed.pod_path(root)


def base_model_path(model: Mapping[str, Any] | None, mounts: _Mounts) -> str | None:
    """Return how the trainer finds the base model: a mounted path, an image path, or a package URI."""
    if model is None:
        return None
    uri = ((model.get("spec") or {}).get("artifact") or {}).get("uri")
    if not uri:
        return None
    parsed = parse_uri(uri)
    if parsed.scheme == "image":
        return parsed.path
    if parsed.scheme == "python-package":
        # The trainer resolves the package directory with importlib inside the image.
        return uri
    return _mount_source(mounts, uri, MODEL_ROOT, "model", read_only=True)


def _training_type(kind: str, spec: Mapping[str, Any]) -> str:
    if kind == names.FINE_TUNING_REQUEST.kind:
        return "FINE_TUNING"
    return spec.get("mLTrainingType") or "INITIAL_TRAINING"


def _task(kind: str, spec: Mapping[str, Any], model: Mapping[str, Any] | None) -> str:
    if spec.get("task"):
        return spec["task"]
    model_task = ((model or {}).get("spec") or {}).get("task")
    if model_task:
        return model_task
    return "TEXT_CLASSIFICATION" if kind == names.FINE_TUNING_REQUEST.kind else "TABULAR_CLASSIFICATION"


def _model_config(kind: str, spec: Mapping[str, Any], model: Mapping[str, Any] | None, base_path: str | None) -> protocol.ModelConfig:
    requested = (spec.get("trainer") or {}).get("model") or {}
    model_spec = (model or {}).get("spec") or {}
    if kind == names.FINE_TUNING_REQUEST.kind:
        architecture = "PRETRAINED_TRANSFORMER"
    else:
        architecture = requested.get("architecture") or model_spec.get("architecture") or "MLP"
        if architecture not in ("MLP", "LSTM", "PRETRAINED_TRANSFORMER"):
            architecture = "MLP"
    values: dict[str, Any] = {"architecture": architecture, "basePath": base_path, "labels": list(model_spec.get("labels") or [])}
    if requested.get("hiddenSizes"):
        values["hiddenSizes"] = list(requested["hiddenSizes"])
    return protocol.ModelConfig(**values)


def _fine_tuning_config(spec: Mapping[str, Any]) -> protocol.FineTuningConfig | None:
    fine_tuning = spec.get("fineTuning")
    if not fine_tuning:
        return None
    values: dict[str, Any] = {"method": fine_tuning.get("method", "LORA")}
    if fine_tuning.get("lora"):
        values["lora"] = protocol.LoraParameters(**fine_tuning["lora"])
    if fine_tuning.get("ia3"):
        values["ia3"] = protocol.IA3Parameters(**fine_tuning["ia3"])
    if "mergeAdapter" in fine_tuning:
        values["mergeAdapter"] = bool(fine_tuning["mergeAdapter"])
    if fine_tuning.get("baseModelQuantization"):
        values["quantization"] = fine_tuning["baseModelQuantization"]
    return protocol.FineTuningConfig(**values)


def _data_config(spec: Mapping[str, Any], mounts: _Mounts) -> protocol.DataConfig:
    uris = list(spec.get("candidateTrainingDataSource") or [])
    sources = [_mount_source(mounts, uri, DATA_ROOT, "data", read_only=True) for uri in uris]
    mapping = {key: value for key, value in (spec.get("dataMapping") or {}).items() if value is not None}
    return protocol.DataConfig(sources=sources, consumerUris=uris, **mapping)


def output_paths(spec: Mapping[str, Any], uid: str) -> tuple[str, str]:
    """Return the model directory and the checkpoint directory in the Pod.

    Both depend on the request only, not on the attempt, so a resumed attempt finds the
    checkpoints of the previous one. The checkpoint directory ends in the request's uid,
    so a request never resumes from the checkpoints of another request with the same
    output URI, nor from those of a deleted request recreated under the same name.
    """
    parsed = parse_uri(spec["output"]["uri"], schemes=("pvc",))
    model_dir = parsed.pod_path(OUTPUT_ROOT)
    return model_dir, f"{model_dir}/.checkpoints/{uid}"


@dataclass(frozen=True)
class SourceObject:
    """A PersistentVolumeClaim or ConfigMap that a request field names through a URI."""

    field: str
    uri: str
    resource: str
    namespace: str
    name: str

    def describe(self) -> str:
        kind = "PersistentVolumeClaim" if self.resource == "persistentvolumeclaims" else "ConfigMap"
        return f"{self.field}: {kind} {self.namespace}/{self.name} of {self.uri!r}"


def _source_object(field: str, uri: str, namespace: str) -> SourceObject | None:
    parsed = parse_uri(uri)
    if parsed.scheme == "pvc":
        return SourceObject(field, uri, "persistentvolumeclaims", namespace, parsed.source)
    if parsed.scheme == "configmap":
        return SourceObject(field, uri, "configmaps", namespace, parsed.source)
    return None


def source_objects(request: Mapping[str, Any], model: Mapping[str, Any] | None) -> list[SourceObject]:
    """List the PersistentVolumeClaims and ConfigMaps the Job of a request mounts, in field order."""
    namespace = request["metadata"]["namespace"]
    spec = request.get("spec") or {}
    candidates = [
        _source_object(f"spec.candidateTrainingDataSource[{index}]", uri, namespace)
        for index, uri in enumerate(spec.get("candidateTrainingDataSource") or [])
    ]
    output_uri = (spec.get("output") or {}).get("uri")
    if output_uri:
        candidates.append(_source_object("spec.output.uri", output_uri, namespace))
    artifact_uri = (((model or {}).get("spec") or {}).get("artifact") or {}).get("uri")
    if artifact_uri:
        model_namespace = ((model or {}).get("metadata") or {}).get("namespace") or namespace
        candidates.append(_source_object("spec.mLModelRef artifact.uri", artifact_uri, model_namespace))
    return [candidate for candidate in candidates if candidate is not None]


def build_trainer_config(
    request: Mapping[str, Any],
    model: Mapping[str, Any] | None,
    settings: Settings,
    attempt: int,
    mounts: _Mounts,
) -> protocol.TrainerConfig:
    """Translate a request into the document the trainer reads, collecting the volumes it needs."""
    kind = request["kind"]
    metadata = request["metadata"]
    spec = request.get("spec") or {}
    namespace = metadata["namespace"]

    data = _data_config(spec, mounts)
    base_path = base_model_path(model, mounts)
    output_uri = spec["output"]["uri"]
    _mount_source(mounts, output_uri, OUTPUT_ROOT, "output", read_only=False)
    model_dir, checkpoint_dir = output_paths(spec, metadata["uid"])

    trainer = spec.get("trainer") or {}
    termination = spec.get("terminationConditions") or {}
    requirements = [
        protocol.PerformanceRequirement(
            performanceMetric=item["performanceMetric"],
            performanceScore=item["performanceScore"],
            inferenceOutputName=item.get("inferenceOutputName"),
        )
        for item in spec.get("performanceRequirements") or []
    ]
    # The trainer appends the request's path to this base URL (see names.progress_path).
    endpoint = settings.progress_endpoint_url

    return protocol.TrainerConfig(
        request=protocol.RequestRef(kind=kind, namespace=namespace, name=metadata["name"], uid=metadata["uid"], attempt=attempt),
        task=_task(kind, spec, model),
        mLTrainingType=_training_type(kind, spec),
        aIMLInferenceName=spec["aIMLInferenceName"],
        data=data,
        model=_model_config(kind, spec, model, base_path),
        fineTuning=_fine_tuning_config(spec),
        hyperparameters=protocol.Hyperparameters(**(trainer.get("hyperparameters") or {})),
        termination=protocol.TerminationConfig(
            maxEpochs=termination.get("maxEpochs"),
            maxDurationSeconds=termination.get("maxDurationSeconds"),
            stopWhenRequirementsMet=bool(termination.get("stopWhenRequirementsMet", False)),
        ),
        performanceRequirements=requirements,
        output=protocol.OutputConfig(
            path=model_dir, checkpointPath=checkpoint_dir, checkpointIntervalSeconds=settings.checkpoint_interval_seconds
        ),
        progress=protocol.ProgressConfig(
            endpoint=endpoint,
            tokenPath=TOKEN_PATH if endpoint else None,
            minIntervalSeconds=settings.progress_patch_interval_seconds / 2,
        ),
    )


def merge_tolerations(*groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Concatenate toleration lists, dropping exact duplicates and keeping the first order."""
    merged: list[dict[str, Any]] = []
    for group in groups:
        for toleration in group:
            if toleration not in merged:
                merged.append(dict(toleration))
    return merged


def _resources(trainer: Mapping[str, Any], settings: Settings) -> tuple[dict[str, Any], int, str]:
    gpus = int(trainer.get("gpus", 1))
    gpu_resource = trainer.get("gpuResourceName") or settings.gpu_resource_name
    limits: dict[str, Any] = {}
    requests: dict[str, Any] = {}
    if gpus > 0:
        limits[gpu_resource] = str(gpus)
    for resource in ("cpu", "memory"):
        if trainer.get(resource):
            limits[resource] = str(trainer[resource])
            requests[resource] = str(trainer[resource])
    resources: dict[str, Any] = {"limits": limits}
    if requests:
        resources["requests"] = requests
    return resources, gpus, gpu_resource


def _security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": TRAINER_USER_ID,
        "runAsGroup": TRAINER_USER_ID,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _fixed_volumes(config_map: str, audience: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes = [
        {"name": "config", "configMap": {"name": config_map, "items": [{"key": protocol.CONFIG_FILE_NAME, "path": protocol.CONFIG_FILE_NAME}]}},
        {"name": "scratch", "emptyDir": {}},
        {
            "name": "progress-token",
            "projected": {
                "sources": [
                    {"serviceAccountToken": {"audience": audience, "expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}}
                ]
            },
        },
    ]
    mounts = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "scratch", "mountPath": SCRATCH_DIR},
        {"name": "progress-token", "mountPath": TOKEN_DIR, "readOnly": True},
    ]
    return volumes, mounts


def _environment() -> list[dict[str, str]]:
    values = {
        "HOME": SCRATCH_DIR,
        "TMPDIR": SCRATCH_DIR,
        "HF_HOME": f"{SCRATCH_DIR}/huggingface",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    return [{"name": key, "value": value} for key, value in values.items()]


def _pod_failure_policy() -> dict[str, Any]:
    return {
        "rules": [
            {
                # A configuration or data error cannot be fixed by a retry with the same input.
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": names.TRAINER_CONTAINER,
                    "operator": "In",
                    "values": [protocol.CONFIG_ERROR_EXIT_CODE],
                },
            },
            {
                # Evictions, preemption and node drains do not count against backoffLimit.
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            },
        ]
    }


def build_job_plan(
    request: Mapping[str, Any],
    model: Mapping[str, Any] | None,
    settings: Settings,
    attempt: int,
) -> JobPlan:
    """Build the ConfigMap and Job of one attempt of a request."""
    kind = request["kind"]
    metadata = request["metadata"]
    spec = request.get("spec") or {}
    namespace, name, uid = metadata["namespace"], metadata["name"], metadata["uid"]
    plural = names.request_kind(kind).plural

    job = job_name(kind, namespace, name, uid, attempt)
    config_name = config_map_name(job)
    labels = request_labels(kind, name, uid, attempt)
    owner = owner_reference(request)

    fixed_volumes, fixed_mounts = _fixed_volumes(config_name, names.progress_audience(namespace, plural, name))
    mounts = _Mounts(volumes=[], mounts=[])
    config = build_trainer_config(request, model, settings, attempt, mounts)

    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": config_name, "namespace": namespace, "labels": dict(labels), "ownerReferences": [owner]},
        "data": {protocol.CONFIG_FILE_NAME: config.model_dump_json(indent=2, exclude_none=True)},
    }

    trainer = spec.get("trainer") or {}
    resources, gpus, gpu_resource = _resources(trainer, settings)
    container = {
        "name": names.TRAINER_CONTAINER,
        "image": trainer.get("image") or settings.default_trainer_image,
        "imagePullPolicy": settings.trainer_image_pull_policy.value,
        "command": ["aiml-trainer"],
        "args": ["run", "--config", CONFIG_PATH],
        "env": _environment(),
        "resources": resources,
        "volumeMounts": fixed_mounts + mounts.mounts,
        "securityContext": _security_context(),
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }

    gpu_tolerations = [{"key": gpu_resource, "operator": "Exists", "effect": "NoSchedule"}] if gpus > 0 else []
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": settings.termination_grace_period_seconds,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": TRAINER_USER_ID,
            "runAsGroup": TRAINER_USER_ID,
            "fsGroup": TRAINER_USER_ID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": fixed_volumes + mounts.volumes,
    }
    if settings.trainer_service_account:
        pod_spec["serviceAccountName"] = settings.trainer_service_account
    node_selector = {**settings.default_node_selector, **(trainer.get("nodeSelector") or {})}
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    tolerations = merge_tolerations(settings.default_tolerations, trainer.get("tolerations") or [], gpu_tolerations)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    priority_class = trainer.get("priorityClassName") or settings.priority_class_name
    if priority_class:
        pod_spec["priorityClassName"] = priority_class
    runtime_class = trainer.get("runtimeClassName") or settings.runtime_class_name
    if runtime_class:
        pod_spec["runtimeClassName"] = runtime_class

    job_labels = dict(labels)
    queue = trainer.get("queueName") or settings.default_queue_name
    if queue:
        job_labels[names.LABEL_KUEUE_QUEUE] = queue

    termination = spec.get("terminationConditions") or {}
    job_spec: dict[str, Any] = {
        "completions": 1,
        "parallelism": 1,
        "backoffLimit": int(termination.get("backoffLimit", DEFAULT_BACKOFF_LIMIT)),
        "podFailurePolicy": _pod_failure_policy(),
        "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
    }
    if termination.get("maxDurationSeconds"):
        job_spec["activeDeadlineSeconds"] = int(termination["maxDurationSeconds"])
    if settings.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = settings.ttl_seconds_after_finished
    if queue:
        # Kueue admits the Job by clearing suspend; the operator never flips it itself.
        job_spec["suspend"] = True

    job_object = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job, "namespace": namespace, "labels": job_labels, "ownerReferences": [owner]},
        "spec": job_spec,
    }
    return JobPlan(job=job_object, config_map=config_map, config=config)


def render_termination_conditions(conditions: Mapping[str, Any] | None) -> str:
    """Render ``terminationConditions`` as the 3GPP string, e.g. ``maxDuration=3600s; maxEpochs=3``."""
    conditions = conditions or {}
    parts = []
    if conditions.get("maxDurationSeconds"):
        parts.append(f"maxDuration={conditions['maxDurationSeconds']}s")
    if conditions.get("maxEpochs"):
        parts.append(f"maxEpochs={conditions['maxEpochs']}")
    if conditions.get("stopWhenRequirementsMet"):
        parts.append("stopWhenRequirementsMet=true")
    parts.append(f"backoffLimit={conditions.get('backoffLimit', DEFAULT_BACKOFF_LIMIT)}")
    return "; ".join(parts)
