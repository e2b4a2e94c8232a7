"""The operator against the local cluster: each trainer failure maps to its own reason."""

from __future__ import annotations

import json
import re

import pytest
from ml_training_operator import progress

from tests.conftest import wait_for
from tests.integration.operator_harness import (  # noqa: F401  (fixtures)
    UNPULLABLE_IMAGE,
    apply,
    condition,
    crds,
    events_for,
    fine_tuning_request,
    get,
    list_jobs,
    operator,
    prepare_namespace,
    request_status,
    wait_request_status,
)

pytestmark = pytest.mark.cluster
PLURAL = "mlfinetuningrequests"


def run_until_failed(cluster, namespace, name, image, timeout=120, **spec):
    apply(cluster, fine_tuning_request(namespace, name, image=image, **spec), user="alice")
    status = wait_request_status(cluster, PLURAL, name, namespace, "FINISHED", timeout=timeout)
    assert status["process"]["progressStatus"]["status"] == "FAILED"
    assert condition(status, "Failed")["status"] == "True"
    assert condition(status, "Ready")["status"] == "False"
    return status


def test_config_error_fails_at_once(cluster, namespace, operator):
    prepare_namespace(cluster, namespace)
    status = run_until_failed(cluster, namespace, "bad-config", "aiml.mns.io/standin-trainer:config-error")
    failed = condition(status, "Failed")
    assert failed["reason"] == "ConfigurationError"
    assert failed["message"].startswith("stand-in trainer rejected its configuration on purpose")
    assert status["process"]["progressStatus"]["resultStateInfo"].startswith("ConfigurationError: ")
    jobs = list_jobs(cluster, namespace)
    assert len(jobs) == 1
    # backoffLimit is 1, but the podFailurePolicy fails the Job on exit code 78 without a retry.
    assert jobs[0]["status"].get("failed") == 1
    assert get(cluster, "mlmodel", "bad-config-model", namespace) is None


def test_crash_retried_then_reported_with_log_tail(cluster, namespace, operator):
    prepare_namespace(cluster, namespace)
    status = run_until_failed(cluster, namespace, "crashing", "aiml.mns.io/standin-trainer:crash", timeout=180)
    failed = condition(status, "Failed")
    assert failed["reason"] == "Crash"
    assert "RuntimeError: stand-in trainer crashed on purpose" in failed["message"]
    assert "Traceback" in failed["message"]
    assert "backoffLimit 1" in failed["message"]

    # The termination message is empty, so the kubelet's FallbackToLogsOnError gives the log's
    # end, and the status keeps only its bounded tail: the traceback, not the first log lines.
    result = status["process"]["progressStatus"]["resultStateInfo"]
    assert result.startswith("Crash: ")
    assert "Traceback (most recent call last):" in result
    assert "RuntimeError: stand-in trainer crashed on purpose" in result
    assert "debug line 0 before the crash" not in result
    assert len(result) <= progress.LOG_TAIL_CHARACTERS + 200
    jobs = list_jobs(cluster, namespace)
    assert len(jobs) == 1
    assert jobs[0]["status"].get("failed") == 2


def test_empty_adapter_is_a_failure(cluster, namespace, operator):
    prepare_namespace(cluster, namespace)
    status = run_until_failed(cluster, namespace, "empty", "aiml.mns.io/standin-trainer:empty-adapter")
    assert condition(status, "Failed")["reason"] == "EmptyAdapter"
    assert get(cluster, "mlmodel", "empty-model", namespace) is None


def test_image_pull_failure(cluster, namespace, operator):
    prepare_namespace(cluster, namespace)
    status = run_until_failed(cluster, namespace, "no-image", UNPULLABLE_IMAGE)
    failed = condition(status, "Failed")
    assert failed["reason"] == "ImagePullFailed"
    assert UNPULLABLE_IMAGE in failed["message"]
    # The operator deletes the Job, which would otherwise wait for the image forever.
    wait_for(lambda: list_jobs(cluster, namespace) == [], timeout=60, message="the stuck Job deleted")


def test_unschedulable_after_timeout(cluster, namespace, operator):
    prepare_namespace(cluster, namespace)
    trainer = {"image": "aiml.mns.io/standin-trainer:test", "gpus": 8}
    apply(cluster, fine_tuning_request(namespace, "too-big", trainer=trainer), user="alice")

    def pending():
        status = request_status(cluster, PLURAL, "too-big", namespace)
        progress = (status.get("process") or {}).get("progressStatus") or {}
        return status if progress.get("progressStateInfo") == "PENDING_SCHEDULING" else None

    status = wait_for(pending, timeout=60, message="PENDING_SCHEDULING")
    assert status["requestStatus"] == "IN_PROGRESS"
    assert status["process"]["progressStatus"]["status"] == "WAITING"

    final = wait_request_status(cluster, PLURAL, "too-big", namespace, "FINISHED", timeout=90)
    failed = condition(final, "Failed")
    assert failed["reason"] == "Unschedulable"
    assert "nvidia.com/gpu" in failed["message"]


def test_missing_config_map_waits_then_runs(cluster, namespace, operator):
    prepare_namespace(cluster, namespace)
    body = fine_tuning_request(namespace, "early", candidateTrainingDataSource=["configmap://later-data/train.csv"])
    apply(cluster, body, user="alice")

    def waiting():
        status = request_status(cluster, PLURAL, "early", namespace)
        progress = (status.get("process") or {}).get("progressStatus") or {}
        return status if progress.get("progressStateInfo") == "WAITING_FOR_DATA" else None

    status = wait_for(waiting, timeout=60, message="WAITING_FOR_DATA")
    assert status["requestStatus"] == "NOT_STARTED"
    job_created = condition(status, "JobCreated")
    assert job_created["status"] == "False"
    assert job_created["reason"] == "DataSourceNotFound"
    assert "spec.candidateTrainingDataSource[0]" in job_created["message"]
    assert "configmap://later-data/train.csv" in job_created["message"]
    assert list_jobs(cluster, namespace) == []
    warnings = [event for event in events_for(cluster, namespace, "early") if event["type"] == "Warning"]
    assert any(event["reason"] == "DataSourceNotFound" for event in warnings), warnings

    data = get(cluster, "configmap", "train-data", namespace)
    apply(cluster, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "later-data", "namespace": namespace}, "data": data["data"]})
    final = wait_request_status(cluster, PLURAL, "early", namespace, "FINISHED", timeout=120)
    assert condition(final, "Succeeded")["status"] == "True"
    assert condition(final, "JobCreated")["status"] == "True"
    assert len(list_jobs(cluster, namespace)) == 1


def quota(cluster, namespace, name, hard):
    cluster.kubectl(
        "apply", "-f", "-",
        input=json.dumps({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name, "namespace": namespace}, "spec": {"hard": hard}}),
    )


def creation_retry_delays(operator):
    """Return the delays of the operator's Job creation retries, in log order."""
    text = operator.log_path.read_text(errors="replace")
    return [float(delay) for delay in re.findall(r"retrying the Job creation in ([0-9.]+)s", text)]


def test_job_creation_refused_then_retried(cluster, namespace, operator):
    prepare_namespace(cluster, namespace)
    quota(cluster, namespace, "no-jobs", {"count/jobs.batch": "0"})
    apply(cluster, fine_tuning_request(namespace, "quota-bound"), user="alice")

    def refused():
        status = request_status(cluster, PLURAL, "quota-bound", namespace)
        return status if condition(status, "JobCreated").get("status") == "False" else None

    status = wait_for(refused, timeout=60, message="JobCreated=False")
    job_created = condition(status, "JobCreated")
    assert job_created["reason"] == "Forbidden"
    assert "exceeded quota" in job_created["message"]
    assert status["requestStatus"] == "NOT_STARTED"
    assert condition(status, "Authorized")["status"] == "True"

    # The operator retries with a doubling delay (AIML_API_RETRY_SECONDS is 2 in the tests).
    delays = wait_for(lambda: creation_retry_delays(operator) if len(creation_retry_delays(operator)) >= 3 else None,
                      timeout=60, message="three Job creation retries in the operator log")
    assert delays[:3] == [2.0, 4.0, 8.0]

    cluster.kubectl("delete", "resourcequota", "no-jobs", "-n", namespace)
    final = wait_request_status(cluster, PLURAL, "quota-bound", namespace, "FINISHED", timeout=120)
    assert condition(final, "Succeeded")["status"] == "True"
    assert condition(final, "JobCreated")["status"] == "True"


def test_gpu_quota_names_the_refusal(cluster, namespace, operator):
    prepare_namespace(cluster, namespace)
    quota(cluster, namespace, "no-gpus", {"requests.nvidia.com/gpu": "0"})
    apply(cluster, fine_tuning_request(namespace, "gpu-bound"), user="alice")

    def named():
        status = request_status(cluster, PLURAL, "gpu-bound", namespace)
        return status if condition(status, "Ready").get("reason") == "PodCreationFailed" else None

    status = wait_for(named, timeout=60, message="Ready reason PodCreationFailed")
    assert "exceeded quota" in condition(status, "Ready")["message"]
    assert condition(status, "Running")["status"] == "False"
    cluster.kubectl("patch", PLURAL, "gpu-bound", "-n", namespace, "--type=merge", "-p", '{"spec":{"cancelRequest":true}}')
    wait_request_status(cluster, PLURAL, "gpu-bound", namespace, "CANCELLED", timeout=60)
