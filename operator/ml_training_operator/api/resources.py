"""The three custom resources as whole objects, with the names and columns of their CRDs.

``MLFineTuningRequest.model_validate(body)`` parses an object as the API server or Kopf
returns it. Each class also carries what its CRD needs besides the schema: plural, short
names and printer columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..names import API_VERSION
from .common import ObjectMeta, ResolvedModelRef
from .mlmodel import MLModelSpec, MLModelStatus
from .request_spec import MLFineTuningRequestSpec, MLTrainingRequestSpec
from .request_status import TrainingRequestStatus

CATEGORY = "aiml"


@dataclass(frozen=True)
class PrinterColumn:
    """One column of ``kubectl get``."""

    name: str
    type: str
    json_path: str
    description: str
    priority: int = 0

    def to_crd(self) -> dict[str, Any]:
        column: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path, "description": self.description}
        if self.priority:
            column["priority"] = self.priority
        return column


@dataclass(frozen=True)
class CrdNames:
    """Names of a CRD as ``spec.names`` lists them."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]

    def to_crd(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "listKind": f"{self.kind}List",
            "plural": self.plural,
            "singular": self.singular,
            "shortNames": list(self.short_names),
            "categories": [CATEGORY],
        }


AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since the object was created.")

REQUEST_COLUMNS = (
    PrinterColumn("Inference", "string", ".spec.aIMLInferenceName", "Inference the model is trained for."),
    PrinterColumn("Status", "string", ".status.requestStatus", "TS 28.105 request status."),
    PrinterColumn("Progress", "integer", ".status.process.progressStatus.progressPercentage", "Progress in percent."),
    PrinterColumn("State", "string", ".status.process.progressStatus.status", "State of the training process."),
    PrinterColumn("Step", "string", ".status.process.progressStatus.progressStateInfo", "Current step."),
    PrinterColumn(
        "Metric", "string", ".status.report.modelPerformanceValidation[0].performanceMetric", "First validation metric."
    ),
    PrinterColumn(
        "Score", "number", ".status.report.modelPerformanceValidation[0].performanceScore", "Score of the first validation metric."
    ),
    AGE,
    PrinterColumn("Type", "string", ".spec.mLTrainingType", "TS 28.105 training type.", priority=1),
    PrinterColumn("Model", "string", ".spec.mLModelRef.name", "Model trained or fine-tuned from.", priority=1),
)

MODEL_COLUMNS = (
    PrinterColumn("Inference", "string", ".spec.inferenceScope", "Inference names the model covers."),
    PrinterColumn("Format", "string", ".spec.artifact.format", "Storage format of the artifact."),
    PrinterColumn("Base", "string", ".spec.sourceTrainedMLModelRef.name", "Model this one derives from."),
    AGE,
    PrinterColumn("Type", "string", ".spec.mLTrainingType", "How the model was produced.", priority=1),
    PrinterColumn("URI", "string", ".spec.artifact.uri", "Where the artifact is.", priority=1),
)


class Resource(BaseModel):
    """Base of the three kinds: apiVersion, kind, metadata, spec, status."""

    model_config = ConfigDict(extra="forbid")

    crd_names: ClassVar[CrdNames]
    printer_columns: ClassVar[tuple[PrinterColumn, ...]]

    apiVersion: Literal["aiml.mns.io/v1alpha1"] = Field(default=API_VERSION)
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    def to_wire(self) -> dict[str, Any]:
        """Serialise for the API server: JSON types, unset optional fields left out."""
        return self.model_dump(mode="json", exclude_none=True)


class _Request(Resource):
    def resolved_model_ref(self) -> ResolvedModelRef | None:
        """Return ``spec.mLModelRef`` with its namespace defaulted to the request's; None when unset."""
        reference = self.spec.mLModelRef  # type: ignore[attr-defined]
        if reference is None:
            return None
        return reference.resolve(self.metadata.namespace or "default")


class MLTrainingRequest(_Request):
    """A request to train an ML model (TS 28.105 MLTrainingRequest): initial training, pre-specialised training or re-training."""

    crd_names: ClassVar[CrdNames] = CrdNames("MLTrainingRequest", "mltrainingrequests", "mltrainingrequest", ("mltr",))
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = REQUEST_COLUMNS

    kind: Literal["MLTrainingRequest"] = "MLTrainingRequest"
    spec: MLTrainingRequestSpec
    status: TrainingRequestStatus = Field(default_factory=TrainingRequestStatus)


class MLFineTuningRequest(_Request):
    """A request to fine-tune a pre-trained MLModel for one inference (TS 28.105 MLTrainingRequest with mLTrainingType FINE_TUNING)."""

    crd_names: ClassVar[CrdNames] = CrdNames("MLFineTuningRequest", "mlfinetuningrequests", "mlfinetuningrequest", ("mlftr",))
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = REQUEST_COLUMNS

    kind: Literal["MLFineTuningRequest"] = "MLFineTuningRequest"
    spec: MLFineTuningRequestSpec
    status: TrainingRequestStatus = Field(default_factory=TrainingRequestStatus)

    def resolved_model_ref(self) -> ResolvedModelRef:
        """Return ``spec.mLModelRef`` with its namespace defaulted to the request's."""
        return self.spec.mLModelRef.resolve(self.metadata.namespace or "default")


class MLModel(Resource):
    """An ML model (TS 28.105 MLModel): its artifact, format and the inference names it covers."""

    crd_names: ClassVar[CrdNames] = CrdNames("MLModel", "mlmodels", "mlmodel", ("mlm",))
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = MODEL_COLUMNS

    kind: Literal["MLModel"] = "MLModel"
    spec: MLModelSpec
    status: MLModelStatus = Field(default_factory=MLModelStatus)

    def resolved_source_ref(self) -> ResolvedModelRef | None:
        """Return ``spec.sourceTrainedMLModelRef`` with its namespace defaulted to the model's; None when unset."""
        reference = self.spec.sourceTrainedMLModelRef
        if reference is None:
            return None
        return reference.resolve(self.metadata.namespace or "default")


RESOURCE_KINDS: tuple[type[Resource], ...] = (MLTrainingRequest, MLFineTuningRequest, MLModel)
REQUEST_KINDS = (MLTrainingRequest, MLFineTuningRequest)
