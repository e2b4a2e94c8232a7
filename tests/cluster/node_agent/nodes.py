"""Node registration and heartbeats for the simulated nodes.

Each simulated node is a Node object whose status the agent owns: capacity and
allocatable (with ``nvidia.com/gpu`` on GPU nodes), a Ready condition, InternalIP
127.0.0.1, and the port of its log endpoint in ``daemonEndpoints``. Heartbeats renew the
node's Lease in ``kube-node-lease`` and the Ready condition's ``lastHeartbeatTime``.
"""

from __future__ import annotations

import logging
import platform
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.cluster.node_agent.kube import Kube

Obj = dict[str, Any]
log = logging.getLogger("node_agent.node")

LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40
HEARTBEAT_SECONDS = 10.0
GPU_RESOURCE = "nvidia.com/gpu"
AGENT_VERSION = "node-agent://0.1.0"

DEFAULT_RESOURCES = {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi"}
_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


@dataclass(frozen=True)
class NodeSpec:
    """A simulated node from the command line: name, resources, and the port of its log endpoint."""

    name: str
    resources: dict[str, str] = field(default_factory=dict)
    port: int = 0

    @property
    def gpus(self) -> int:
        return int(self.resources.get(GPU_RESOURCE, "0"))

    @property
    def allocatable(self) -> dict[str, str]:
        return {**DEFAULT_RESOURCES, **self.resources}


def parse_node_spec(text: str, port: int) -> NodeSpec:
    """Parse ``NAME[:RESOURCE=QUANTITY,...]``; the resource ``gpu`` means ``nvidia.com/gpu``.

    Example: ``gpu-node-1:gpu=2,cpu=8,memory=32Gi``.
    """
    name, _, rest = text.partition(":")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name):
        raise ValueError(f'invalid node name "{name}": use lowercase letters, digits, "-" and "."')
    resources: dict[str, str] = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not value:
            raise ValueError(f'invalid node resource "{item}" in "{text}": expected RESOURCE=QUANTITY')
        resources[GPU_RESOURCE if key == "gpu" else key] = value
    return NodeSpec(name, resources, port)


def architecture() -> str:
    machine = platform.machine()
    return _ARCHITECTURES.get(machine, machine)


def node_object(spec: NodeSpec) -> Obj:
    """Build the Node metadata and spec (labels and taints) for registration."""
    labels = {
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": architecture(),
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": architecture(),
    }
    taints: list[Obj] = []
    if spec.gpus:
        labels["nvidia.com/gpu.present"] = "true"
        labels["nvidia.com/gpu.count"] = str(spec.gpus)
        taints.append({"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": spec.name, "labels": labels},
        "spec": {"taints": taints or None},
    }


def _micro_time() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _time() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_status(spec: NodeSpec, kubelet_version: str, boot_id: str, ready_since: str) -> Obj:
    """Build the Node status the agent reports on every heartbeat."""
    now = _time()

    def condition(kind: str, status: str, reason: str, message: str) -> Obj:
        return {"type": kind, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": now, "lastTransitionTime": ready_since}

    return {
        "capacity": spec.allocatable,
        "allocatable": spec.allocatable,
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "node agent has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "node agent has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "node agent has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "node agent is posting ready status"),
        ],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": spec.name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": spec.port}},
        "nodeInfo": {
            "machineID": uuid.uuid5(uuid.NAMESPACE_DNS, spec.name).hex,
            "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, spec.name)),
            "bootID": boot_id,
            "kernelVersion": platform.release(),
            "osImage": "node agent for local development clusters",
            "containerRuntimeVersion": AGENT_VERSION,
            "kubeletVersion": kubelet_version,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": architecture(),
        },
    }


class NodeHeartbeat:
    """Registers one node and keeps its Lease and Ready condition fresh."""

    def __init__(self, kube: Kube, spec: NodeSpec, kubelet_version: str, stop: threading.Event) -> None:
        self.kube = kube
        self.spec = spec
        self.kubelet_version = kubelet_version
        self.stop = stop
        self.boot_id = str(uuid.uuid4())
        self.ready_since = _time()
        self.node_uid = ""
        self.thread = threading.Thread(target=self._loop, name=f"heartbeat-{spec.name}", daemon=True)

    def register(self) -> None:
        """Create the Node, or update labels and taints of an existing one, then post its status."""
        body = node_object(self.spec)
        try:
            node = self.kube.core.create_node(body)
            log.info("node registered", extra={"node": self.spec.name, "event": "Registered"})
        except ApiException as error:
            if error.status != 409:
                raise
            node = self.kube.core.patch_node(self.spec.name, body, _content_type="application/merge-patch+json")
            log.info("node updated", extra={"node": self.spec.name, "event": "Registered"})
        self.node_uid = node.metadata.uid
        self._post_status()
        self._renew_lease()
        self._clear_condition_taints(node.spec.taints or [])

    def _clear_condition_taints(self, taints: list) -> None:
        """Remove the not-ready taint that the API server adds when a Node is created.

        The node lifecycle controller would remove it once the Node reports Ready, but the
        local cluster runs without that controller, so the agent removes it after posting
        its Ready condition.
        """
        if not any(t.key.startswith("node.kubernetes.io/") for t in taints):
            return
        desired = node_object(self.spec)["spec"]["taints"]
        self.kube.core.patch_node(self.spec.name, {"spec": {"taints": desired}}, _content_type="application/merge-patch+json")
        log.info("condition taints removed", extra={"node": self.spec.name, "event": "TaintsUpdated"})

    def start(self) -> None:
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.wait(HEARTBEAT_SECONDS):
            try:
                self._renew_lease()
                self._post_status()
            except ApiException as error:
                log.warning("heartbeat failed", extra={"node": self.spec.name, "error": f"{error.status} {error.reason}"})
            except Exception as error:  # noqa: BLE001 - a heartbeat thread must survive connection errors
                log.warning("heartbeat failed", extra={"node": self.spec.name, "error": repr(error)})

    def _post_status(self) -> None:
        status = node_status(self.spec, self.kubelet_version, self.boot_id, self.ready_since)
        self.kube.core.patch_node_status(self.spec.name, {"status": status}, _content_type="application/merge-patch+json")

    def _renew_lease(self) -> None:
        spec = {"holderIdentity": self.spec.name, "leaseDurationSeconds": LEASE_DURATION_SECONDS, "renewTime": _micro_time()}
        try:
            self.kube.coordination.patch_namespaced_lease(
                self.spec.name, LEASE_NAMESPACE, {"spec": spec}, _content_type="application/merge-patch+json"
            )
        except ApiException as error:
            if error.status != 404:
                raise
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self.spec.name,
                    "namespace": LEASE_NAMESPACE,
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": self.spec.name, "uid": self.node_uid}],
                },
                "spec": spec,
            }
            self.kube.coordination.create_namespaced_lease(LEASE_NAMESPACE, lease)
