"""Conversion of pydantic's JSON schema into a structural OpenAPI v3 schema for a CRD.

The API server accepts only structural schemas: every node has a type, no ``$ref``, no
``anyOf`` except for int-or-string, no ``nullable`` unless the field may hold null, and
``additionalProperties`` never next to ``properties``. pydantic writes JSON Schema 2020-12,
so this module inlines references, turns ``X | None`` into a plain optional field, turns
numeric ``exclusiveMinimum``/``exclusiveMaximum`` into the OpenAPI v3.0 boolean form, and
turns ``uniqueItems`` into ``x-kubernetes-list-type: set``.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

# Keys of pydantic's output that a CRD schema does not use or does not accept.
_DROPPED_KEYS = {"title", "examples", "$defs", "additionalProperties"}
_SCALAR_TYPES = {"string", "integer", "number", "boolean"}


class SchemaConversionError(ValueError):
    """Raised when a pydantic schema has a construct that has no structural equivalent."""


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """Return the structural OpenAPI v3 schema of a pydantic model."""
    schema = model.model_json_schema(mode="validation", by_alias=True)
    definitions = schema.get("$defs", {})
    return _convert(schema, definitions, path=model.__name__)


def _resolve(node: dict[str, Any], definitions: dict[str, Any], path: str) -> dict[str, Any]:
    """Replace a ``$ref`` (or a single-item ``allOf``) by the definition it names, keeping sibling keys."""
    if "allOf" in node and len(node["allOf"]) == 1:
        node = {**{k: v for k, v in node.items() if k != "allOf"}, **node["allOf"][0]}
    if "$ref" not in node:
        return node
    name = node["$ref"].rsplit("/", 1)[-1]
    if name not in definitions:
        raise SchemaConversionError(f"{path}: unresolved reference {node['$ref']}")
    resolved = copy.deepcopy(definitions[name])
    # The field's own keys (its description, default, CEL rules) win over the definition's.
    siblings = {k: v for k, v in node.items() if k != "$ref"}
    rules = resolved.get("x-kubernetes-validations", []) + siblings.pop("x-kubernetes-validations", [])
    resolved.update(siblings)
    if rules:
        resolved["x-kubernetes-validations"] = rules
    return resolved


def _drop_null_branch(node: dict[str, Any], path: str) -> dict[str, Any]:
    """Turn ``anyOf: [X, null]`` into X with the outer keys merged in."""
    branches = node.get("anyOf")
    if branches is None:
        return node
    non_null = [branch for branch in branches if branch.get("type") != "null"]
    outer = {k: v for k, v in node.items() if k != "anyOf"}
    if node.get("x-kubernetes-int-or-string"):
        # int | str: keep the anyOf that the API server expects next to x-kubernetes-int-or-string.
        return {**outer, "anyOf": [{"type": "integer"}, {"type": "string"}]}
    if len(non_null) != 1:
        raise SchemaConversionError(f"{path}: a union of several types has no structural schema: {branches}")
    if outer.get("default", ...) is None:
        del outer["default"]
    branch = non_null[0]
    if "anyOf" in branch:
        branch = _drop_null_branch(branch, path)
    rules = branch.get("x-kubernetes-validations", []) + outer.pop("x-kubernetes-validations", [])
    merged = {**branch, **outer}
    if rules:
        merged["x-kubernetes-validations"] = rules
    return merged


def _convert(node: dict[str, Any], definitions: dict[str, Any], path: str) -> dict[str, Any]:
    node = _resolve(node, definitions, path)
    node = _drop_null_branch(node, path)
    node = _resolve(node, definitions, path)

    if "propertyNames" in node:
        raise SchemaConversionError(f"{path}: constraints on map keys have no structural schema; use a CEL rule")
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS or key == "uniqueItems":
            continue
        if key == "const":
            result["enum"] = [value]
        elif key == "properties":
            result["properties"] = {name: _convert(child, definitions, f"{path}.{name}") for name, child in value.items()}
        elif key == "items":
            result["items"] = _convert(value, definitions, f"{path}[]")
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            result[bound] = value
            result[key] = True
        else:
            result[key] = value

    additional = node.get("additionalProperties")
    if isinstance(additional, dict):
        result["additionalProperties"] = _convert(additional, definitions, f"{path}{{}}")
    if "enum" in result and "type" not in result:
        result["type"] = "string"
    if node.get("uniqueItems"):
        item_type = result.get("items", {}).get("type")
        if item_type not in _SCALAR_TYPES:
            raise SchemaConversionError(f"{path}: unique items are supported for lists of scalars only")
        result["x-kubernetes-list-type"] = "set"
    if "type" not in result and not result.get("x-kubernetes-int-or-string"):
        raise SchemaConversionError(f"{path}: schema node without a type: {node}")
    return result
