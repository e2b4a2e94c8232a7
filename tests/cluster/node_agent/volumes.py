"""Volume plan: where each Pod volume lives on the host and what gets mounted where.

Every volume becomes a host directory (or, with ``subPath``, a file or directory inside
one). The sandbox later bind-mounts those paths at each ``volumeMount.mountPath`` inside a
private mount namespace. Content volumes (configMap, secret, downwardAPI, projected) are
computed here as a map of relative path -> (bytes, mode) so the computation stays testable;
``write_volume_files`` puts them on disk.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tests.cluster.node_agent.env import (
    ContainerConfigError,
    ObjectSource,
    expand_references,
    field_value,
    resource_value,
)

Obj = dict[str, Any]
VolumeFiles = dict[str, tuple[bytes, int]]

DEFAULT_FILE_MODE = 0o644
DEFAULT_TOKEN_EXPIRATION_SECONDS = 3600

# Issues a ServiceAccount token for the Pod: (audience or None, expirationSeconds) -> token.
TokenIssuer = Callable[[str | None, int], str]


class VolumeNotReadyError(ContainerConfigError):
    """A volume cannot be set up yet (for example its claim is not bound); retried later."""


class ClaimSource(Protocol):
    """Finds the host path behind a bound PersistentVolumeClaim; None while unbound."""

    def claim_path(self, namespace: str, claim: str) -> str | None: ...


@dataclass(frozen=True)
class Mount:
    """One bind mount inside the container's mount namespace."""

    source: str
    target: str
    read_only: bool


def _key_files(
    kind: str,
    namespace: str,
    name: str,
    values: dict[str, str] | None,
    items: list[Obj] | None,
    default_mode: int,
    optional: bool,
) -> VolumeFiles:
    if values is None:
        if optional:
            return {}
        raise ContainerConfigError(f'{kind.lower()} "{name}" not found (namespace {namespace})')
    if not items:
        return {key: (value.encode(), default_mode) for key, value in values.items()}

    files: VolumeFiles = {}
    for item in items:
        key = item["key"]
        if key not in values:
            if optional:
                continue
            raise ContainerConfigError(f"couldn't find key {key} in {kind} {namespace}/{name}")
        files[item["path"]] = (values[key].encode(), item.get("mode", default_mode))
    return files


def _downward_files(pod: Obj, items: list[Obj], default_mode: int, node_allocatable: dict[str, str]) -> VolumeFiles:
    files: VolumeFiles = {}
    for item in items:
        if "fieldRef" in item:
            value = field_value(pod, item["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in item:
            value = resource_value(pod, item["resourceFieldRef"], node_allocatable)
        else:
            raise ContainerConfigError(f'downwardAPI item "{item.get("path")}" has neither fieldRef nor resourceFieldRef')
        files[item["path"]] = (value.encode(), item.get("mode", default_mode))
    return files


def content_volume_files(
    pod: Obj,
    volume: Obj,
    source: ObjectSource,
    issue_token: TokenIssuer,
    node_allocatable: dict[str, str],
) -> VolumeFiles:
    """Compute the files of a configMap, secret, downwardAPI or projected volume."""
    namespace = pod["metadata"]["namespace"]

    if "configMap" in volume:
        spec = volume["configMap"]
        return _key_files(
            "ConfigMap", namespace, spec["name"], source.config_map(namespace, spec["name"]),
            spec.get("items"), spec.get("defaultMode", DEFAULT_FILE_MODE), bool(spec.get("optional")),
        )
    if "secret" in volume:
        spec = volume["secret"]
        return _key_files(
            "Secret", namespace, spec["secretName"], source.secret(namespace, spec["secretName"]),
            spec.get("items"), spec.get("defaultMode", DEFAULT_FILE_MODE), bool(spec.get("optional")),
        )
    if "downwardAPI" in volume:
        spec = volume["downwardAPI"]
        return _downward_files(pod, spec.get("items") or [], spec.get("defaultMode", DEFAULT_FILE_MODE), node_allocatable)

    spec = volume["projected"]
    default_mode = spec.get("defaultMode", DEFAULT_FILE_MODE)
    files: VolumeFiles = {}
    for projection in spec.get("sources") or []:
        if "configMap" in projection:
            ref = projection["configMap"]
            files.update(_key_files(
                "ConfigMap", namespace, ref["name"], source.config_map(namespace, ref["name"]),
                ref.get("items"), default_mode, bool(ref.get("optional")),
            ))
        elif "secret" in projection:
            ref = projection["secret"]
            files.update(_key_files(
                "Secret", namespace, ref["name"], source.secret(namespace, ref["name"]),
                ref.get("items"), default_mode, bool(ref.get("optional")),
            ))
        elif "downwardAPI" in projection:
            files.update(_downward_files(pod, projection["downwardAPI"].get("items") or [], default_mode, node_allocatable))
        elif "serviceAccountToken" in projection:
            ref = projection["serviceAccountToken"]
            token = issue_token(ref.get("audience") or None, ref.get("expirationSeconds", DEFAULT_TOKEN_EXPIRATION_SECONDS))
            files[ref["path"]] = (token.encode(), default_mode)
        else:
            raise ContainerConfigError(f"projected volume has an unsupported source: {sorted(projection)}")
    return files


def token_lifetimes(volume: Obj) -> list[int]:
    """Return the expirationSeconds of every serviceAccountToken projection of ``volume``."""
    sources = (volume.get("projected") or {}).get("sources") or []
    return [
        s["serviceAccountToken"].get("expirationSeconds", DEFAULT_TOKEN_EXPIRATION_SECONDS)
        for s in sources
        if "serviceAccountToken" in s
    ]


def write_volume_files(directory: Path, files: VolumeFiles) -> None:
    """Write ``files`` under ``directory``; each file is replaced atomically by a rename."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o755)
    for relative, (content, mode) in files.items():
        target = (directory / relative).resolve()
        if not target.is_relative_to(directory.resolve()):
            raise ContainerConfigError(f'volume file path "{relative}" leaves the volume directory')
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
        os.chmod(temporary, mode)
        os.replace(temporary, target)


def check_host_path(spec: Obj) -> str:
    """Apply a hostPath volume's ``type`` (create or check) and return its path."""
    path = Path(spec["path"])
    kind = spec.get("type") or ""
    if kind == "DirectoryOrCreate":
        path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
    elif kind == "Directory" and not path.is_dir():
        raise VolumeNotReadyError(f"hostPath type check failed: {path} is not a directory")
    elif kind == "File" and not path.is_file():
        raise VolumeNotReadyError(f"hostPath type check failed: {path} is not a file")
    elif kind in ("Socket", "CharDevice", "BlockDevice") and not path.exists():
        raise VolumeNotReadyError(f"hostPath type check failed: {path} does not exist")
    return str(path)


def volume_kind(volume: Obj) -> str:
    """Return the source field name of a Pod volume (emptyDir, configMap, ...)."""
    kinds = [key for key in volume if key != "name"]
    return kinds[0] if kinds else "emptyDir"


def plan_mounts(container: Obj, volume_paths: dict[str, str], env: dict[str, str]) -> list[Mount]:
    """Map a container's volumeMounts to bind mounts, parents before children.

    ``volume_paths`` maps volume names to host paths. ``subPath`` and ``subPathExpr``
    (expanded with the container's environment) select a path inside the volume, and the
    kubelet creates a missing subPath as a directory; so does this function.
    """
    mounts: list[Mount] = []
    for mount in container.get("volumeMounts") or []:
        name = mount["name"]
        if name not in volume_paths:
            raise ContainerConfigError(f'volumeMount "{name}" names no volume of the Pod')
        source = Path(volume_paths[name])

        sub_path = mount.get("subPath") or ""
        if mount.get("subPathExpr"):
            sub_path = expand_references(mount["subPathExpr"], env)
        if sub_path:
            if Path(sub_path).is_absolute() or ".." in Path(sub_path).parts:
                raise ContainerConfigError(f'subPath "{sub_path}" must be a relative path without ".."')
            source = source / sub_path
            if not source.exists():
                source.mkdir(parents=True, mode=0o777)

        mounts.append(Mount(str(source), mount["mountPath"], bool(mount.get("readOnly"))))

    return sorted(mounts, key=lambda m: len(Path(m.target).parts))
