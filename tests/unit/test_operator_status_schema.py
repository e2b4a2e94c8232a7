"""Every status field the operator writes exists in the CRD schema, so the API server keeps it.

The API server prunes status fields that a CRD does not declare, without an error. The
static walk in ``test_api_crds.py`` compares the pydantic status model with the CRD; this
test compares what the operator actually sends. It runs the reconciler against an
in-memory API server through many scenarios: waiting (for data too), running, progress events, success,
every failure reason, suspend and resume, cancel, Kueue admission and authorization denial.
It records every status patch and looks up each JSON path in the generated CRD in ``crds/``.
It also checks that Kopf's own bookkeeping goes to annotations, not to the status.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import logging
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kopf
import pytest
import yaml

from ml_training_operator import handlers, names, progress, protocol
from ml_training_operator.kube import ApiError, Kube
from ml_training_operator.reconciler import Context, reconcile
from ml_training_operator.settings import Settings
from tests.unit.operator_fixtures import base_model, fine_tuning_request, training_request

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"
IMAGE = "aiml.mns.io/standin-trainer:test"
# Pod start times well in the past, so an unschedulable Pod is past the timeout at once.
LONG_AGO = "2020-01-01T00:00:00Z"


class FakeApiServer(Kube):
    """The Kube client over an in-memory object store: enough of the API for one reconciliation.

    Every merge patch to a ``/status`` subresource is recorded with its kind.
    """

    def __init__(self) -> None:
        super().__init__(api_client=None)
        self.objects: dict[str, dict[str, Any]] = {}
        self.status_patches: list[tuple[str, dict[str, Any]]] = []
        self.allowed = True
        self.reject_jobs: ApiError | None = None
        self._versions = itertools.count(1)

    def put(self, collection: str, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        metadata = obj.setdefault("metadata", {})
        metadata.setdefault("uid", f"uid-{next(self._versions)}")
        metadata["resourceVersion"] = str(next(self._versions))
        metadata.setdefault("creationTimestamp", progress.format_time(datetime.now(timezone.utc)))
        self.objects[f"{collection}/{metadata['name']}"] = obj
        return copy.deepcopy(obj)

    async def request(self, method: str, path: str, body: Any = None, query: Mapping[str, Any] | None = None,
                      content_type: str = "application/json") -> dict[str, Any]:
        path = urlsplit(path).path
        if method == "POST" and path.endswith(("subjectaccessreviews", "tokenreviews", "selfsubjectreviews")):
            return {**body, "status": {"allowed": self.allowed, "reason": "" if self.allowed else "no RoleBinding"}}
        if method == "POST":
            if "/jobs" in path and self.reject_jobs is not None:
                raise self.reject_jobs
            if f"{path}/{body['metadata']['name']}" in self.objects:
                raise ApiError(409, "AlreadyExists", "exists", method, path)
            return self.put(path, body)
        if method == "GET":
            if path in self.objects:
                return copy.deepcopy(self.objects[path])
            items = [copy.deepcopy(obj) for key, obj in self.objects.items() if key.rsplit("/", 1)[0] == path]
            if items or path.endswith(("/pods", "/events", "/jobs", "/configmaps")):
                return {"items": [item for item in items if _selected(item, query or {})]}
            raise ApiError(404, "NotFound", f"{path} not found", method, path)
        if method == "DELETE":
            if self.objects.pop(path, None) is None:
                raise ApiError(404, "NotFound", f"{path} not found", method, path)
            return {}
        if method == "PATCH" and path.endswith("/status"):
            target = self.objects[path.removesuffix("/status")]
            self.status_patches.append((target["kind"], copy.deepcopy(body["status"])))
            target["status"] = apply_merge_patch(target.get("status") or {}, body["status"])
            target["metadata"]["resourceVersion"] = str(next(self._versions))
            return copy.deepcopy(target)
        raise AssertionError(f"unexpected call {method} {path}")


def _selected(obj: Mapping[str, Any], query: Mapping[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in filter(None, str(query.get("labelSelector") or "").split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    for key, values in parse_qs(str(query.get("fieldSelector") or "")).items():
        if key == "involvedObject.uid" and (obj.get("involvedObject") or {}).get("uid") != values[0]:
            return False
    return True


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 merge patch."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


class Scenario:
    """One request reconciled against the fake API server, with helpers to move its Job along."""

    def __init__(self, body: dict[str, Any], kind: names.Kind, **settings: Any) -> None:
        self.api = FakeApiServer()
        self.kind = kind
        self.seen: set[progress.Phase | None] = set()
        self.namespace = body["metadata"]["namespace"]
        self.name = body["metadata"]["name"]
        body["spec"].setdefault("trainer", {})["image"] = IMAGE
        body["metadata"]["annotations"] = fine_tuning_request()["metadata"]["annotations"]
        self.api.put(self.api.custom_path(self.namespace, kind.plural), {**body, "status": {}})
        model = base_model()
        self.api.put(self.api.custom_path(model["metadata"]["namespace"], names.ML_MODEL.plural), model)
        for claim in ("datasets", "models-out"):
            self.api.put(self.api.core_path(self.namespace, "persistentvolumeclaims"), {"kind": "PersistentVolumeClaim", "metadata": {"name": claim}})
        self.api.put(self.api.core_path(self.namespace, "configmaps"), {"kind": "ConfigMap", "metadata": {"name": "extra"}})
        options = {"trainer_images": [IMAGE], "unschedulable_timeout_seconds": 60, **settings}
        self.context = Context(kube=self.api, settings=Settings(**options))

    @property
    def request(self) -> dict[str, Any]:
        return self.api.objects[self.api.custom_path(self.namespace, self.kind.plural, self.name)]

    @property
    def phase(self) -> progress.Phase | None:
        return progress.phase_of(self.request.get("status"))

    def reconcile(self) -> progress.Phase | None:
        asyncio.run(reconcile(self.context, self.kind, self.namespace, self.name, logging.getLogger("test")))
        self.seen.add(self.phase)
        return self.phase

    def job(self) -> dict[str, Any]:
        prefix = self.api.job_path(self.namespace) + "/"
        (job,) = [obj for key, obj in self.api.objects.items() if key.startswith(prefix)]
        return job

    def job_status(self, **status: Any) -> None:
        self.job()["status"] = status

    def job_condition(self, condition_type: str, reason: str = "", message: str = "") -> None:
        condition = {"type": condition_type, "status": "True", "reason": reason, "message": message, "lastTransitionTime": LONG_AGO}
        self.job().setdefault("status", {}).setdefault("conditions", []).append(condition)

    def pod(self, phase: str, state: dict[str, Any] | None = None, conditions: list[dict[str, Any]] | None = None) -> None:
        job = self.job()
        pod = {
            "kind": "Pod",
            "metadata": {
                "name": f"{job['metadata']['name']}-pod",
                "labels": {names.LABEL_JOB_NAME: job["metadata"]["name"]},
                "ownerReferences": [{"uid": job["metadata"]["uid"], "controller": True}],
                "creationTimestamp": LONG_AGO,
            },
            "status": {
                "phase": phase,
                "startTime": LONG_AGO,
                "conditions": conditions or [],
                "containerStatuses": [{"name": names.TRAINER_CONTAINER, "image": IMAGE, "state": state or {}}],
            },
        }
        self.api.objects.pop(self.api.core_path(self.namespace, "pods", pod["metadata"]["name"]), None)
        self.api.put(self.api.core_path(self.namespace, "pods"), pod)

    def terminated(self, phase: str, exit_code: int, message: str = "", reason: str = "Error") -> None:
        self.pod(phase, {"terminated": {"exitCode": exit_code, "message": message, "reason": reason}})

    def patch_spec(self, **fields: Any) -> None:
        self.request["spec"].update(fields)
        self.request["metadata"]["generation"] = self.request["metadata"].get("generation", 1) + 1

    def progress_event(self) -> None:
        """Write a progress event the way the status endpoint does: a merge patch of status.process."""
        event = protocol.ProgressEvent.model_validate(
            {
                "phase": "TRAINING", "progressPercentage": 40, "epoch": 1, "totalEpochs": 2, "step": 4, "totalSteps": 10,
                "loss": 0.5, "etaSeconds": 12.0, "device": "cuda:0", "precision": "BF16", "metrics": {"ACCURACY": 0.7, "F1": 0.6},
            }
        )
        patch = {"process": progress.apply_progress_event(self.request.get("status"), event)}
        self.api.status_patches.append((self.kind.kind, copy.deepcopy(patch)))
        self.request["status"] = apply_merge_patch(self.request.get("status") or {}, patch)


def full_report(**values: Any) -> str:
    report = {
        "type": "report", "outcome": "SUCCEEDED", "message": "trained", "trainedTensors": 8,
        "modelPerformanceTraining": [{"performanceMetric": "ACCURACY", "performanceScore": 0.9}],
        "modelPerformanceValidation": [
            {"performanceMetric": "ACCURACY", "performanceScore": 0.85},
            {"performanceMetric": "F1", "performanceScore": 0.8, "inferenceOutputName": "label"},
        ],
        "modelConfidenceIndication": 80, "areNewTrainingDataUsed": True, "dataRatioTrainingAndValidation": 75,
        "trainableParameters": 1000, "totalParameters": 100000, "artifactFormat": "PEFT_ADAPTER", "device": "cuda:0",
        "precision": "BF16", "durationSeconds": 30.0, "stopReason": "REQUIREMENTS_MET", "steps": 10,
    }
    report.update(values)
    return json.dumps(report)


def started(body: dict[str, Any] | None = None, kind: names.Kind = names.FINE_TUNING_REQUEST, **settings: Any) -> Scenario:
    scenario = Scenario(body or fine_tuning_request(), kind, **settings)
    assert scenario.reconcile() is progress.Phase.STARTING
    return scenario


def scenario_success() -> Iterator[Scenario]:
    for body, kind in ((fine_tuning_request(), names.FINE_TUNING_REQUEST), (training_request(), names.TRAINING_REQUEST)):
        scenario = started(body, kind)
        scenario.pod("Pending", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/2 nodes", "lastTransitionTime": progress.format_time(datetime.now(timezone.utc))}])
        assert scenario.reconcile() is progress.Phase.PENDING_SCHEDULING
        scenario.pod("Pending", {"waiting": {"reason": "ContainerCreating"}}, [{"type": "PodScheduled", "status": "True"}])
        assert scenario.reconcile() is progress.Phase.STARTING
        scenario.pod("Running", {"running": {"startedAt": LONG_AGO}})
        assert scenario.reconcile() is progress.Phase.RUNNING
        scenario.progress_event()
        assert scenario.reconcile() is progress.Phase.RUNNING
        scenario.terminated("Succeeded", 0, full_report(), reason="Completed")
        scenario.job_condition("Complete")
        assert scenario.reconcile() is progress.Phase.SUCCEEDED
        assert scenario.request["status"]["report"]["mLModelGeneratedRef"]["name"]
        scenario.patch_spec(suspendRequest=False)
        assert scenario.reconcile() is progress.Phase.SUCCEEDED
        yield scenario


def scenario_failures() -> Iterator[Scenario]:
    def failed_job(pod_phase: str, exit_code: int, message: str = "", reason: str = "Error", job_reason: str = "BackoffLimitExceeded") -> Scenario:
        scenario = started()
        scenario.terminated(pod_phase, exit_code, message, reason)
        scenario.job_condition("Failed", job_reason, "the Job failed")
        return scenario

    cases = {
        "ConfigurationError": failed_job("Failed", protocol.CONFIG_ERROR_EXIT_CODE, json.dumps({"type": "report", "outcome": "CONFIG_ERROR", "message": "bad column"}), job_reason="PodFailurePolicy"),
        "Crash": failed_job("Failed", 1, "Traceback (most recent call last):\nRuntimeError: boom"),
        "OOMKilled": failed_job("Failed", 137, reason="OOMKilled"),
        "DeadlineExceeded": failed_job("Failed", 143, job_reason="DeadlineExceeded"),
        "BackoffLimitExceeded": failed_job("Failed", 0),
        "JobFailed": failed_job("Failed", 0, job_reason="Evicted"),
    }
    image = started()
    image.pod("Pending", {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}, [{"type": "PodScheduled", "status": "True"}])
    cases["ImagePullFailed"] = image
    unschedulable = started()
    unschedulable.pod("Pending", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/2 nodes", "lastTransitionTime": LONG_AGO}])
    cases["Unschedulable"] = unschedulable
    for reason, report in (("EmptyAdapter", full_report(trainedTensors=0)), ("ReportMissing", ""), ("TrainerFailed", full_report(outcome="FAILED"))):
        scenario = started()
        scenario.terminated("Succeeded", 0, report, reason="Completed")
        scenario.job_condition("Complete")
        cases[reason] = scenario
    conflict = started()
    conflict.terminated("Succeeded", 0, full_report(), reason="Completed")
    conflict.job_condition("Complete")
    foreign_model = {"kind": "MLModel", "metadata": {"name": f"{conflict.name}-model"}, "spec": {"trainingRequestRef": {"kind": "MLFineTuningRequest", "name": "other", "namespace": conflict.namespace}}}
    conflict.api.put(conflict.api.custom_path(conflict.namespace, names.ML_MODEL.plural), foreign_model)
    cases["OutputModelConflict"] = conflict

    for reason, scenario in cases.items():
        assert scenario.reconcile() is progress.Phase.FAILED, reason
        assert progress.get_condition(scenario.request["status"], "Failed")["reason"] == reason
        yield scenario


def scenario_waiting() -> Iterator[Scenario]:
    missing = fine_tuning_request()
    missing["spec"]["mLModelRef"] = {"name": "absent", "namespace": "models"}
    scenario = Scenario(missing, names.FINE_TUNING_REQUEST)
    assert scenario.reconcile() is progress.Phase.NOT_STARTED
    yield scenario

    rejected = Scenario(fine_tuning_request(), names.FINE_TUNING_REQUEST)
    rejected.api.reject_jobs = ApiError(403, "Forbidden", "exceeded quota: count/jobs.batch=0", "POST", "jobs")
    assert rejected.reconcile() is progress.Phase.JOB_CREATE_FAILED
    rejected.api.reject_jobs = None
    assert rejected.reconcile() is progress.Phase.STARTING
    yield rejected

    no_data = Scenario(fine_tuning_request(), names.FINE_TUNING_REQUEST)
    no_data.api.objects.pop(no_data.api.core_path(no_data.namespace, "configmaps", "extra"))
    assert no_data.reconcile() is progress.Phase.WAITING_FOR_DATA
    assert progress.get_condition(no_data.request["status"], "JobCreated")["reason"] == "DataSourceNotFound"
    no_data.api.put(no_data.api.core_path(no_data.namespace, "configmaps"), {"kind": "ConfigMap", "metadata": {"name": "extra"}})
    assert no_data.reconcile() is progress.Phase.STARTING
    yield no_data

    data_expired = Scenario(fine_tuning_request(), names.FINE_TUNING_REQUEST, data_source_grace_seconds=0)
    data_expired.api.objects.pop(data_expired.api.core_path(data_expired.namespace, "persistentvolumeclaims", "models-out"))
    assert data_expired.reconcile() is progress.Phase.FAILED
    assert progress.get_condition(data_expired.request["status"], "Failed")["reason"] == "DataSourceNotFound"
    data_expired.api.put(data_expired.api.core_path(data_expired.namespace, "persistentvolumeclaims"), {"kind": "PersistentVolumeClaim", "metadata": {"name": "models-out"}})
    data_expired.patch_spec(trainer={"image": IMAGE, "gpus": 1, "hyperparameters": {"epochs": 1}})
    assert data_expired.reconcile() is progress.Phase.STARTING
    yield data_expired

    quota_refused = started()
    event = {"kind": "Event", "metadata": {"name": "e1"}, "reason": "FailedCreate", "message": "exceeded quota: requests.nvidia.com/gpu",
             "involvedObject": {"uid": quota_refused.job()["metadata"]["uid"]}, "lastTimestamp": LONG_AGO}
    quota_refused.api.put(quota_refused.api.core_path(quota_refused.namespace, "events"), event)
    assert quota_refused.reconcile() is progress.Phase.STARTING
    assert progress.get_condition(quota_refused.request["status"], "Ready")["reason"] == "PodCreationFailed"
    yield quota_refused


def scenario_control() -> Iterator[Scenario]:
    suspended = started()
    suspended.pod("Running", {"running": {"startedAt": LONG_AGO}})
    assert suspended.reconcile() is progress.Phase.RUNNING
    suspended.patch_spec(suspendRequest=True)
    assert suspended.reconcile() is progress.Phase.SUSPENDING
    assert suspended.reconcile() is progress.Phase.SUSPENDED
    suspended.patch_spec(suspendRequest=False)
    assert suspended.reconcile() is progress.Phase.STARTING
    assert suspended.request["status"]["process"]["attempt"] == 2
    yield suspended

    cancelled = started()
    cancelled.patch_spec(cancelRequest=True)
    assert cancelled.reconcile() is progress.Phase.CANCELLING
    assert cancelled.reconcile() is progress.Phase.CANCELLED
    yield cancelled

    queued = fine_tuning_request()
    queued["spec"]["trainer"]["queueName"] = "gpu-queue"
    kueue = Scenario(queued, names.FINE_TUNING_REQUEST)
    assert kueue.reconcile() is progress.Phase.WAITING_FOR_ADMISSION
    assert kueue.job()["spec"]["suspend"] is True
    kueue.job()["spec"]["suspend"] = False
    kueue.pod("Running", {"running": {"startedAt": LONG_AGO}})
    assert kueue.reconcile() is progress.Phase.RUNNING
    assert progress.get_condition(kueue.request["status"], "Admitted")["status"] == "True"
    yield kueue


def scenario_unauthorized() -> Iterator[Scenario]:
    denied = Scenario(fine_tuning_request(), names.FINE_TUNING_REQUEST)
    denied.api.allowed = False
    assert denied.reconcile() is progress.Phase.UNAUTHORIZED
    yield denied

    expired = Scenario(fine_tuning_request(), names.FINE_TUNING_REQUEST, authorization_grace_seconds=0)
    expired.api.allowed = False
    assert expired.reconcile() is progress.Phase.FAILED
    assert progress.get_condition(expired.request["status"], "Failed")["reason"] == "Forbidden"
    expired.patch_spec(trainer={"image": IMAGE, "gpus": 1, "hyperparameters": {"epochs": 1}})
    expired.api.allowed = True
    assert expired.reconcile() is progress.Phase.STARTING
    yield expired


SCENARIOS = {
    "success": scenario_success,
    "failures": scenario_failures,
    "waiting": scenario_waiting,
    "control": scenario_control,
    "unauthorized": scenario_unauthorized,
}


def json_paths(value: Any, prefix: str = "") -> Iterator[str]:
    """Yield the path of every field in a JSON document; list items are ``[]``."""
    if isinstance(value, Mapping):
        for key, child in value.items():
            path = f"{prefix}.{key}"
            yield path
            yield from json_paths(child, path)
    elif isinstance(value, list):
        for item in value:
            yield from json_paths(item, prefix + "[]")


def schema_has(schema: Mapping[str, Any], path: str) -> bool:
    """Tell whether a path from ``json_paths`` is declared, through properties, items and maps."""
    node = schema
    for part in path.replace("[]", ".[]").strip(".").split("."):
        if part == "[]":
            if node.get("type") != "array":
                return False
            node = node["items"]
        elif part in (node.get("properties") or {}):
            node = node["properties"][part]
        elif isinstance(node.get("additionalProperties"), Mapping):
            node = node["additionalProperties"]
        else:
            return False
    return True


def status_schema(kind: str) -> Mapping[str, Any]:
    kinds = {names.FINE_TUNING_REQUEST.kind: names.FINE_TUNING_REQUEST, names.TRAINING_REQUEST.kind: names.TRAINING_REQUEST}
    crd = yaml.safe_load((CRD_DIR / f"{kinds[kind].plural}.{names.GROUP}.yaml").read_text())
    (version,) = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]["properties"]["status"]


@pytest.fixture(autouse=True)
def no_events(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    posted: list[dict[str, Any]] = []
    monkeypatch.setattr(kopf, "event", lambda body, **event: posted.append(event))
    return posted


@pytest.mark.parametrize("name", SCENARIOS)
def test_written_status_paths_in_crd(name: str) -> None:
    written: dict[str, set[str]] = {}
    for scenario in SCENARIOS[name]():
        for kind, patch in scenario.api.status_patches:
            written.setdefault(kind, set()).update(json_paths(patch))
        written.setdefault(scenario.kind.kind, set()).update(json_paths(scenario.request["status"]))

    assert written
    for kind, paths in written.items():
        schema = status_schema(kind)
        undeclared = sorted(path for path in paths if not schema_has(schema, path))
        assert undeclared == [], f"{kind} status paths the API server would prune"


def test_scenarios_cover_every_phase_and_reason() -> None:
    phases: set[progress.Phase] = set()
    reasons: set[str] = set()
    for make in SCENARIOS.values():
        for scenario in make():
            phases.update(scenario.seen)
            failed = progress.get_condition(scenario.request["status"], "Failed") or {}
            if failed.get("status") == "True":
                reasons.add(failed["reason"])

    assert phases == set(progress.Phase)
    expected = {reason.value for reason in progress.FailureReason} | {"OutputModelConflict"}
    assert expected - reasons == set()


def test_schema_lookup_rejects_undeclared_path() -> None:
    schema = status_schema(names.FINE_TUNING_REQUEST.kind)
    assert schema_has(schema, ".process.progressStatus.progressStateInfo")
    assert schema_has(schema, ".process.interimMetrics.ACCURACY")
    assert schema_has(schema, ".conditions[].lastTransitionTime")
    assert not schema_has(schema, ".process.progressStatus.unknownField")
    assert not schema_has(schema, ".kopf.progress")


def test_kopf_bookkeeping_stays_out_of_status() -> None:
    kopf_settings = kopf.OperatorSettings()
    handlers.configure_kopf(kopf_settings, Settings(webhook_mode="none"))
    body = kopf.Body({"apiVersion": names.API_VERSION, "kind": names.FINE_TUNING_REQUEST.kind, "metadata": {"name": "r", "namespace": "n"}})
    patch = kopf.Patch()
    record = {"started": "2030-01-01T00:00:00", "success": True, "retries": 1}
    kopf_settings.persistence.progress_storage.store(key=kopf.HandlerId("reconcile"), record=record, body=body, patch=patch)
    kopf_settings.persistence.diffbase_storage.store(body=body, patch=patch, essence={"spec": {"a": 1}})

    assert "status" not in patch
    assert patch["metadata"]["annotations"]
    assert all(key.startswith(names.KOPF_STORAGE_PREFIX) for key in patch["metadata"]["annotations"])
