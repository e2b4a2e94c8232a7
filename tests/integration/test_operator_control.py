"""The operator against the local cluster: cancel, suspend and resume, deletion, restarts."""

from __future__ import annotations

import json
import os
import threading
import time

from kubernetes import client
from kubernetes import watch as kubernetes_watch

import pytest

from tests.conftest import wait_for
from tests.integration.operator_harness import (  # noqa: F401  (fixtures)
    apply,
    condition,
    pause,
    crds,
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
SLOW = "aiml.mns.io/standin-trainer:slow"


def patch_spec(cluster, namespace, name, **fields):
    cluster.kubectl("patch", PLURAL, name, "-n", namespace, "--type=merge", "-p", json.dumps({"spec": fields}), user="alice")


def percentage(status):
    return ((status.get("process") or {}).get("progressStatus") or {}).get("progressPercentage") or 0


def wait_progress(cluster, namespace, name, minimum, timeout=90):
    def reached():
        status = request_status(cluster, PLURAL, name, namespace)
        return status if status.get("requestStatus") == "IN_PROGRESS" and percentage(status) >= minimum else None

    return wait_for(reached, timeout=timeout, message=f"progress of {name} at {minimum}% or more")


class StatusWatch(threading.Thread):
    """Records the requestStatus of every version of one request until a given value appears."""

    def __init__(self, cluster, namespace: str, name: str, until: str, timeout: float) -> None:
        super().__init__(daemon=True)
        self.api = client.CustomObjectsApi(cluster.api_client())
        self.namespace, self.name, self.until, self.timeout = namespace, name, until, timeout
        self.statuses: list[str] = []
        self.started_watch = threading.Event()

    def run(self) -> None:
        watch = kubernetes_watch.Watch()
        deadline = time.monotonic() + self.timeout
        stream = watch.stream(
            self.api.list_namespaced_custom_object, "aiml.mns.io", "v1alpha1", self.namespace, PLURAL,
            field_selector=f"metadata.name={self.name}", timeout_seconds=int(self.timeout),
        )
        for event in stream:
            value = ((event["object"].get("status") or {}).get("requestStatus")) or ""
            if not self.statuses or self.statuses[-1] != value:
                self.statuses.append(value)
            # The first event is the object as it is now, so later changes cannot be missed.
            self.started_watch.set()
            if value == self.until or time.monotonic() > deadline:
                watch.stop()
                return


def watch_request_statuses(cluster, namespace: str, name: str, until: str, timeout: float) -> StatusWatch:
    recorder = StatusWatch(cluster, namespace, name, until, timeout)
    recorder.start()
    recorder.started_watch.wait(10)
    return recorder


def config_maps(cluster, namespace):
    items = json.loads(cluster.kubectl("get", "configmaps", "-n", namespace, "-l", "aiml.mns.io/request-uid", "-o", "json").stdout)["items"]
    return [item["metadata"]["name"] for item in items]


def test_cancel_stops_the_trainer(cluster, namespace, operator):
    prepare_namespace(cluster, namespace)
    apply(cluster, fine_tuning_request(namespace, "to-cancel", image=SLOW), user="alice")
    wait_progress(cluster, namespace, "to-cancel", 10)

    # CANCELLING may last only milliseconds, so a watch records every status the operator writes.
    seen = watch_request_statuses(cluster, namespace, "to-cancel", until="CANCELLED", timeout=90)
    patch_spec(cluster, namespace, "to-cancel", cancelRequest=True)
    seen.join(timeout=95)

    status = request_status(cluster, PLURAL, "to-cancel", namespace)
    assert status.get("requestStatus") == "CANCELLED", seen.statuses
    assert "CANCELLING" in seen.statuses
    assert status["process"]["progressStatus"]["status"] == "CANCELLED"
    assert condition(status, "Cancelled")["status"] == "True"
    assert list_jobs(cluster, namespace) == []
    assert get(cluster, "mlmodel", "to-cancel-model", namespace) is None


def test_suspend_then_resume_from_checkpoint(cluster, namespace, operator):
    prepare_namespace(cluster, namespace)
    apply(cluster, fine_tuning_request(namespace, "pausable", image=SLOW), user="alice")
    before = wait_progress(cluster, namespace, "pausable", 30)
    first_job = before["process"]["jobRef"]["name"]

    patch_spec(cluster, namespace, "pausable", suspendRequest=True)
    suspended = wait_request_status(cluster, PLURAL, "pausable", namespace, "SUSPENDED", timeout=90)
    assert suspended["process"]["progressStatus"]["status"] == "SUSPENDED"
    assert condition(suspended, "Suspended")["status"] == "True"
    assert list_jobs(cluster, namespace) == []

    patch_spec(cluster, namespace, "pausable", suspendRequest=False)
    final = wait_request_status(cluster, PLURAL, "pausable", namespace, "FINISHED", timeout=180)
    assert condition(final, "Succeeded")["status"] == "True"
    assert final["process"]["attempt"] == 2
    assert final["process"]["jobRef"]["name"] != first_job
    assert "resumed from step" in final["process"]["progressStatus"]["resultStateInfo"]
    assert condition(final, "Suspended")["status"] == "False"
    assert [job["metadata"]["name"] for job in list_jobs(cluster, namespace)] == [final["process"]["jobRef"]["name"]]


def test_delete_removes_job_and_config_map(cluster, namespace, operator):
    prepare_namespace(cluster, namespace)
    apply(cluster, fine_tuning_request(namespace, "short-lived", image=SLOW), user="alice")
    wait_progress(cluster, namespace, "short-lived", 5)
    assert len(list_jobs(cluster, namespace)) == 1
    assert len(config_maps(cluster, namespace)) == 1

    cluster.kubectl("delete", PLURAL, "short-lived", "-n", namespace, "--timeout=60s", user="alice")
    wait_for(lambda: list_jobs(cluster, namespace) == [], timeout=60, message="the Job deleted")
    assert config_maps(cluster, namespace) == []


def test_delete_does_not_hang_when_job_is_gone(cluster, namespace, operator):
    prepare_namespace(cluster, namespace)
    apply(cluster, fine_tuning_request(namespace, "finished"), user="alice")
    wait_request_status(cluster, PLURAL, "finished", namespace, "FINISHED", timeout=120)
    cluster.kubectl("delete", "jobs", "--all", "-n", namespace, "--cascade=background")
    cluster.kubectl("delete", "configmaps", "-n", namespace, "-l", "aiml.mns.io/request-uid")
    cluster.kubectl("delete", PLURAL, "finished", "-n", namespace, "--timeout=60s", user="alice")
    assert get(cluster, PLURAL, "finished", namespace) is None
    # The produced model outlives its request.
    assert get(cluster, "mlmodel", "finished-model", namespace) is not None


def test_operator_killed_mid_run_adopts_job(cluster, namespace, operator):
    prepare_namespace(cluster, namespace)
    apply(cluster, fine_tuning_request(namespace, "survivor", image=SLOW), user="alice")
    running = wait_progress(cluster, namespace, "survivor", 10)
    job_uid = running["process"]["jobRef"]["uid"]

    operator.kill()
    operator.start()
    final = wait_request_status(cluster, PLURAL, "survivor", namespace, "FINISHED", timeout=180)
    assert condition(final, "Succeeded")["status"] == "True"
    jobs = list_jobs(cluster, namespace)
    assert len(jobs) == 1
    assert jobs[0]["metadata"]["uid"] == job_uid
    assert final["process"]["attempt"] == 1


def test_apiserver_restart_mid_run(cluster, namespace, operator):
    prepare_namespace(cluster, namespace)
    apply(cluster, fine_tuning_request(namespace, "weathered", image=SLOW), user="alice")
    wait_progress(cluster, namespace, "weathered", 10)

    cluster.restart_apiserver()
    final = wait_request_status(cluster, PLURAL, "weathered", namespace, "FINISHED", timeout=240)
    assert condition(final, "Succeeded")["status"] == "True"
    assert len(list_jobs(cluster, namespace)) == 1
    assert final["report"]["mLModelGeneratedRef"]["name"] == "weathered-model"


def test_kueue_queue_waits_for_admission(cluster, namespace, operator):
    # No Kueue runs in the test cluster, so the Job stays suspended: the request must say so,
    # and the operator must leave the Job's suspend field to Kueue.
    prepare_namespace(cluster, namespace)
    trainer = {"image": "aiml.mns.io/standin-trainer:test", "gpus": 1, "queueName": "gpu-queue"}
    apply(cluster, fine_tuning_request(namespace, "queued", trainer=trainer), user="alice")

    def waiting():
        status = request_status(cluster, PLURAL, "queued", namespace)
        progress = (status.get("process") or {}).get("progressStatus") or {}
        return status if progress.get("progressStateInfo") == "WAITING_FOR_ADMISSION" else None

    status = wait_for(waiting, timeout=60, message="WAITING_FOR_ADMISSION")
    assert status["requestStatus"] == "IN_PROGRESS"
    assert status["process"]["progressStatus"]["status"] == "WAITING"
    assert condition(status, "Admitted")["status"] == "False"
    assert "gpu-queue" in condition(status, "Admitted")["message"]
    job = list_jobs(cluster, namespace)[0]
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"

    patch_spec(cluster, namespace, "queued", suspendRequest=True)
    suspended = wait_request_status(cluster, PLURAL, "queued", namespace, "SUSPENDED", timeout=60)
    assert condition(suspended, "Suspended")["status"] == "True"
    assert list_jobs(cluster, namespace) == []


def watch_relists(operator):
    return operator.log_path.read_text(errors="replace").count("watch expired (410 Gone), listing again")


def cpu_seconds(pid):
    """Return the user plus system CPU time of a process, from /proc/<pid>/stat."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_watch_expiry_relists_and_goes_on(cluster, namespace, operator):
    # The operator's watches hold resourceVersions from this first request. etcd is compacted
    # past them while kube-apiserver is down, so each watch's reconnect gets 410 Gone.
    prepare_namespace(cluster, namespace)
    apply(cluster, fine_tuning_request(namespace, "before"), user="alice")
    wait_request_status(cluster, PLURAL, "before", namespace, "FINISHED", timeout=120)
    assert watch_relists(operator) == 0

    cluster.restart_apiserver_with_compaction()
    wait_for(lambda: watch_relists(operator) > 0, timeout=90, message="a watch restart after 410 Gone in the operator log")

    # Right after the restart the webhook's own calls to kube-apiserver may still fail, so the
    # consumer retries the create as any client would; what is under test is the re-list.
    manifest = json.dumps(fine_tuning_request(namespace, "after"))

    def created() -> bool:
        result = cluster.kubectl("create", "-f", "-", "-o", "json", user="alice", input=manifest, check=False)
        return result.returncode == 0 or "AlreadyExists" in result.stderr

    wait_for(created, timeout=60, interval=1, message="the request to be admitted after the restart")
    final = wait_request_status(cluster, PLURAL, "after", namespace, "FINISHED", timeout=120)
    assert condition(final, "Succeeded")["status"] == "True"

    # No loop on the stale resourceVersion: the restarts stop, and the idle operator's CPU
    # time stays low (a watch spinning on 410 Gone would use a core).
    relists = watch_relists(operator)
    cpu_before = cpu_seconds(operator.process.pid)
    pause(10)
    assert watch_relists(operator) == relists
    assert relists <= 10
    assert cpu_seconds(operator.process.pid) - cpu_before < 3.0


def admit_as_kueue(cluster, namespace, job_name):
    """Admit a Job the way Kueue's admission does, by setting spec.suspend to false (no Kueue runs here)."""
    cluster.kubectl(
        "patch", "job", job_name, "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":false}}',
        f"--field-manager={KUEUE_STAND_IN}",
    )


KUEUE_STAND_IN = "kueue-admission-stand-in"


def suspend_writers(cluster, namespace, job_name):
    """Return (manager, operation) of each managedFields entry of the Job that sets spec.suspend."""
    job = json.loads(cluster.kubectl("get", "job", job_name, "-n", namespace, "-o", "json", "--show-managed-fields").stdout)
    return {
        (entry["manager"], entry["operation"])
        for entry in job["metadata"].get("managedFields") or []
        if "f:suspend" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
    }


def test_kueue_admission_starts_the_run(cluster, namespace, operator):
    prepare_namespace(cluster, namespace)
    trainer = {"image": SLOW, "gpus": 1, "queueName": "gpu-queue"}
    apply(cluster, fine_tuning_request(namespace, "admitted", trainer=trainer), user="alice")

    def waiting():
        status = request_status(cluster, PLURAL, "admitted", namespace)
        progress = (status.get("process") or {}).get("progressStatus") or {}
        return status if progress.get("progressStateInfo") == "WAITING_FOR_ADMISSION" else None

    status = wait_for(waiting, timeout=60, message="WAITING_FOR_ADMISSION")
    assert condition(status, "Admitted")["status"] == "False"
    assert condition(status, "Running")["status"] == "False"
    pause(3)
    (job,) = list_jobs(cluster, namespace)
    assert job["spec"]["suspend"] is True
    # The operator's create request is the only writer so far (the API server records it as an Update).
    assert len(suspend_writers(cluster, namespace, job["metadata"]["name"])) == 1

    admit_as_kueue(cluster, namespace, job["metadata"]["name"])

    def training():
        current = request_status(cluster, PLURAL, "admitted", namespace)
        progress = (current.get("process") or {}).get("progressStatus") or {}
        return current if progress.get("progressStateInfo") == "TRAINING" else None

    running = wait_for(training, timeout=90, message="TRAINING after admission")
    assert running["requestStatus"] == "IN_PROGRESS"
    assert running["process"]["progressStatus"]["status"] == "RUNNING"
    assert condition(running, "Admitted")["status"] == "True"
    assert condition(running, "Running")["status"] == "True"

    final = wait_request_status(cluster, PLURAL, "admitted", namespace, "FINISHED", timeout=180)
    assert condition(final, "Succeeded")["status"] == "True"
    (job,) = list_jobs(cluster, namespace)
    assert job["spec"]["suspend"] is False
    # Admission moved the ownership of spec.suspend to the Kueue stand-in. Any later write by
    # the operator would have taken it back.
    assert suspend_writers(cluster, namespace, job["metadata"]["name"]) == {(KUEUE_STAND_IN, "Update")}
