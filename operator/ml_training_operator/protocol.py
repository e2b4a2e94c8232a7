"""Wire format between the operator and the trainer running in the Job.

Three documents cross that boundary, and both sides import them from here so that
they cannot drift apart:

- ``TrainerConfig``: the JSON document the operator mounts into the Pod (a ConfigMap),
  which the trainer reads at start.
- ``ProgressEvent``: what the trainer prints as one JSON line on stdout and POSTs to the
  operator's status endpoint while it works.
- ``TrainerReport``: the compact final report (at most ``MAX_TERMINATION_MESSAGE_BYTES``)
  that the trainer writes to the container's termination message path; the full report
  sits next to the model in the output location.

This module depends on pydantic only, so the trainer image can import it without the
operator's Kubernetes dependencies.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PROTOCOL_VERSION = "v1alpha1"

# The trainer exits with this code when its configuration or input data is invalid.
# The Job's podFailurePolicy fails the Job at once on it instead of retrying, because a
# retry with the same configuration cannot succeed. 78 is EX_CONFIG from sysexits.h.
CONFIG_ERROR_EXIT_CODE = 78

# Kubernetes truncates termination messages at 4096 bytes.
MAX_TERMINATION_MESSAGE_BYTES = 4096

CONFIG_FILE_NAME = "config.json"
FULL_REPORT_FILE_NAME = "report.json"


class WireModel(BaseModel):
    """Base of every wire document: camelCase on the wire, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, use_enum_values=False)


class Task(str, Enum):
    """Learning task the trainer sets up."""

    TEXT_CLASSIFICATION = "TEXT_CLASSIFICATION"
    TABULAR_CLASSIFICATION = "TABULAR_CLASSIFICATION"
    TABULAR_REGRESSION = "TABULAR_REGRESSION"
    TIME_SERIES_FORECASTING = "TIME_SERIES_FORECASTING"


class TrainingType(str, Enum):
    """3GPP ``mLTrainingType`` literals (TS 28.105 Rel-19)."""

    INITIAL_TRAINING = "INITIAL_TRAINING"
    PRE_SPECIALISED_TRAINING = "PRE_SPECIALISED_TRAINING"
    RE_TRAINING = "RE_TRAINING"
    FINE_TUNING = "FINE_TUNING"


class PerformanceMetric(str, Enum):
    """Metrics the trainer can compute on the validation split."""

    ACCURACY = "ACCURACY"
    F1 = "F1"
    PRECISION = "PRECISION"
    RECALL = "RECALL"
    MAE = "MAE"
    RMSE = "RMSE"
    MAPE = "MAPE"


# For these metrics a smaller score is better; a requirement is met when the achieved
# score is at most the required one. For the others it must be at least the required one.
LOWER_IS_BETTER = frozenset({PerformanceMetric.MAE, PerformanceMetric.RMSE, PerformanceMetric.MAPE})


class Precision(str, Enum):
    """Numeric precision for training; AUTO picks bf16/fp16 on CUDA and fp32 on CPU."""

    AUTO = "AUTO"
    FP32 = "FP32"
    BF16 = "BF16"
    FP16 = "FP16"


class FineTuningMethod(str, Enum):
    """Parameter-efficient fine-tuning methods, plus FULL for a full fine-tune baseline."""

    LORA = "LORA"
    IA3 = "IA3"
    FULL = "FULL"


class Quantization(str, Enum):
    """Loading mode of the frozen base model for fine-tuning."""

    NONE = "NONE"
    INT8 = "INT8"
    INT4 = "INT4"


class Phase(str, Enum):
    """Trainer phases, reported as 3GPP ``progressStateInfo``."""

    COLLECTING_DATA = "COLLECTING_DATA"
    PREPARING_TRAINING_DATA = "PREPARING_TRAINING_DATA"
    TRAINING = "TRAINING"
    EVALUATING = "EVALUATING"
    SAVING_MODEL = "SAVING_MODEL"


class RequestRef(WireModel):
    """The request this run belongs to, for logs, metadata and progress events."""

    kind: str
    namespace: str
    name: str
    uid: str = ""
    attempt: int = Field(default=1, ge=1)


class DataConfig(WireModel):
    """Location of the training data and the meaning of its columns."""

    sources: list[str] = Field(
        min_length=1,
        description="Local paths or file:// URIs of CSV, JSONL or Parquet files, as mounted in the Pod.",
    )
    consumerUris: list[str] = Field(
        default_factory=list,
        description="The candidateTrainingDataSource URIs as the consumer wrote them, same order as sources.",
    )
    format: Literal["CSV", "JSONL", "PARQUET"] | None = Field(
        default=None, description="File format; inferred from each file's extension when unset."
    )
    textColumn: str | None = None
    featureColumns: list[str] = Field(default_factory=list)
    labelColumn: str | None = Field(default=None, description="Class label (classification) or target (regression).")
    timeColumn: str | None = None
    lookback: int = Field(default=24, ge=1, description="Time series: past steps fed to the forecaster.")
    horizon: int = Field(default=1, ge=1, description="Time series: steps ahead to forecast.")
    validationSplit: float = Field(default=0.2, gt=0, lt=1)
    maxRows: int | None = Field(default=None, ge=1)


class LoraParameters(WireModel):
    r: int = Field(default=8, ge=1)
    alpha: int = Field(default=16, ge=1)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    targetModules: list[str] = Field(default_factory=list, description="Empty: the default for the architecture.")


class IA3Parameters(WireModel):
    targetModules: list[str] = Field(default_factory=list, description="Empty: the default for the architecture.")
    feedforwardModules: list[str] = Field(default_factory=list)


class FineTuningConfig(WireModel):
    method: FineTuningMethod = FineTuningMethod.LORA
    lora: LoraParameters = Field(default_factory=LoraParameters)
    ia3: IA3Parameters = Field(default_factory=IA3Parameters)
    mergeAdapter: bool = False
    quantization: Quantization = Quantization.NONE


class ModelConfig(WireModel):
    """The model to build (initial training) or load (re-training, fine-tuning)."""

    architecture: Literal["MLP", "LSTM", "PRETRAINED_TRANSFORMER"] = "MLP"
    basePath: str | None = Field(
        default=None, description="Directory of the model to start from: HF format for fine-tuning, ours for re-training."
    )
    hiddenSizes: list[int] = Field(default_factory=lambda: [64, 64])
    labels: list[str] = Field(default_factory=list, description="Class names; inferred from the data when empty.")


class Hyperparameters(WireModel):
    epochs: int = Field(default=3, ge=1)
    batchSize: int = Field(default=16, ge=1)
    learningRate: float = Field(default=1e-3, gt=0)
    maxSequenceLength: int = Field(default=64, ge=8)
    precision: Precision = Precision.AUTO
    seed: int = 42


class TerminationConfig(WireModel):
    maxEpochs: int | None = Field(default=None, ge=1)
    maxDurationSeconds: int | None = Field(default=None, ge=1)
    stopWhenRequirementsMet: bool = False


class PerformanceRequirement(WireModel):
    """One 3GPP ModelPerformance entry from ``performanceRequirements``."""

    performanceMetric: PerformanceMetric
    performanceScore: float
    inferenceOutputName: str | None = None


class OutputConfig(WireModel):
    path: str = Field(description="Directory that receives the model or adapter, its metadata and report.json.")
    checkpointPath: str = Field(description="Directory for checkpoints; a rerun resumes from the newest one.")
    checkpointIntervalSeconds: int = Field(default=300, ge=1)


class ProgressConfig(WireModel):
    endpoint: str | None = Field(
        default=None,
        description=(
            "Base URL of the operator's status endpoint. The trainer POSTs progress events to "
            "<endpoint>/v1alpha1/namespaces/<namespace>/<plural>/<name>/progress. Unset: stdout only."
        ),
    )
    tokenPath: str | None = Field(default=None, description="Projected ServiceAccount token sent as a Bearer token.")
    caFile: str | None = Field(default=None, description="CA bundle that signs the endpoint's certificate.")
    minIntervalSeconds: float = Field(default=2.0, ge=0)


class TrainerConfig(WireModel):
    """The configuration document mounted at ``/etc/aiml/config.json``."""

    protocolVersion: Literal["v1alpha1"] = PROTOCOL_VERSION
    request: RequestRef
    task: Task
    mLTrainingType: TrainingType
    aIMLInferenceName: str
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    fineTuning: FineTuningConfig | None = None
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    termination: TerminationConfig = Field(default_factory=TerminationConfig)
    performanceRequirements: list[PerformanceRequirement] = Field(default_factory=list)
    output: OutputConfig
    progress: ProgressConfig = Field(default_factory=ProgressConfig)


class ProgressEvent(WireModel):
    """One progress event: a JSON line on stdout and the body of a POST to the endpoint."""

    type: Literal["progress"] = "progress"
    time: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    request: RequestRef | None = None
    phase: Phase
    progressPercentage: int = Field(ge=0, le=100)
    epoch: int | None = Field(default=None, ge=0)
    totalEpochs: int | None = Field(default=None, ge=1)
    step: int | None = Field(default=None, ge=0)
    totalSteps: int | None = Field(default=None, ge=1)
    loss: float | None = None
    metrics: dict[PerformanceMetric, float] = Field(default_factory=dict)
    samplesPerSecond: float | None = None
    etaSeconds: float | None = Field(default=None, ge=0)
    device: str | None = None
    precision: Precision | None = None
    message: str | None = None


class Outcome(str, Enum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CONFIG_ERROR = "CONFIG_ERROR"
    # Stopped by SIGTERM after writing a checkpoint; a rerun resumes from it.
    INTERRUPTED = "INTERRUPTED"


class MetricResult(WireModel):
    """A 3GPP ModelPerformance entry as achieved, with the requirement it is judged against."""

    performanceMetric: PerformanceMetric
    performanceScore: float
    inferenceOutputName: str | None = None
    requiredScore: float | None = None
    requirementMet: bool | None = None


class TrainerReport(WireModel):
    """The compact final report written to the termination message path."""

    type: Literal["report"] = "report"
    protocolVersion: Literal["v1alpha1"] = PROTOCOL_VERSION
    outcome: Outcome
    message: str = ""
    modelPerformanceTraining: list[MetricResult] = Field(default_factory=list)
    modelPerformanceValidation: list[MetricResult] = Field(default_factory=list)
    modelConfidenceIndication: int | None = Field(default=None, ge=0, le=100)
    usedConsumerTrainingData: list[str] = Field(default_factory=list)
    areNewTrainingDataUsed: bool | None = None
    dataRatioTrainingAndValidation: int | None = Field(
        default=None, ge=0, le=100, description="Percentage of the samples used for training; the rest validated."
    )
    trainableParameters: int | None = Field(default=None, ge=0)
    totalParameters: int | None = Field(default=None, ge=0)
    trainedTensors: int | None = Field(default=None, ge=0, description="Tensors saved in the model or adapter.")
    outputPath: str | None = None
    artifactFormat: str | None = Field(default=None, description="e.g. PEFT_ADAPTER, SAFETENSORS, TORCH_STATE_DICT")
    device: str | None = None
    precision: Precision | None = None
    epochsCompleted: int | None = Field(default=None, ge=0)
    steps: int | None = Field(default=None, ge=0)
    durationSeconds: float | None = Field(default=None, ge=0)
    stopReason: str | None = None

    def to_termination_message(self) -> str:
        """Serialise within the termination message limit, shortening the free-text message if needed."""
        text = self.model_dump_json(exclude_none=True)
        overflow = len(text.encode()) - MAX_TERMINATION_MESSAGE_BYTES
        if overflow <= 0:
            return text
        keep = max(0, len(self.message.encode()) - overflow - 16)
        shortened = self.model_copy(update={"message": self.message.encode()[:keep].decode(errors="ignore") + " [truncated]"})
        return shortened.model_dump_json(exclude_none=True)


def requirement_met(metric: PerformanceMetric, achieved: float, required: float) -> bool:
    """Judge one achieved score against its required score, respecting the metric's direction."""
    if metric in LOWER_IS_BETTER:
        return achieved <= required
    return achieved >= required
