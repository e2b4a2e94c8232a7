"""The local cluster behaves like a real one where the operator depends on it.

RBAC and SubjectAccessReview, the scheduler's GPU placement, the Job controller, and the
node agent's process lifecycle, logs and termination messages.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.conftest import ClusterHandle, wait_for

pytestmark = pytest.mark.cluster

TEST_IMAGE = "busybox:1.36"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def job_manifest(name: str, command: str, *, gpus: int = 0, tolerate_gpu: bool = False,
                 backoff_limit: int = 0, volumes: list | None = None, mounts: list | None = None) -> dict:
    container: dict = {
        "name": "main",
        "image": TEST_IMAGE,
        "command": ["/bin/sh", "-c", command],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    if mounts:
        container["volumeMounts"] = mounts
    pod_spec: dict = {"restartPolicy": "Never", "containers": [container]}
    if tolerate_gpu:
        pod_spec["tolerations"] = [GPU_TOLERATION]
    if volumes:
        pod_spec["volumes"] = volumes
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": backoff_limit, "template": {"spec": pod_spec}},
    }


def apply(cluster: ClusterHandle, namespace: str, manifest: dict) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))


def job_condition(cluster: ClusterHandle, namespace: str, name: str, condition: str) -> bool:
    job = cluster.kubectl_json("get", "job", name, "-n", namespace)
    return any(c["type"] == condition and c["status"] == "True" for c in job["status"].get("conditions", []))


def job_pods(cluster: ClusterHandle, namespace: str, job: str) -> list[dict]:
    return cluster.kubectl_json("get", "pods", "-n", namespace, "-l", f"batch.kubernetes.io/job-name={job}")["items"]


def test_readyz_ok(cluster):
    assert cluster.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"


def test_nodes_gpu_and_cpu(cluster):
    nodes = {n["metadata"]["name"]: n for n in cluster.kubectl_json("get", "nodes")["items"]}

    gpu = nodes["gpu-node-1"]
    assert gpu["status"]["allocatable"]["nvidia.com/gpu"] == "2"
    assert gpu["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
    assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in gpu["spec"]["taints"]

    cpu = nodes["cpu-node-1"]
    assert "nvidia.com/gpu" not in cpu["status"]["allocatable"]


def test_rbac_denies_then_allows(cluster, namespace):
    denied = cluster.kubectl("get", "pods", "-n", namespace, user="dave", check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()

    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": "dave", "resourceAttributes": {"namespace": namespace, "verb": "list", "resource": "pods"}},
    }
    before = json.loads(cluster.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(review)).stdout)
    assert before["status"]["allowed"] is False

    cluster.kubectl("create", "rolebinding", "dave-view", "--clusterrole=view", "--user=dave", "-n", namespace)

    def allowed() -> bool:
        result = json.loads(cluster.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(review)).stdout)
        return result["status"]["allowed"] is True

    wait_for(allowed, timeout=15, message="SubjectAccessReview allowed=true after the RoleBinding")
    assert cluster.kubectl("get", "pods", "-n", namespace, user="dave").returncode == 0


def test_gpu_job_runs_on_gpu_node(cluster, namespace):
    apply(cluster, namespace, job_manifest("gpu-job", "echo hello from the gpu node; echo second line",
                                           gpus=1, tolerate_gpu=True))

    wait_for(lambda: job_condition(cluster, namespace, "gpu-job", "Complete"), timeout=90,
             message="Job gpu-job Complete")

    pods = job_pods(cluster, namespace, "gpu-job")
    assert len(pods) == 1
    assert pods[0]["spec"]["nodeName"] == "gpu-node-1"
    assert pods[0]["status"]["phase"] == "Succeeded"
    terminated = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0

    logs = cluster.kubectl("logs", "-n", namespace, "job/gpu-job").stdout
    assert "hello from the gpu node" in logs
    assert "second line" in logs


def test_gpu_job_never_on_cpu_node(cluster, namespace):
    for index in range(3):
        apply(cluster, namespace, job_manifest(f"gpu-{index}", "true", gpus=1, tolerate_gpu=True))
    for index in range(3):
        wait_for(lambda: job_condition(cluster, namespace, f"gpu-{index}", "Complete"), timeout=90,
                 message=f"Job gpu-{index} Complete")
        assert {p["spec"]["nodeName"] for p in job_pods(cluster, namespace, f"gpu-{index}")} == {"gpu-node-1"}


def test_too_many_gpus_stays_pending(cluster, namespace):
    apply(cluster, namespace, job_manifest("greedy", "true", gpus=8, tolerate_gpu=True))

    def unschedulable_pod():
        for pod in job_pods(cluster, namespace, "greedy"):
            for condition in pod["status"].get("conditions", []):
                if condition["type"] == "PodScheduled" and condition.get("reason") == "Unschedulable":
                    return pod
        return None

    pod = wait_for(unschedulable_pod, timeout=60, message="PodScheduled=False reason Unschedulable")
    assert pod["status"]["phase"] == "Pending"
    assert "nodeName" not in pod["spec"]
    message = next(c["message"] for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
    assert "Insufficient nvidia.com/gpu" in message


def test_failing_pod_fails_job(cluster, namespace):
    command = "echo 'data file missing' > /dev/termination-log; echo traceback line; exit 3"
    apply(cluster, namespace, job_manifest("fails", command))

    wait_for(lambda: job_condition(cluster, namespace, "fails", "Failed"), timeout=90, message="Job fails Failed")

    pods = job_pods(cluster, namespace, "fails")
    terminated = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert pods[0]["status"]["phase"] == "Failed"
    assert terminated["exitCode"] == 3
    assert terminated["message"].strip() == "data file missing"


def test_empty_termination_message_falls_back_to_logs(cluster, namespace):
    apply(cluster, namespace, job_manifest("crash", "echo 'Traceback: boom' >&2; exit 1"))

    wait_for(lambda: job_condition(cluster, namespace, "crash", "Failed"), timeout=90, message="Job crash Failed")

    terminated = job_pods(cluster, namespace, "crash")[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert "Traceback: boom" in terminated["message"]


def test_deleting_pod_ends_process(cluster, namespace, tmp_path: Path):
    tmp_path.chmod(0o777)
    volumes = [{"name": "out", "hostPath": {"path": str(tmp_path), "type": "Directory"}}]
    mounts = [{"name": "out", "mountPath": "/out"}]
    # Kubernetes reduces "$$" in a command to "$", so "$$$$" reaches the shell as "$$".
    apply(cluster, namespace, job_manifest("sleeper", "echo $$$$ > /out/pid; exec sleep 600",
                                           volumes=volumes, mounts=mounts))

    pid_file = tmp_path / "pid"
    wait_for(pid_file.exists, timeout=60, message="the Pod to write its process id")
    pid = int(wait_for(lambda: pid_file.read_text().strip(), timeout=5, message="pid file content"))
    os.kill(pid, 0)

    pod = job_pods(cluster, namespace, "sleeper")[0]["metadata"]["name"]
    started = time.monotonic()
    cluster.kubectl("delete", "pod", pod, "-n", namespace, "--grace-period=5", "--wait=true", timeout=60)

    def process_gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(process_gone, timeout=15, message=f"process {pid} to end")
    assert time.monotonic() - started < 30
