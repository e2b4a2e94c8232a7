"""Spec and status of MLModel: a pre-trained or produced model and where its artifact lives."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from ..protocol import Task, TrainingType
from ..uris import ParsedUri
from .base import UNIQUE_ITEMS, ApiModel, CelRule, cel, extension
from .common import ArtifactFormat, Condition, InferenceName, ModelRef, RequestRef
from .locations import ARTIFACT_URI_FORMS, ARTIFACT_URI_PATTERN, parse_artifact_uri


class Artifact(ApiModel):
    """Location and storage format of a model's files."""

    uri: str = Field(
        min_length=1,
        max_length=512,
        json_schema_extra=cel(
            CelRule(
                rule=f"self.matches(r'{ARTIFACT_URI_PATTERN}')",
                message=f"artifact.uri must be {ARTIFACT_URI_FORMS}, with no '..' segment",
            )
        ),
        description=f"Where the files are: {ARTIFACT_URI_FORMS}. A PVC must be in the MLModel's namespace; "
        "image and python-package URIs name files inside the trainer image.",
    )
    format: ArtifactFormat = Field(
        description="HF_TRANSFORMERS (a Hugging Face model directory), PEFT_ADAPTER, SAFETENSORS or TORCH_STATE_DICT."
    )

    @field_validator("uri")
    @classmethod
    def _check_uri(cls, value: str) -> str:
        parse_artifact_uri(value)
        return value

    def location(self) -> ParsedUri:
        """Return the parsed artifact URI."""
        return parse_artifact_uri(self.uri)


class MLModelSpec(ApiModel):
    """TS 28.105 MLModel attributes plus the artifact that holds the model."""

    mLModelId: str | None = Field(default=None, min_length=1, max_length=256, description="Identifier of the model.")
    aIMLInferenceName: InferenceName | None = Field(default=None, description="Inference the model was trained for.")
    inferenceScope: list[InferenceName] | None = Field(
        default=None,
        max_length=64,
        json_schema_extra=UNIQUE_ITEMS,
        description="Inference names the model covers (its AI/ML capability group); fine-tuning may target one of them.",
    )
    mLTrainingType: TrainingType | None = Field(
        default=None, description="How the model was produced: INITIAL_TRAINING, PRE_SPECIALISED_TRAINING, RE_TRAINING or FINE_TUNING."
    )
    artifact: Artifact = Field(description=extension("Location and format of the model's files."))
    architecture: str | None = Field(
        default=None, min_length=1, max_length=256, description=extension("Model architecture, e.g. bert, MLP or LSTM.")
    )
    task: Task | None = Field(default=None, description=extension("Learning task the model solves."))
    sourceTrainedMLModelRef: ModelRef | None = Field(
        default=None,
        description="Trained model this one derives from, e.g. the base model of a PEFT adapter; "
        "the namespace defaults to the MLModel's.",
    )
    trainingRequestRef: RequestRef | None = Field(default=None, description=extension("Request that produced the model."))
    labels: list[Annotated[str, Field(max_length=256)]] | None = Field(
        default=None, max_length=4096, description=extension("Class names in the order of the model's outputs.")
    )


class MLModelStatus(ApiModel):
    """Status of an MLModel."""

    mLModelVersion: str | None = Field(default=None, max_length=256, description="Version of the model.")
    mLModelId: str | None = Field(default=None, max_length=256, description="Identifier of the model as the operator recorded it.")
    observedGeneration: int | None = Field(default=None, ge=0, description=extension("metadata.generation that the status describes."))
    conditions: list[Condition] | None = Field(
        default=None,
        max_length=32,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        description=extension("Kubernetes conditions, one per type."),
    )
