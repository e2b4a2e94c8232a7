"""Building blocks shared by every API model: the base class and schema annotations.

The pydantic models in this package are the only definition of the custom resources.
Everything a CustomResourceDefinition needs beyond plain JSON schema (CEL rules, list
types, int-or-string quantities) is attached here as schema annotations, so the CRD
generator only has to translate, never to know field names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

EXTENSION_PREFIX = "Extension (not in TS 28.105): "


def extension(text: str) -> str:
    """Return a field description that marks the field as this project's extension of TS 28.105."""
    return EXTENSION_PREFIX + text


def is_extension(description: str | None) -> bool:
    """Tell whether a description marks its field as an extension of TS 28.105."""
    return bool(description) and description.startswith(EXTENSION_PREFIX)


@dataclass(frozen=True)
class CelRule:
    """One entry of ``x-kubernetes-validations``: a CEL expression the API server evaluates.

    ``field_path`` points the error at a child field (relative JSON path such as
    ``.mLModelRef``), and ``reason`` selects the error type the API server reports.
    A rule that mentions ``oldSelf`` is a transition rule and runs on updates only.
    """

    rule: str
    message: str
    field_path: str | None = None
    reason: str | None = None

    def to_schema(self) -> dict[str, str]:
        entry = {"rule": self.rule, "message": self.message}
        if self.field_path:
            entry["fieldPath"] = self.field_path
        if self.reason:
            entry["reason"] = self.reason
        return entry


def cel(*rules: CelRule) -> dict[str, Any]:
    """Return ``json_schema_extra`` that attaches CEL rules to a field."""
    return {"x-kubernetes-validations": [rule.to_schema() for rule in rules]}


# eq=False keeps the default identity hash, which typing needs for Annotated metadata.
@dataclass(frozen=True, eq=False)
class SchemaExtra:
    """Annotated metadata that adds keys to a type's JSON schema, e.g. CEL rules on list items."""

    extra: dict[str, Any] = field(default_factory=dict)

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.update(self.extra)
        return schema


# Marks a list of scalars whose items must be unique. The CRD generator renders it as
# ``x-kubernetes-list-type: set`` because the API server rejects ``uniqueItems: true``.
UNIQUE_ITEMS: dict[str, Any] = {"uniqueItems": True}

# Marks an object field that the API server fills with ``{}`` when it is absent, so the
# defaults of its own fields apply too and the stored object matches the Python default.
DEFAULT_EMPTY_OBJECT: dict[str, Any] = {"default": {}}


class ApiModel(BaseModel):
    """Base of every spec and status model: wire names as attribute names, unknown keys rejected.

    Attribute names are the camelCase wire names themselves (``aIMLInferenceName``,
    ``mLModelRef``), because TS 28.105 fixes their spelling and a snake_case alias would
    be a second name for the same thing. A subclass lists model-level CEL rules in
    ``cel_rules``; they are not inherited.
    """

    model_config = ConfigDict(extra="forbid")

    cel_rules: ClassVar[tuple[CelRule, ...]] = ()

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        rules = cls.__dict__.get("cel_rules", ())
        if rules:
            target = handler.resolve_ref_schema(schema)
            target["x-kubernetes-validations"] = [rule.to_schema() for rule in rules]
        return schema

    def to_wire(self) -> dict[str, Any]:
        """Serialise for the API server: JSON types, unset optional fields left out."""
        return self.model_dump(mode="json", exclude_none=True)
