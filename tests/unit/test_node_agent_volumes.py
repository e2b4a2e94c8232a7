"""Volume plan of the node agent: content volumes, hostPath types and mounts."""

import os
import stat
from pathlib import Path

import pytest

from tests.cluster.node_agent.env import ContainerConfigError
from tests.cluster.node_agent.volumes import (
    Mount,
    VolumeNotReadyError,
    check_host_path,
    content_volume_files,
    plan_mounts,
    token_lifetimes,
    write_volume_files,
)

POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1"}, "spec": {"containers": [{"name": "main"}]}, "status": {}}


class FakeObjects:
    def __init__(self, config_maps=None, secrets=None) -> None:
        self.config_maps = config_maps or {}
        self.secrets = secrets or {}

    def config_map(self, namespace, name):
        return self.config_maps.get((namespace, name))

    def secret(self, namespace, name):
        return self.secrets.get((namespace, name))


class RecordingIssuer:
    """Token issuer that returns a fixed text and records each request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str | None, int]] = []

    def __call__(self, audience, seconds):
        self.requests.append((audience, seconds))
        return f"token-for-{audience}"


OBJECTS = FakeObjects(
    config_maps={("ns", "cfg"): {"config.json": "{}", "other": "x"}},
    secrets={("ns", "sec"): {"password": "pw"}},
)


def test_config_map_all_keys() -> None:
    files = content_volume_files(POD, {"name": "v", "configMap": {"name": "cfg"}}, OBJECTS, RecordingIssuer(), {})

    assert files == {"config.json": (b"{}", 0o644), "other": (b"x", 0o644)}


def test_config_map_items_and_modes() -> None:
    volume = {"name": "v", "configMap": {"name": "cfg", "defaultMode": 0o600, "items": [{"key": "other", "path": "sub/o.txt", "mode": 0o400}]}}

    files = content_volume_files(POD, volume, OBJECTS, RecordingIssuer(), {})

    assert files == {"sub/o.txt": (b"x", 0o400)}


def test_missing_key_in_items_fails() -> None:
    volume = {"name": "v", "secret": {"secretName": "sec", "items": [{"key": "absent", "path": "a"}]}}

    with pytest.raises(ContainerConfigError, match="couldn't find key absent in Secret ns/sec"):
        content_volume_files(POD, volume, OBJECTS, RecordingIssuer(), {})


def test_missing_optional_secret_is_empty() -> None:
    volume = {"name": "v", "secret": {"secretName": "absent", "optional": True}}

    assert content_volume_files(POD, volume, OBJECTS, RecordingIssuer(), {}) == {}


def test_projected_sources_and_token() -> None:
    issuer = RecordingIssuer()
    volume = {
        "name": "v",
        "projected": {
            "sources": [
                {"serviceAccountToken": {"audience": "aiml.mns.io/progress/ns/r/n", "expirationSeconds": 600, "path": "token"}},
                {"configMap": {"name": "cfg", "items": [{"key": "config.json", "path": "c.json"}]}},
                {"secret": {"name": "sec"}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
            ]
        },
    }

    files = content_volume_files(POD, volume, OBJECTS, issuer, {})

    assert files["token"] == (b"token-for-aiml.mns.io/progress/ns/r/n", 0o644)
    assert files["c.json"] == (b"{}", 0o644)
    assert files["password"] == (b"pw", 0o644)
    assert files["namespace"] == (b"ns", 0o644)
    assert issuer.requests == [("aiml.mns.io/progress/ns/r/n", 600)]
    assert token_lifetimes(volume) == [600]


def test_token_without_audience_uses_default() -> None:
    issuer = RecordingIssuer()
    volume = {"name": "v", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}

    content_volume_files(POD, volume, OBJECTS, issuer, {})

    assert issuer.requests == [(None, 3600)]


def test_write_volume_files(tmp_path: Path) -> None:
    write_volume_files(tmp_path / "vol", {"a/b.txt": (b"hi", 0o600)})

    written = tmp_path / "vol" / "a" / "b.txt"
    assert written.read_bytes() == b"hi"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600


def test_write_volume_files_rejects_escape(tmp_path: Path) -> None:
    with pytest.raises(ContainerConfigError, match="leaves the volume directory"):
        write_volume_files(tmp_path / "vol", {"../escape": (b"x", 0o644)})


def test_host_path_types(tmp_path: Path) -> None:
    created = tmp_path / "made" / "dir"
    created_file = tmp_path / "made" / "file"

    assert check_host_path({"path": str(created), "type": "DirectoryOrCreate"}) == str(created)
    assert created.is_dir()
    check_host_path({"path": str(created_file), "type": "FileOrCreate"})
    assert created_file.is_file()
    with pytest.raises(VolumeNotReadyError, match="not a directory"):
        check_host_path({"path": str(created_file), "type": "Directory"})
    with pytest.raises(VolumeNotReadyError, match="not a file"):
        check_host_path({"path": str(tmp_path / "absent"), "type": "File"})


def test_plan_mounts_sub_path_and_order(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    container = {
        "volumeMounts": [
            {"name": "data", "mountPath": "/data/pvc/claim/deep", "subPath": "models/$(RUN)", "readOnly": True},
            {"name": "data", "mountPath": "/data", "readOnly": False},
            {"name": "data", "mountPath": "/run/x", "subPathExpr": "run-$(RUN)"},
        ]
    }

    mounts = plan_mounts(container, {"data": str(data)}, {"RUN": "7"})

    assert mounts[0] == Mount(str(data), "/data", False)
    assert Mount(str(data / "models" / "$(RUN)"), "/data/pvc/claim/deep", True) in mounts
    assert Mount(str(data / "run-7"), "/run/x", False) in mounts
    assert (data / "run-7").is_dir()


def test_plan_mounts_rejects_parent_sub_path(tmp_path: Path) -> None:
    container = {"volumeMounts": [{"name": "v", "mountPath": "/x", "subPath": "../etc"}]}

    with pytest.raises(ContainerConfigError, match="without"):
        plan_mounts(container, {"v": str(tmp_path)}, {})


def test_plan_mounts_unknown_volume() -> None:
    with pytest.raises(ContainerConfigError, match='"absent"'):
        plan_mounts({"volumeMounts": [{"name": "absent", "mountPath": "/x"}]}, {}, {})
