"""Status of both request kinds: TS 28.105 request status, training process and training report.

Every field the operator writes must be declared here, because the API server silently
drops status fields that the CRD schema does not list.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from ..protocol import Precision
from .base import ApiModel, extension
from .common import ArtifactFormat, Condition, ModelPerformanceResult, ObjectName, ProcessStatus, RequestStatus, ResolvedModelRef

MAX_TEXT_LENGTH = 32768


class ProgressStatus(ApiModel):
    """TS 28.105 ProcessMonitor of the training process."""

    status: ProcessStatus | None = Field(
        default=None,
        description="NOT_STARTED, WAITING, RUNNING, SUSPENDED, CANCELLING, CANCELLED, FINISHED or FAILED.",
    )
    progressPercentage: int | None = Field(default=None, ge=0, le=100, description="Progress of the process, 0..100.")
    progressStateInfo: str | None = Field(
        default=None,
        max_length=256,
        description="Current step. Before the Job runs: NOT_STARTED, WAITING_FOR_AUTHORIZATION, WAITING_FOR_DATA, "
        "JOB_CREATION_FAILED, WAITING_FOR_ADMISSION (Kueue), PENDING_SCHEDULING or STARTING. While the trainer "
        "runs, its phase: COLLECTING_DATA, PREPARING_TRAINING_DATA, TRAINING, EVALUATING or SAVING_MODEL. Then "
        "SUSPENDING, SUSPENDED, CANCELLING, CANCELLED, FINISHED or FAILED.",
    )
    resultStateInfo: str | None = Field(
        default=None, max_length=MAX_TEXT_LENGTH, description="Outcome of the process, with the reason when it failed."
    )


class JobRef(ApiModel):
    """The Job that runs the current attempt."""

    name: ObjectName = Field(description="Name of the Job, in the request's namespace.")
    uid: str | None = Field(default=None, max_length=64, description="UID of the Job.")


class TrainingProcess(ApiModel):
    """TS 28.105 MLTrainingProcess view of the run."""

    progressStatus: ProgressStatus | None = Field(default=None, description="Process monitor: state and percentage.")
    startTime: datetime | None = Field(default=None, description="When the first attempt started.")
    endTime: datetime | None = Field(default=None, description="When the process ended.")
    jobRef: JobRef | None = Field(default=None, description=extension("The Job of the current attempt."))
    attempt: int | None = Field(default=None, ge=0, description=extension("Number of the current attempt, from 1."))
    epoch: int | None = Field(default=None, ge=0, description=extension("Epoch in progress."))
    totalEpochs: int | None = Field(default=None, ge=0, description=extension("Epochs planned."))
    step: int | None = Field(default=None, ge=0, description=extension("Optimisation steps done."))
    totalSteps: int | None = Field(default=None, ge=0, description=extension("Optimisation steps planned."))
    loss: float | None = Field(default=None, description=extension("Latest training loss."))
    interimMetrics: dict[str, float] | None = Field(
        default=None,
        max_length=32,
        description=extension("Latest validation scores by metric name, e.g. ACCURACY: 0.83."),
    )
    etaSeconds: float | None = Field(default=None, ge=0, description=extension("Estimated seconds until training ends."))
    lastProgressTime: datetime | None = Field(default=None, description=extension("When the trainer last reported progress."))
    device: str | None = Field(default=None, max_length=256, description=extension("Device the trainer runs on, e.g. cuda:0 or cpu."))
    precision: Precision | None = Field(default=None, description=extension("Numeric precision in use."))
    checkpointAvailable: bool | None = Field(
        default=None, description=extension("Whether a checkpoint exists that a resumed attempt starts from.")
    )


class TrainingReport(ApiModel):
    """TS 28.105 MLTrainingReport view of the result."""

    modelPerformanceTraining: list[ModelPerformanceResult] | None = Field(
        default=None, max_length=64, description="Scores on the training split, one per requested metric."
    )
    modelPerformanceValidation: list[ModelPerformanceResult] | None = Field(
        default=None, max_length=64, description="Scores on the validation split, one per requested metric, with the requirement outcome."
    )
    modelConfidenceIndication: int | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Confidence in the trained model, 0..100: for classification the mean probability the model "
        "gives its predicted class on the validation split, times 100; for regression and forecasting the "
        "validation R squared clipped to 0..1, times 100.",
    )
    usedConsumerTrainingData: list[Annotated[str, Field(max_length=512)]] | None = Field(
        default=None, max_length=64, description="candidateTrainingDataSource entries that were used."
    )
    areNewTrainingDataUsed: bool | None = Field(
        default=None, description="Whether data not used by the previous training of the model was used."
    )
    dataRatioTrainingAndValidation: int | None = Field(
        default=None, ge=0, le=100, description="Percentage of the samples used for training; the rest validated."
    )
    mLModelGeneratedRef: ResolvedModelRef | None = Field(default=None, description="The MLModel that describes the trained model.")
    lastTrainingRef: str | None = Field(
        default=None, max_length=1024, description="Reference to the report of the previous training of the same model."
    )
    trainableParameters: int | None = Field(default=None, ge=0, description=extension("Parameters that training updated."))
    totalParameters: int | None = Field(default=None, ge=0, description=extension("Parameters of the whole model."))
    artifactUri: str | None = Field(default=None, max_length=512, description=extension("Where the trained model or adapter is stored."))
    artifactFormat: ArtifactFormat | None = Field(default=None, description=extension("Storage format of the artifact."))
    device: str | None = Field(default=None, max_length=256, description=extension("Device the training ran on."))
    precision: Precision | None = Field(default=None, description=extension("Numeric precision the training used."))
    durationSeconds: float | None = Field(default=None, ge=0, description=extension("Training time in seconds."))
    stopReason: str | None = Field(
        default=None, max_length=1024, description=extension("Why training stopped, e.g. MAX_EPOCHS or REQUIREMENTS_MET.")
    )


class TrainingRequestStatus(ApiModel):
    """Status of an MLTrainingRequest or MLFineTuningRequest."""

    requestStatus: RequestStatus | None = Field(
        default=None,
        description="TS 28.105 RequestStatus: NOT_STARTED, IN_PROGRESS, CANCELLING, SUSPENDED, FINISHED or "
        "CANCELLED. A failure shows as process.progressStatus.status FAILED and a Failed condition.",
    )
    observedGeneration: int | None = Field(
        default=None, ge=0, description=extension("metadata.generation that the status describes.")
    )
    conditions: list[Condition] | None = Field(
        default=None,
        max_length=32,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        description=extension("Kubernetes conditions, one per type."),
    )
    process: TrainingProcess | None = Field(default=None, description="The training process (TS 28.105 MLTrainingProcess).")
    report: TrainingReport | None = Field(default=None, description="The training report (TS 28.105 MLTrainingReport).")
