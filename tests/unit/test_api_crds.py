"""Generated files match the API models, and the CRD schemas are what the API server needs.

The drift checks fail when someone changes a model without regenerating ``crds/`` and
``docs/api-reference.md``. The static walks catch the two ways a CRD silently loses data
or gets rejected: a status field that the schema lacks (the API server prunes it without
an error) and a non-structural schema node.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from ml_training_operator.api import RESOURCE_KINDS, MLFineTuningRequest, MLModel, MLTrainingRequest, crdgen, reference
from ml_training_operator.api.base import EXTENSION_PREFIX

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
REFERENCE = ROOT / "docs" / "api-reference.md"


def crd_on_disk(kind: type) -> dict[str, Any]:
    return yaml.safe_load((CRD_DIR / f"{kind.crd_names.plural}.aiml.mns.io.yaml").read_text())


def version_of(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    return version


def schema_of(kind: type) -> dict[str, Any]:
    return version_of(crd_on_disk(kind))["schema"]["openAPIV3Schema"]


def test_crds_up_to_date() -> None:
    differences = crdgen.diff_directory(CRD_DIR, crdgen.generated_files(), "*.aiml.mns.io.yaml")
    assert differences == [], "crds/ differs from the models; run python -m ml_training_operator.api.crdgen --out crds/"


def test_reference_up_to_date() -> None:
    differences = crdgen.diff_directory(REFERENCE.parent, {REFERENCE.name: reference.render()}, REFERENCE.name)
    assert differences == [], "docs/api-reference.md differs; run python -m ml_training_operator.api.reference --out docs/api-reference.md"


def test_crdgen_check_reports_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert crdgen.main(["--out", str(tmp_path)]) == 0
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 0

    target = tmp_path / "mlmodels.aiml.mns.io.yaml"
    target.write_text(target.read_text().replace("shortNames:\n    - mlm", "shortNames:\n    - mm"))
    (tmp_path / "old.aiml.mns.io.yaml").write_text("stale\n")
    capsys.readouterr()

    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 1
    output = capsys.readouterr().out
    assert "-    - mm" in output
    assert "+    - mlm" in output
    assert "old.aiml.mns.io.yaml (on disk)" in output


def test_reference_check_reports_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "api-reference.md"
    assert reference.main(["--out", str(out)]) == 0
    out.write_text(out.read_text().replace("FINISHED", "FINSHED", 1))
    capsys.readouterr()

    assert reference.main(["--out", str(out), "--check"]) == 1
    assert "FINSHED" in capsys.readouterr().out


def model_paths(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, list[str]]]:
    """Yield every field of a model, recursively, as (dotted path, schema path)."""
    for name, field in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        yield path, path.split(".")
        for nested in nested_models(field.annotation):
            yield from model_paths(nested, path)


def nested_models(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for argument in typing.get_args(annotation):
        yield from nested_models(argument)


def schema_node(schema: dict[str, Any], parts: list[str]) -> dict[str, Any] | None:
    node = schema
    for part in parts:
        while node.get("type") == "array":
            node = node["items"]
        node = node.get("properties", {}).get(part)
        if node is None:
            return None
    return node


@pytest.mark.parametrize("kind", RESOURCE_KINDS, ids=lambda kind: kind.__name__)
@pytest.mark.parametrize("section", ["spec", "status"])
def test_every_model_field_in_crd(kind: type, section: str) -> None:
    schema = schema_of(kind)["properties"][section]
    model = kind.model_fields[section].annotation

    missing = [path for path, parts in model_paths(model) if schema_node(schema, parts) is None]
    assert missing == [], f"{kind.__name__}.{section} fields missing from the CRD (the API server would prune them)"


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("kind", RESOURCE_KINDS, ids=lambda kind: kind.__name__)
def test_schema_is_structural(kind: type) -> None:
    problems = []
    for path, node in walk(schema_of(kind)):
        if "$ref" in node or "allOf" in node or "oneOf" in node or "nullable" in node:
            problems.append(f"{path}: $ref, allOf, oneOf or nullable")
        if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
            problems.append(f"{path}: anyOf outside int-or-string")
        if "type" not in node and not node.get("x-kubernetes-int-or-string"):
            problems.append(f"{path}: no type")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: properties next to additionalProperties")
        if "x-kubernetes-preserve-unknown-fields" in node or "uniqueItems" in node:
            problems.append(f"{path}: preserve-unknown-fields or uniqueItems")
    assert problems == []


@pytest.mark.parametrize("kind", RESOURCE_KINDS, ids=lambda kind: kind.__name__)
def test_fields_described_and_bounded(kind: type) -> None:
    """Each field shows a description in kubectl explain, and strings and lists have bounds for CEL cost estimates."""
    problems = []
    for path, node in walk(schema_of(kind)):
        is_field = path.count(".") >= 1 and not path.endswith(("[]", "{}"))
        if is_field and path not in (".metadata",) and not node.get("description"):
            problems.append(f"{path}: no description")
        if path.startswith(".metadata"):
            continue
        if node.get("type") == "string" and not ({"maxLength", "enum", "format"} & node.keys()):
            problems.append(f"{path}: string without maxLength")
        if node.get("type") == "array" and "maxItems" not in node:
            problems.append(f"{path}: list without maxItems")
        if node.get("type") == "object" and "additionalProperties" in node and "maxProperties" not in node:
            problems.append(f"{path}: map without maxProperties")
    problems = [problem for problem in problems if not problem.startswith((".apiVersion", ".kind"))]
    assert problems == []


def test_extensions_marked() -> None:
    spec = schema_of(MLFineTuningRequest)["properties"]["spec"]["properties"]
    for name in ("task", "dataMapping", "consumer", "trainer", "terminationConditions", "output", "fineTuning"):
        assert spec[name]["description"].startswith(EXTENSION_PREFIX), name
    for name in ("aIMLInferenceName", "mLModelRef", "candidateTrainingDataSource", "performanceRequirements"):
        assert not spec[name]["description"].startswith(EXTENSION_PREFIX), name


def rules(node: dict[str, Any]) -> list[str]:
    return [entry["rule"] for entry in node.get("x-kubernetes-validations", [])]


def test_transition_rules() -> None:
    for kind in (MLTrainingRequest, MLFineTuningRequest):
        spec = schema_of(kind)["properties"]["spec"]
        assert rules(spec["properties"]["aIMLInferenceName"]) == ["self == oldSelf"]
        assert rules(spec["properties"]["mLModelRef"]) == ["self == oldSelf"]
        assert rules(spec["properties"]["cancelRequest"]) == ["self || !oldSelf"]
    spec = schema_of(MLTrainingRequest)["properties"]["spec"]
    assert "has(self.mLModelRef) == has(oldSelf.mLModelRef)" in rules(spec)


def test_training_type_enums() -> None:
    training = schema_of(MLTrainingRequest)["properties"]["spec"]["properties"]["mLTrainingType"]
    fine_tuning = schema_of(MLFineTuningRequest)["properties"]["spec"]["properties"]["mLTrainingType"]

    # FINE_TUNING stays in the enum, so the CEL rule rejects it with a message that points to MLFineTuningRequest.
    assert "FINE_TUNING" in training["enum"]
    assert "MLFineTuningRequest" in training["x-kubernetes-validations"][0]["message"]
    assert (fine_tuning["enum"], fine_tuning["default"]) == (["FINE_TUNING"], "FINE_TUNING")


@pytest.mark.parametrize("kind", RESOURCE_KINDS, ids=lambda kind: kind.__name__)
def test_crd_names_and_subresources(kind: type) -> None:
    crd = crd_on_disk(kind)
    names = crd["spec"]["names"]

    assert crd["metadata"]["name"] == f"{names['plural']}.aiml.mns.io"
    assert crd["spec"]["scope"] == "Namespaced"
    assert names["categories"] == ["aiml"]
    assert version_of(crd)["name"] == "v1alpha1"
    assert version_of(crd)["subresources"] == {"status": {}}


def test_short_names() -> None:
    assert crd_on_disk(MLTrainingRequest)["spec"]["names"]["shortNames"] == ["mltr"]
    assert crd_on_disk(MLFineTuningRequest)["spec"]["names"]["shortNames"] == ["mlftr"]
    assert crd_on_disk(MLModel)["spec"]["names"]["shortNames"] == ["mlm"]


def printer_columns(kind: type) -> dict[str, str]:
    return {
        column["name"]: column["jsonPath"]
        for column in version_of(crd_on_disk(kind))["additionalPrinterColumns"]
        if not column.get("priority")
    }


def test_printer_columns() -> None:
    for kind in (MLTrainingRequest, MLFineTuningRequest):
        columns = printer_columns(kind)
        assert columns["Inference"] == ".spec.aIMLInferenceName"
        assert columns["Status"] == ".status.requestStatus"
        assert columns["Progress"] == ".status.process.progressStatus.progressPercentage"
        assert columns["State"] == ".status.process.progressStatus.status"
        assert columns["Score"] == ".status.report.modelPerformanceValidation[0].performanceScore"
        assert list(columns)[-1] == "Age"
    columns = printer_columns(MLModel)
    assert list(columns) == ["Inference", "Format", "Base", "Age"]
    assert columns["Format"] == ".spec.artifact.format"


def test_reference_lists_fields_and_spelling_note() -> None:
    text = reference.render()

    assert "`fineTuning.lora.r`" in text
    assert "`process.progressStatus.progressPercentage`" in text
    assert "FINSHED" in text
    assert "| extension |" in text
    assert "| TS 28.105 |" in text
