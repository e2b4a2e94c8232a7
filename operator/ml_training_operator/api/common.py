"""Types that several resources share: enums, object references, performance entries, conditions.

The enums that the trainer also uses (metrics, training type, precision, task, fine-tuning
method, quantization) come from ``protocol`` so the CRD and the trainer's wire format
cannot list different values.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from ..protocol import PerformanceMetric
from .base import ApiModel, CelRule, extension

# Kubernetes object names (RFC 1123 subdomain) and namespaces (RFC 1123 label).
OBJECT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
NAMESPACE_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

ObjectName = Annotated[str, Field(min_length=1, max_length=253, pattern=OBJECT_NAME_PATTERN)]
NamespaceName = Annotated[str, Field(min_length=1, max_length=63, pattern=NAMESPACE_PATTERN)]

# aIMLInferenceName is, in TS 28.105 Rel-19, one of an MDA type, an NWDAF event, an NG-RAN
# inference type or a vendor-specific string; all of them are strings on the wire.
InferenceName = Annotated[str, Field(min_length=1, max_length=256)]

# Metrics whose score is a fraction between 0 and 1.
RATIO_METRICS = (PerformanceMetric.ACCURACY, PerformanceMetric.F1, PerformanceMetric.PRECISION, PerformanceMetric.RECALL)


class RequestStatus(str, Enum):
    """TS 28.105 Rel-19 RequestStatus. It has no failure value; a failure shows in the process monitor."""

    NOT_STARTED = "NOT_STARTED"
    IN_PROGRESS = "IN_PROGRESS"
    CANCELLING = "CANCELLING"
    SUSPENDED = "SUSPENDED"
    FINISHED = "FINISHED"
    CANCELLED = "CANCELLED"


class ProcessStatus(str, Enum):
    """Process monitor status, after the TS 28.623 ProcessMonitor (spelled FINISHED, not FINSHED)."""

    NOT_STARTED = "NOT_STARTED"
    WAITING = "WAITING"
    RUNNING = "RUNNING"
    SUSPENDED = "SUSPENDED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"


class ConditionStatus(str, Enum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class ConditionType(str, Enum):
    """Condition types the operator sets on requests."""

    READY = "Ready"
    AUTHORIZED = "Authorized"
    JOB_CREATED = "JobCreated"
    ADMITTED = "Admitted"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"
    CANCELLED = "Cancelled"


class ArtifactFormat(str, Enum):
    """How a model artifact is stored."""

    HF_TRANSFORMERS = "HF_TRANSFORMERS"
    PEFT_ADAPTER = "PEFT_ADAPTER"
    SAFETENSORS = "SAFETENSORS"
    TORCH_STATE_DICT = "TORCH_STATE_DICT"


class DataFormat(str, Enum):
    """File format of training data."""

    CSV = "CSV"
    JSONL = "JSONL"
    PARQUET = "PARQUET"


class ModelRef(ApiModel):
    """Reference to an MLModel; the namespace defaults to the namespace of the referring object."""

    name: ObjectName = Field(description="Name of the MLModel.")
    namespace: NamespaceName | None = Field(
        default=None, description="Namespace of the MLModel; unset: the namespace of the referring object."
    )

    def resolve(self, default_namespace: str) -> ResolvedModelRef:
        """Return the reference with its namespace filled in."""
        return ResolvedModelRef(name=self.name, namespace=self.namespace or default_namespace)


class ResolvedModelRef(ApiModel):
    """Reference to an MLModel with its namespace."""

    name: ObjectName = Field(description="Name of the MLModel.")
    namespace: NamespaceName = Field(description="Namespace of the MLModel.")


class RequestRef(ApiModel):
    """Reference to the request that produced a model."""

    kind: str = Field(max_length=64, description="Kind of the request: MLTrainingRequest or MLFineTuningRequest.")
    name: ObjectName = Field(description="Name of the request.")
    namespace: NamespaceName = Field(description="Namespace of the request.")


class ModelPerformance(ApiModel):
    """TS 28.105 ModelPerformance: one metric and its score."""

    cel_rules = (
        CelRule(
            rule="!(self.performanceMetric in ['ACCURACY', 'F1', 'PRECISION', 'RECALL']) || self.performanceScore <= 1.0",
            message="performanceScore must be between 0 and 1 for ACCURACY, F1, PRECISION and RECALL "
            "(a fraction, not a percentage)",
            field_path=".performanceScore",
        ),
    )

    inferenceOutputName: str | None = Field(
        default=None, max_length=256, description="Inference output the metric applies to; unset: the model's only output."
    )
    performanceMetric: PerformanceMetric = Field(
        description="Metric: ACCURACY, F1, PRECISION and RECALL (fractions 0..1, higher is better) or "
        "MAE, RMSE and MAPE (errors >= 0, lower is better; MAPE in percent)."
    )
    performanceScore: float = Field(
        ge=0, description="Score of the metric: a fraction 0..1 for ACCURACY, F1, PRECISION, RECALL; >= 0 otherwise."
    )
    decisionConfidenceScore: float | None = Field(
        default=None, ge=0, le=1, description="Confidence in the decision the score supports, 0..1."
    )


class ModelPerformanceResult(ModelPerformance):
    """A ModelPerformance entry as achieved, with the requirement it was judged against."""

    requiredScore: float | None = Field(
        default=None, description=extension("Score that performanceRequirements asked for this metric, if any.")
    )
    requirementMet: bool | None = Field(
        default=None,
        description=extension("Whether the achieved score meets requiredScore (at most it for MAE, RMSE, MAPE; at least it otherwise)."),
    )


class Condition(ApiModel):
    """Kubernetes condition (API conventions): the latest observation of one aspect of the object."""

    type: str = Field(
        min_length=1,
        max_length=316,
        description="Condition type: Ready, Authorized, JobCreated, Admitted, Running, Succeeded, Failed, "
        "Suspended or Cancelled.",
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str | None = Field(default=None, max_length=1024, description="Reason for the last transition, one CamelCase word.")
    message: str | None = Field(default=None, max_length=32768, description="Human-readable details of the last transition.")
    lastTransitionTime: datetime | None = Field(default=None, description="When the status last changed.")
    observedGeneration: int | None = Field(
        default=None, ge=0, description="metadata.generation of the object that the condition was set for."
    )


class ObjectMeta(BaseModel):
    """The part of Kubernetes object metadata the operator reads; other keys are kept as they are."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resourceVersion: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    finalizers: list[str] = Field(default_factory=list)
    ownerReferences: list[dict[str, Any]] = Field(default_factory=list)
    creationTimestamp: datetime | None = None
    deletionTimestamp: datetime | None = None
