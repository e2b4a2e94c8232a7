"""Container environment resolution of the node agent."""

import base64

import pytest

from tests.cluster.node_agent.env import ContainerConfigError, expand_references, field_value, resolve_env


class FakeObjects:
    """In-memory ConfigMaps and Secrets keyed by (namespace, name)."""

    def __init__(self, config_maps=None, secrets=None) -> None:
        self.config_maps = config_maps or {}
        self.secrets = secrets or {}

    def config_map(self, namespace, name):
        return self.config_maps.get((namespace, name))

    def secret(self, namespace, name):
        return self.secrets.get((namespace, name))


POD = {
    "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"b": "2", "a": "1"}},
    "spec": {
        "nodeName": "gpu-node-1",
        "serviceAccountName": "trainer",
        "containers": [{"name": "main", "resources": {"limits": {"cpu": "1500m", "memory": "1Gi"}, "requests": {"cpu": "500m"}}}],
    },
    "status": {},
}


def test_expand_references() -> None:
    env = {"A": "x"}

    assert expand_references("$(A)-$(B)-$$(A)", env) == "x-$(B)-$(A)"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("metadata.name", "p"),
        ("metadata.namespace", "ns"),
        ("metadata.uid", "u-1"),
        ("spec.nodeName", "gpu-node-1"),
        ("spec.serviceAccountName", "trainer"),
        ("status.podIP", "127.0.0.1"),
        ("metadata.labels['a']", "1"),
        ("metadata.labels", 'a="1"\nb="2"'),
    ],
)
def test_field_value(path: str, expected: str) -> None:
    assert field_value(POD, path) == expected


def test_field_value_rejects_unknown_path() -> None:
    with pytest.raises(ContainerConfigError, match="spec.foo"):
        field_value(POD, "spec.foo")


def test_resolve_env_order_and_sources() -> None:
    objects = FakeObjects(
        config_maps={("ns", "cm"): {"k": "from-cm", "OTHER": "o"}},
        secrets={("ns", "s"): {"password": "pw"}},
    )
    container = {
        "name": "main",
        "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
        "env": [
            {"name": "PATH", "value": "/override"},
            {"name": "LITERAL", "value": "$(CM_k)/x"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "KEY", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
            {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "s", "key": "password"}}},
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "CPU_M", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
            {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "DISK_GI", "valueFrom": {"resourceFieldRef": {"resource": "limits.ephemeral-storage", "divisor": "1Gi"}}},
        ],
    }

    env = resolve_env(POD, container, {"PATH": "/bin", "HOME": "/root"}, objects, {"ephemeral-storage": "100Gi"})

    assert env["PATH"] == "/override"
    assert env["HOME"] == "/root"
    assert env["CM_k"] == "from-cm"
    assert env["CM_OTHER"] == "o"
    assert env["LITERAL"] == "from-cm/x"
    assert env["POD"] == "p"
    assert env["KEY"] == "from-cm"
    assert env["PASS"] == "pw"
    assert env["CPU"] == "2"
    assert env["CPU_M"] == "500"
    assert env["MEM_MI"] == "1024"
    assert env["DISK_GI"] == "100"


def test_resolve_env_missing_config_map() -> None:
    container = {"name": "main", "env": [{"name": "K", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k"}}}]}

    with pytest.raises(ContainerConfigError, match='configmap "absent" not found'):
        resolve_env(POD, container, {}, FakeObjects(), {})


def test_resolve_env_missing_key() -> None:
    objects = FakeObjects(secrets={("ns", "s"): {"a": "1"}})
    container = {"name": "main", "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "b"}}}]}

    with pytest.raises(ContainerConfigError, match="couldn't find key b in Secret ns/s"):
        resolve_env(POD, container, {}, objects, {})


def test_resolve_env_optional_reference_skipped() -> None:
    container = {
        "name": "main",
        "envFrom": [{"secretRef": {"name": "absent", "optional": True}}],
        "env": [{"name": "K", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k", "optional": True}}}],
    }

    env = resolve_env(POD, container, {}, FakeObjects(), {})

    assert "K" not in env
    assert env == {}


def test_secret_data_is_decoded() -> None:
    from tests.cluster.node_agent.env import decode_secret_data

    secret = {"data": {"a": base64.b64encode(b"hello").decode()}, "stringData": {"b": "plain"}}

    assert decode_secret_data(secret) == {"a": "hello", "b": "plain"}
