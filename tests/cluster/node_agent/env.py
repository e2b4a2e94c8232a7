"""Container environment resolution, as the kubelet does it.

Pure functions over Pod and container dictionaries in their wire form (camelCase). ConfigMaps
and Secrets come through a ``ObjectSource`` so the functions can be tested without a cluster.
Missing references raise ``ContainerConfigError``, which the Pod worker reports as the
waiting reason ``CreateContainerConfigError`` and retries, like the kubelet.
"""

from __future__ import annotations

import base64
import math
import re
from decimal import Decimal
from typing import Any, Protocol

from kubernetes.utils import parse_quantity

Obj = dict[str, Any]

_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ContainerConfigError(ValueError):
    """A container's environment or volume refers to something that does not exist."""


class ObjectSource(Protocol):
    """Read access to the ConfigMaps and Secrets a Pod refers to; None when not found."""

    def config_map(self, namespace: str, name: str) -> dict[str, str] | None: ...

    def secret(self, namespace: str, name: str) -> dict[str, str] | None: ...


def expand_references(value: str, env: dict[str, str]) -> str:
    """Expand ``$(NAME)`` from ``env`` and ``$$`` to ``$``; unknown names stay as written."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _REFERENCE.sub(replace, value)


def decode_secret_data(secret: Obj) -> dict[str, str]:
    """Merge a Secret's base64 ``data`` and plain ``stringData`` into text values."""
    values = {key: base64.b64decode(raw).decode("utf-8", "replace") for key, raw in (secret.get("data") or {}).items()}
    values.update(secret.get("stringData") or {})
    return values


def config_map_values(config_map: Obj) -> dict[str, str]:
    """Merge a ConfigMap's ``data`` and ``binaryData`` (decoded) into text values."""
    values = dict(config_map.get("data") or {})
    for key, raw in (config_map.get("binaryData") or {}).items():
        values[key] = base64.b64decode(raw).decode("utf-8", "replace")
    return values


def field_value(pod: Obj, field_path: str) -> str:
    """Return the value of a downward API ``fieldRef.fieldPath`` for ``pod``."""
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    simple = {
        "metadata.name": metadata.get("name", ""),
        "metadata.namespace": metadata.get("namespace", ""),
        "metadata.uid": metadata.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": status.get("podIP") or "127.0.0.1",
        "status.hostIP": status.get("hostIP") or "127.0.0.1",
        "status.podIPs": status.get("podIP") or "127.0.0.1",
        "status.hostIPs": status.get("hostIP") or "127.0.0.1",
    }
    if field_path in simple:
        return simple[field_path]

    match = re.fullmatch(r"metadata\.(labels|annotations)(?:\['(.+)'\])?", field_path)
    if match is None:
        raise ContainerConfigError(f'unsupported fieldRef.fieldPath "{field_path}"')
    mapping = metadata.get(match.group(1)) or {}
    if match.group(2) is not None:
        return mapping.get(match.group(2), "")
    return "\n".join(f'{key}="{mapping[key]}"' for key in sorted(mapping))


def resource_value(pod: Obj, resource_ref: Obj, node_allocatable: dict[str, str]) -> str:
    """Return a ``resourceFieldRef`` value: limit or request, divided and rounded up.

    A missing limit falls back to the node's allocatable amount, as the kubelet does.
    """
    container_name = resource_ref.get("containerName")
    containers = (pod.get("spec") or {}).get("containers") or []
    container = next((c for c in containers if c.get("name") == container_name), None)
    if container is None:
        raise ContainerConfigError(f'resourceFieldRef names container "{container_name}", which the Pod does not have')

    resource = resource_ref["resource"]
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or not name:
        raise ContainerConfigError(f'unsupported resourceFieldRef.resource "{resource}"')
    resources = container.get("resources") or {}
    raw = (resources.get(kind) or {}).get(name)
    if raw is None and kind == "requests":
        raw = (resources.get("limits") or {}).get(name)
    if raw is None:
        raw = node_allocatable.get(name, "0")

    divisor = parse_quantity(resource_ref.get("divisor") or "1")
    if divisor == 0:
        divisor = Decimal(1)
    return str(math.ceil(parse_quantity(raw) / divisor))


def _key_from(
    kind: str, namespace: str, ref: Obj, values: dict[str, str] | None
) -> str | None:
    optional = bool(ref.get("optional"))
    if values is None:
        if optional:
            return None
        raise ContainerConfigError(f'{kind.lower()} "{ref.get("name")}" not found')
    key = ref["key"]
    if key not in values:
        if optional:
            return None
        raise ContainerConfigError(f"couldn't find key {key} in {kind} {namespace}/{ref.get('name')}")
    return values[key]


def resolve_env(
    pod: Obj,
    container: Obj,
    base_env: dict[str, str],
    source: ObjectSource,
    node_allocatable: dict[str, str],
) -> dict[str, str]:
    """Build a container's environment: ``base_env``, then ``envFrom``, then ``env``."""
    namespace = pod["metadata"]["namespace"]
    env = dict(base_env)

    for env_from in container.get("envFrom") or []:
        prefix = env_from.get("prefix", "")
        if "configMapRef" in env_from:
            ref, kind = env_from["configMapRef"], "ConfigMap"
            values = source.config_map(namespace, ref["name"])
        elif "secretRef" in env_from:
            ref, kind = env_from["secretRef"], "Secret"
            values = source.secret(namespace, ref["name"])
        else:
            continue
        if values is None:
            if ref.get("optional"):
                continue
            raise ContainerConfigError(f'{kind.lower()} "{ref["name"]}" not found')
        for key, value in values.items():
            env[prefix + key] = value

    for item in container.get("env") or []:
        name = item["name"]
        if "valueFrom" not in item:
            env[name] = expand_references(item.get("value", ""), env)
            continue
        value_from = item["valueFrom"]
        value: str | None
        if "fieldRef" in value_from:
            value = field_value(pod, value_from["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in value_from:
            ref = dict(value_from["resourceFieldRef"])
            ref.setdefault("containerName", container["name"])
            value = resource_value(pod, ref, node_allocatable)
        elif "configMapKeyRef" in value_from:
            ref = value_from["configMapKeyRef"]
            value = _key_from("ConfigMap", namespace, ref, source.config_map(namespace, ref["name"]))
        elif "secretKeyRef" in value_from:
            ref = value_from["secretKeyRef"]
            value = _key_from("Secret", namespace, ref, source.secret(namespace, ref["name"]))
        else:
            raise ContainerConfigError(f'env "{name}" has an unsupported valueFrom: {sorted(value_from)}')
        if value is not None:
            env[name] = value
    return env
