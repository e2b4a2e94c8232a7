"""Spec of the two request kinds: the TS 28.105 MLTrainingRequest attributes plus extensions.

Both kinds share ``RequestSpec``. ``MLTrainingRequestSpec`` covers initial training,
pre-specialised training and re-training; ``MLFineTuningRequestSpec`` is an
MLTrainingRequest with ``mLTrainingType: FINE_TUNING`` that always names a pre-trained
model and says how to fine-tune it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from ..protocol import FineTuningMethod, Precision, Quantization, Task, TrainingType
from ..uris import ParsedUri
from .base import DEFAULT_EMPTY_OBJECT, UNIQUE_ITEMS, ApiModel, CelRule, SchemaExtra, cel, extension
from .common import RATIO_METRICS, DataFormat, InferenceName, ModelPerformance, ModelRef, NamespaceName, ObjectName
from .locations import (
    DATA_SOURCE_FORMS,
    DATA_SOURCE_PATTERN,
    OUTPUT_URI_FORMS,
    OUTPUT_URI_PATTERN,
    parse_data_source,
    parse_output_uri,
)

# Limits that keep the CEL cost estimate of the API server within its budget and the
# objects small; they are far above what a request needs.
MAX_LIST_ITEMS = 64
MAX_NAME_LENGTH = 253
MAX_URI_LENGTH = 512

ShortString = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]

DataSourceUri = Annotated[
    str,
    Field(min_length=1, max_length=MAX_URI_LENGTH),
    SchemaExtra(
        cel(
            CelRule(
                rule=f"self.matches(r'{DATA_SOURCE_PATTERN}')",
                message=f"each candidateTrainingDataSource entry must be {DATA_SOURCE_FORMS} in the request's "
                "namespace, with a relative path and no '..' segment",
            )
        )
    ),
]

# Resource quantity such as 500m, 2 or 8Gi, as Kubernetes writes them (an integer or a string).
QUANTITY_PATTERN = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
Quantity = Annotated[
    int | Annotated[str, Field(max_length=64, pattern=QUANTITY_PATTERN)],
    SchemaExtra({"x-kubernetes-int-or-string": True, "pattern": QUANTITY_PATTERN}),
]


class DataMapping(ApiModel):
    """How the trainer reads the training data: file format and the meaning of columns."""

    format: DataFormat | None = Field(default=None, description="File format: CSV, JSONL or PARQUET; unset: from each file's extension.")
    textColumn: ShortString | None = Field(default=None, description="Column with the input text (TEXT_CLASSIFICATION).")
    featureColumns: list[ShortString] | None = Field(
        default=None,
        max_length=1024,
        json_schema_extra=UNIQUE_ITEMS,
        description="Input feature columns (tabular and time-series tasks); unset: every column except label and time.",
    )
    labelColumn: ShortString | None = Field(
        default=None, description="Column with the class label (classification) or the target value (regression, forecasting)."
    )
    timeColumn: ShortString | None = Field(default=None, description="Column that orders the rows in time (TIME_SERIES_FORECASTING).")
    lookback: int | None = Field(default=None, ge=1, le=100000, description="TIME_SERIES_FORECASTING: past steps the model sees.")
    horizon: int | None = Field(default=None, ge=1, le=100000, description="TIME_SERIES_FORECASTING: steps ahead it forecasts.")
    validationSplit: float = Field(default=0.2, gt=0, lt=1, description="Fraction of the rows held out for validation.")
    maxRows: int | None = Field(default=None, ge=1, description="Read at most this many rows; unset: all rows.")


class ServiceAccountRef(ApiModel):
    """A ServiceAccount by namespace and name."""

    namespace: NamespaceName = Field(description="Namespace of the ServiceAccount.")
    name: ObjectName = Field(description="Name of the ServiceAccount.")


class Consumer(ApiModel):
    """Identity the request acts for, when it is not the requester itself."""

    cel_rules = (
        CelRule(
            rule="has(self.user) != has(self.serviceAccount)",
            message="consumer must name exactly one identity: user (optionally with groups) or serviceAccount",
        ),
        CelRule(
            rule="!has(self.groups) || has(self.user)",
            message="consumer.groups is only valid together with consumer.user",
            field_path=".groups",
        ),
    )

    user: ShortString | None = Field(default=None, description="User name of the consumer.")
    groups: list[ShortString] | None = Field(
        default=None, max_length=MAX_LIST_ITEMS, json_schema_extra=UNIQUE_ITEMS, description="Groups of the consumer user."
    )
    serviceAccount: ServiceAccountRef | None = Field(default=None, description="ServiceAccount that is the consumer.")

    @model_validator(mode="after")
    def _check_one_identity(self) -> Consumer:
        if (self.user is None) == (self.serviceAccount is None):
            raise ValueError("consumer must name exactly one identity: user (optionally with groups) or serviceAccount")
        if self.groups is not None and self.user is None:
            raise ValueError("consumer.groups is only valid together with consumer.user")
        return self


class Toleration(ApiModel):
    """A Pod toleration (the core/v1 Toleration shape)."""

    key: str | None = Field(default=None, max_length=317, description="Taint key the toleration matches; unset with Exists: every key.")
    operator: Literal["Exists", "Equal"] | None = Field(default=None, description="Exists or Equal; unset: Equal.")
    value: str | None = Field(default=None, max_length=63, description="Taint value the toleration matches (operator Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match: NoSchedule, PreferNoSchedule or NoExecute; unset: all effects."
    )
    tolerationSeconds: int | None = Field(
        default=None, description="How long a NoExecute taint is tolerated before eviction; unset: forever."
    )


class Hyperparameters(ApiModel):
    """Training hyperparameters; each unset one takes the trainer's default for the task."""

    epochs: int | None = Field(default=None, ge=1, le=10000, description="Passes over the training data.")
    batchSize: int | None = Field(default=None, ge=1, le=65536, description="Samples per optimisation step.")
    learningRate: float | None = Field(default=None, gt=0, le=10, description="Optimiser learning rate.")
    maxSequenceLength: int | None = Field(default=None, ge=8, le=32768, description="Tokens per text sample (TEXT_CLASSIFICATION).")
    precision: Precision | None = Field(
        default=None, description="Numeric precision: AUTO (BF16 or FP16 on CUDA, FP32 on CPU), FP32, BF16 or FP16."
    )
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1, description="Random seed for data split and initialisation.")


class ModelArchitecture(ApiModel):
    """Architecture of a model trained from scratch."""

    architecture: Literal["MLP", "LSTM"] = Field(default="MLP", description="MLP (tabular) or LSTM (time series).")
    hiddenSizes: list[Annotated[int, Field(ge=1, le=65536)]] | None = Field(
        default=None, min_length=1, max_length=16, description="Width of each hidden layer; unset: the trainer's default."
    )


class Trainer(ApiModel):
    """Where and how the trainer Job runs."""

    image: str | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        description="Trainer container image; must be one the operator allows. Unset: the operator's default image.",
    )
    gpus: int = Field(default=1, ge=0, le=64, description="GPUs for the trainer; 0 runs on CPU.")
    gpuResourceName: ShortString | None = Field(
        default=None, description="Extended resource that counts GPUs; unset: the operator's setting (nvidia.com/gpu by default)."
    )
    cpu: Quantity | None = Field(default=None, description="CPU request and limit, e.g. 2 or 500m.")
    memory: Quantity | None = Field(default=None, description="Memory request and limit, e.g. 8Gi.")
    nodeSelector: dict[str, Annotated[str, Field(max_length=63)]] | None = Field(
        default=None, max_length=32, description="Node labels the trainer Pod requires, merged over the operator's defaults."
    )
    tolerations: list[Toleration] | None = Field(
        default=None, max_length=32, description="Tolerations of the trainer Pod, added to the operator's defaults."
    )
    priorityClassName: ShortString | None = Field(default=None, description="PriorityClass of the trainer Pod.")
    runtimeClassName: ShortString | None = Field(default=None, description="RuntimeClass of the trainer Pod, e.g. nvidia.")
    queueName: Annotated[str, Field(min_length=1, max_length=63)] | None = Field(
        default=None, description="Kueue LocalQueue; set: the Job is created suspended and Kueue admits it."
    )
    hyperparameters: Hyperparameters | None = Field(default=None, description="Training hyperparameters.")
    model: ModelArchitecture | None = Field(
        default=None, description="Architecture of a model trained from scratch (INITIAL_TRAINING of tabular or time-series tasks)."
    )


class TerminationConditions(ApiModel):
    """When training stops, and how often a crashed attempt is retried."""

    maxDurationSeconds: int | None = Field(default=None, ge=1, description="Longest run time of one attempt, in seconds.")
    maxEpochs: int | None = Field(default=None, ge=1, le=10000, description="Stop after this many epochs.")
    stopWhenRequirementsMet: bool = Field(
        default=False, description="Stop early once every performanceRequirements entry is met on the validation split."
    )
    backoffLimit: int = Field(default=2, ge=0, le=20, description="Retries of an attempt that crashed.")

    def to_3gpp_text(self) -> str:
        """Render as the TS 28.105 ``terminationConditions`` string, e.g. ``maxDuration=3600s; maxEpochs=3``."""
        parts = []
        if self.maxDurationSeconds is not None:
            parts.append(f"maxDuration={self.maxDurationSeconds}s")
        if self.maxEpochs is not None:
            parts.append(f"maxEpochs={self.maxEpochs}")
        if self.stopWhenRequirementsMet:
            parts.append("stopWhenRequirementsMet=true")
        parts.append(f"backoffLimit={self.backoffLimit}")
        return "; ".join(parts)


def render_termination_conditions(conditions: TerminationConditions | None) -> str:
    """Render termination conditions as TS 28.105 text; unset renders the defaults."""
    return (conditions or TerminationConditions()).to_3gpp_text()


class Output(ApiModel):
    """Where the trained model goes and which MLModel describes it."""

    uri: str = Field(
        min_length=1,
        max_length=MAX_URI_LENGTH,
        json_schema_extra=cel(
            CelRule(
                rule=f"self.matches(r'{OUTPUT_URI_PATTERN}')",
                message=f"output.uri must be {OUTPUT_URI_FORMS} in the request's namespace, with a relative path "
                "and no '..' segment",
            )
        ),
        description=f"Directory for the model, its metadata and report.json: {OUTPUT_URI_FORMS}. "
        "Checkpoints go to <path>/.checkpoints/<request uid>, so only attempts of the same request resume from them.",
    )
    modelName: ObjectName | None = Field(
        default=None, description="Name of the MLModel the operator creates for the result; unset: <request name>-model."
    )

    @field_validator("uri")
    @classmethod
    def _check_uri(cls, value: str) -> str:
        parse_output_uri(value)
        return value

    def location(self) -> ParsedUri:
        """Return the parsed output URI."""
        return parse_output_uri(self.uri)


class LoraParameters(ApiModel):
    """LoRA adapter parameters."""

    r: int = Field(default=8, ge=1, le=256, description="Rank of the low-rank update matrices.")
    alpha: int = Field(default=16, ge=1, le=4096, description="Scaling numerator; the update is scaled by alpha / r.")
    dropout: float = Field(default=0.05, ge=0, lt=1, description="Dropout on the adapter input.")
    targetModules: list[ShortString] | None = Field(
        default=None,
        max_length=MAX_LIST_ITEMS,
        json_schema_extra=UNIQUE_ITEMS,
        description="Module names that get adapters, e.g. query and value; unset: the default for the architecture.",
    )


class IA3Parameters(ApiModel):
    """IA3 parameters: which activations get learned scaling vectors."""

    cel_rules = (
        CelRule(
            rule="!has(self.feedforwardModules) || !has(self.targetModules) || "
            "self.feedforwardModules.all(m, m in self.targetModules)",
            message="every ia3.feedforwardModules entry must also be listed in ia3.targetModules",
            field_path=".feedforwardModules",
        ),
    )

    targetModules: list[ShortString] | None = Field(
        default=None,
        max_length=MAX_LIST_ITEMS,
        json_schema_extra=UNIQUE_ITEMS,
        description="Module names whose outputs are scaled; unset: the default for the architecture.",
    )
    feedforwardModules: list[ShortString] | None = Field(
        default=None,
        max_length=MAX_LIST_ITEMS,
        json_schema_extra=UNIQUE_ITEMS,
        description="Subset of targetModules that are feed-forward layers (their inputs are scaled).",
    )

    @model_validator(mode="after")
    def _check_feedforward_subset(self) -> IA3Parameters:
        if self.feedforwardModules and self.targetModules is not None:
            missing = [name for name in self.feedforwardModules if name not in self.targetModules]
            if missing:
                raise ValueError(f"every ia3.feedforwardModules entry must also be listed in ia3.targetModules; missing: {missing}")
        return self


class FineTuning(ApiModel):
    """Parameter-efficient fine-tuning method and its parameters."""

    cel_rules = (
        CelRule(
            rule="!has(self.lora) || self.method == 'LORA'",
            message="fineTuning.lora is only valid with method LORA; remove it or set method: LORA",
            field_path=".lora",
        ),
        CelRule(
            rule="!has(self.ia3) || self.method == 'IA3'",
            message="fineTuning.ia3 is only valid with method IA3; remove it or set method: IA3",
            field_path=".ia3",
        ),
    )

    method: Literal[FineTuningMethod.LORA, FineTuningMethod.IA3] = Field(
        description="LORA (low-rank adapters) or IA3 (learned activation scaling)."
    )
    lora: LoraParameters | None = Field(default=None, description="LoRA parameters (method LORA only); unset: the defaults.")
    ia3: IA3Parameters | None = Field(default=None, description="IA3 parameters (method IA3 only); unset: the defaults.")
    mergeAdapter: bool = Field(
        default=False, description="Also write a model with the adapter merged into the base weights."
    )
    baseModelQuantization: Quantization = Field(
        default=Quantization.NONE, description="How the frozen base model is loaded: NONE, INT8 or INT4."
    )

    @model_validator(mode="after")
    def _check_method_parameters(self) -> FineTuning:
        if self.lora is not None and self.method is not FineTuningMethod.LORA:
            raise ValueError("fineTuning.lora is only valid with method LORA; remove it or set method: LORA")
        if self.ia3 is not None and self.method is not FineTuningMethod.IA3:
            raise ValueError("fineTuning.ia3 is only valid with method IA3; remove it or set method: IA3")
        return self

    def lora_parameters(self) -> LoraParameters:
        """Return the LoRA parameters with defaults filled in."""
        return self.lora or LoraParameters()

    def ia3_parameters(self) -> IA3Parameters:
        """Return the IA3 parameters with defaults filled in."""
        return self.ia3 or IA3Parameters()


IMMUTABLE_INFERENCE_NAME = CelRule(
    rule="self == oldSelf",
    message="aIMLInferenceName is immutable; create a new request to train for another inference name",
)
IMMUTABLE_MODEL_REF = CelRule(
    rule="self == oldSelf",
    message="mLModelRef is immutable; create a new request to use another model",
)
CANCEL_IS_FINAL = CelRule(
    rule="self || !oldSelf",
    message="cancelRequest cannot go back from true to false; create a new request to train again",
)


class RequestSpec(ApiModel):
    """Fields that MLTrainingRequest and MLFineTuningRequest share."""

    aIMLInferenceName: InferenceName = Field(
        json_schema_extra=cel(IMMUTABLE_INFERENCE_NAME),
        description="Inference the model is trained for (TS 28.105 AIMLInferenceName: an MDA type, an NWDAF event, "
        "an NG-RAN inference type or a vendor-specific name). Immutable.",
    )
    # Each kind redefines mLTrainingType, mLModelRef and task with its own type and default;
    # declaring them here keeps them in this position in the schema and the reference.
    mLTrainingType: TrainingType = Field(default=TrainingType.INITIAL_TRAINING, description="TS 28.105 training type.")
    mLModelRef: ModelRef | None = Field(default=None, description="MLModel to train from.")
    expectedInferenceScope: list[InferenceName] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_LIST_ITEMS,
        json_schema_extra=UNIQUE_ITEMS,
        description="Inference names the trained model is expected to cover: the AI/ML capability group of a "
        "pre-specialised model. Required for PRE_SPECIALISED_TRAINING.",
    )
    candidateTrainingDataSource: list[DataSourceUri] = Field(
        min_length=1,
        max_length=MAX_LIST_ITEMS,
        json_schema_extra=UNIQUE_ITEMS,
        description=f"Training data, each entry {DATA_SOURCE_FORMS} in the request's namespace "
        "(CSV, JSONL or Parquet files, or a directory of them).",
    )
    trainingDataQualityScore: float | None = Field(
        default=None, ge=0, le=100, description="Consumer's rating of the training data quality, 0..100."
    )
    trainingRequestSource: str | None = Field(
        default=None, min_length=1, max_length=1024, description="Who issued the request, e.g. the name or DN of an rApp."
    )
    performanceRequirements: list[ModelPerformance] | None = Field(
        default=None,
        max_length=16,
        description="Performance the trained model must reach on the validation split, one entry per metric.",
    )
    cancelRequest: bool = Field(
        default=False,
        json_schema_extra=cel(CANCEL_IS_FINAL),
        description="true cancels the training; it cannot be set back to false.",
    )
    suspendRequest: bool = Field(
        default=False, description="true suspends the training (the trainer checkpoints); false resumes it."
    )
    priority: int = Field(
        default=0,
        ge=-1000000,
        le=1000000,
        description="Priority of the training process (TS 28.105 MLTrainingProcess.priority), recorded for "
        "3GPP consumers. The operator does not order Jobs by it yet: use trainer.priorityClassName or a Kueue "
        "queue to order training.",
    )
    task: Task | None = Field(default=None, description=extension("Learning task."))
    dataMapping: DataMapping = Field(
        default_factory=DataMapping,
        json_schema_extra=DEFAULT_EMPTY_OBJECT,
        description=extension("How the trainer reads the data: format and column meanings."),
    )
    consumer: Consumer | None = Field(
        default=None,
        description=extension(
            "Identity the request acts for, e.g. an rApp's ServiceAccount when a GitOps pipeline applies it. "
            "The requester needs the impersonate permission for it; unset: the requester itself."
        ),
    )
    trainer: Trainer = Field(
        default_factory=Trainer,
        json_schema_extra=DEFAULT_EMPTY_OBJECT,
        description=extension("Trainer image, resources, placement and hyperparameters."),
    )
    terminationConditions: TerminationConditions = Field(
        default_factory=TerminationConditions,
        json_schema_extra=DEFAULT_EMPTY_OBJECT,
        description=extension(
            "Structured form of the TS 28.105 MLTrainingProcess terminationConditions string: limits and retries."
        ),
    )
    output: Output = Field(description=extension("Where the trained model goes and the MLModel that describes it."))

    @field_validator("candidateTrainingDataSource")
    @classmethod
    def _check_data_sources(cls, value: list[str]) -> list[str]:
        for index, uri in enumerate(value):
            parse_data_source(uri, field=f"spec.candidateTrainingDataSource[{index}]")
        duplicates = sorted({uri for uri in value if value.count(uri) > 1})
        if duplicates:
            raise ValueError(f"spec.candidateTrainingDataSource lists {duplicates} more than once; each entry must be unique")
        return value

    @field_validator("performanceRequirements")
    @classmethod
    def _check_score_ranges(cls, value: list[ModelPerformance] | None) -> list[ModelPerformance] | None:
        for index, requirement in enumerate(value or []):
            if requirement.performanceMetric in RATIO_METRICS and requirement.performanceScore > 1:
                raise ValueError(
                    f"spec.performanceRequirements[{index}].performanceScore must be between 0 and 1 for "
                    f"{requirement.performanceMetric.value} (a fraction, not a percentage); got {requirement.performanceScore}"
                )
        return value

    def data_sources(self) -> list[ParsedUri]:
        """Return the parsed ``candidateTrainingDataSource`` entries in order."""
        return [
            parse_data_source(uri, field=f"spec.candidateTrainingDataSource[{index}]")
            for index, uri in enumerate(self.candidateTrainingDataSource)
        ]

    def termination_conditions_text(self) -> str:
        """Return ``terminationConditions`` as the TS 28.105 string."""
        return self.terminationConditions.to_3gpp_text()


TRAINING_TYPES_OF_TRAINING_REQUEST = "INITIAL_TRAINING, PRE_SPECIALISED_TRAINING or RE_TRAINING"
FINE_TUNING_IN_TRAINING_REQUEST = (
    "mLTrainingType FINE_TUNING is not accepted in an MLTrainingRequest; create an MLFineTuningRequest "
    f"(kubectl short name mlftr) instead. Accepted here: {TRAINING_TYPES_OF_TRAINING_REQUEST}"
)


class MLTrainingRequestSpec(RequestSpec):
    """An ML training request: initial training, pre-specialised training or re-training."""

    cel_rules = (
        CelRule(
            rule="self.mLTrainingType != 'RE_TRAINING' || has(self.mLModelRef)",
            message="mLModelRef is required when mLTrainingType is RE_TRAINING; name the MLModel to re-train",
            field_path=".mLModelRef",
            reason="FieldValueRequired",
        ),
        CelRule(
            rule="self.mLTrainingType != 'PRE_SPECIALISED_TRAINING' || has(self.expectedInferenceScope)",
            message="expectedInferenceScope is required when mLTrainingType is PRE_SPECIALISED_TRAINING; "
            "list the inference names the model is to cover",
            field_path=".expectedInferenceScope",
            reason="FieldValueRequired",
        ),
        CelRule(
            rule="has(self.mLModelRef) == has(oldSelf.mLModelRef)",
            message="mLModelRef is immutable; it cannot be added or removed after creation",
            field_path=".mLModelRef",
        ),
    )

    mLTrainingType: TrainingType = Field(
        default=TrainingType.INITIAL_TRAINING,
        json_schema_extra=cel(CelRule(rule="self != 'FINE_TUNING'", message=FINE_TUNING_IN_TRAINING_REQUEST)),
        description=f"TS 28.105 training type: {TRAINING_TYPES_OF_TRAINING_REQUEST}. "
        "Fine-tuning has its own kind, MLFineTuningRequest.",
    )
    mLModelRef: ModelRef | None = Field(
        default=None,
        json_schema_extra=cel(IMMUTABLE_MODEL_REF),
        description="MLModel to re-train (required for RE_TRAINING); the namespace defaults to the request's. Immutable.",
    )
    task: Task | None = Field(
        default=None,
        description=extension(
            "Learning task: TEXT_CLASSIFICATION, TABULAR_CLASSIFICATION, TABULAR_REGRESSION or "
            "TIME_SERIES_FORECASTING; unset for RE_TRAINING: the task of mLModelRef."
        ),
    )

    @model_validator(mode="after")
    def _check_training_type(self) -> MLTrainingRequestSpec:
        if self.mLTrainingType is TrainingType.FINE_TUNING:
            raise ValueError(FINE_TUNING_IN_TRAINING_REQUEST)
        if self.mLTrainingType is TrainingType.RE_TRAINING and self.mLModelRef is None:
            raise ValueError("mLModelRef is required when mLTrainingType is RE_TRAINING; name the MLModel to re-train")
        if self.mLTrainingType is TrainingType.PRE_SPECIALISED_TRAINING and not self.expectedInferenceScope:
            raise ValueError(
                "expectedInferenceScope is required when mLTrainingType is PRE_SPECIALISED_TRAINING; "
                "list the inference names the model is to cover"
            )
        return self


class MLFineTuningRequestSpec(RequestSpec):
    """A fine-tuning request: TS 28.105 MLTrainingRequest with mLTrainingType FINE_TUNING."""

    mLTrainingType: Literal[TrainingType.FINE_TUNING] = Field(
        default=TrainingType.FINE_TUNING, description="TS 28.105 training type; always FINE_TUNING for this kind."
    )
    mLModelRef: ModelRef = Field(
        json_schema_extra=cel(IMMUTABLE_MODEL_REF),
        description="Pre-trained MLModel to fine-tune; the namespace defaults to the request's. Immutable.",
    )
    task: Task = Field(
        default=Task.TEXT_CLASSIFICATION,
        description=extension(
            "Learning task: TEXT_CLASSIFICATION, TABULAR_CLASSIFICATION, TABULAR_REGRESSION or TIME_SERIES_FORECASTING."
        ),
    )
    fineTuning: FineTuning = Field(description=extension("Fine-tuning method (LORA or IA3) and its parameters."))

    @field_validator("mLTrainingType", mode="before")
    @classmethod
    def _check_training_type(cls, value: object) -> object:
        if value not in (TrainingType.FINE_TUNING, TrainingType.FINE_TUNING.value):
            raise ValueError(
                f"mLTrainingType of an MLFineTuningRequest must be FINE_TUNING, got {value!r}; "
                f"use an MLTrainingRequest for {TRAINING_TYPES_OF_TRAINING_REQUEST}"
            )
        return value
