"""Node registration objects and claim volumes of the node agent."""

from pathlib import Path

import pytest

from tests.cluster.node_agent.nodes import node_object, node_status, parse_node_spec
from tests.cluster.node_agent.provisioner import needs_volume, volume_for_claim


def test_parse_gpu_node() -> None:
    spec = parse_node_spec("gpu-node-1:gpu=2,cpu=8", 10250)

    assert spec.name == "gpu-node-1"
    assert spec.gpus == 2
    assert spec.allocatable["nvidia.com/gpu"] == "2"
    assert spec.allocatable["cpu"] == "8"
    assert spec.allocatable["pods"] == "110"
    assert spec.port == 10250


@pytest.mark.parametrize("text", ["GPU_node", "n:gpu", "n:gpu="])
def test_parse_node_spec_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid node"):
        parse_node_spec(text, 1)


def test_gpu_node_labels_and_taint() -> None:
    node = node_object(parse_node_spec("gpu-node-1:gpu=2", 1))
    labels = node["metadata"]["labels"]

    assert labels["nvidia.com/gpu.present"] == "true"
    assert labels["kubernetes.io/hostname"] == "gpu-node-1"
    assert labels["kubernetes.io/os"] == "linux"
    assert "kubernetes.io/arch" in labels
    assert node["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]


def test_cpu_node_has_no_taint() -> None:
    node = node_object(parse_node_spec("cpu-node-1", 1))

    assert node["spec"]["taints"] is None
    assert "nvidia.com/gpu.present" not in node["metadata"]["labels"]


def test_node_status_ready_with_endpoint() -> None:
    status = node_status(parse_node_spec("gpu-node-1:gpu=2", 10251), "v1.37.2", "boot", "2026-01-01T00:00:00Z")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")

    assert ready["status"] == "True"
    assert status["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10251}}
    assert {"type": "InternalIP", "address": "127.0.0.1"} in status["addresses"]
    assert status["capacity"]["nvidia.com/gpu"] == "2"
    assert status["nodeInfo"]["kubeletVersion"] == "v1.37.2"


def test_volume_for_claim() -> None:
    pvc = {
        "metadata": {"name": "data", "namespace": "ns", "uid": "u-1"},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "5Gi"}}, "storageClassName": "standard"},
    }

    volume = volume_for_claim(pvc, Path("/state/volumes/pvc/ns/data"))

    assert volume["metadata"]["name"] == "pvc-u-1"
    assert volume["spec"]["hostPath"]["path"] == "/state/volumes/pvc/ns/data"
    assert volume["spec"]["claimRef"] == {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "ns", "name": "data", "uid": "u-1"}
    assert volume["spec"]["capacity"] == {"storage": "5Gi"}
    assert volume["spec"]["accessModes"] == ["ReadWriteMany"]
    assert volume["spec"]["storageClassName"] == "standard"
    assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Retain"


def test_needs_volume() -> None:
    assert needs_volume({"metadata": {}, "spec": {}})
    assert not needs_volume({"metadata": {}, "spec": {"volumeName": "pv"}})
    assert not needs_volume({"metadata": {"deletionTimestamp": "t"}, "spec": {}})
