"""Operator configuration, read once at start from ``AIML_*`` environment variables.

The Helm chart renders its values into these variables, and tests set them directly, so
every knob of the operator has exactly one spelling. Invalid values stop the operator at
start with a message that names the variable, instead of surfacing later as a broken Job.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import Enum
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENV_PREFIX = "AIML_"

DEFAULT_TRAINER_IMAGE = "ghcr.io/aiml-mns/aiml-trainer:0.1.0"


class SettingsError(ValueError):
    """Raised when an ``AIML_*`` variable contains an invalid value; the message names the variable."""


class WebhookMode(str, Enum):
    """Way the API server reaches the admission webhooks."""

    # No webhook server; identity annotations must then come from another admission path.
    NONE = "none"
    # A local HTTPS server with a self-signed certificate, registered by URL (development).
    LOCAL = "local"
    # The operator's Pod behind a Service, registered by Service reference (in-cluster).
    SERVICE = "service"


class PullPolicy(str, Enum):
    ALWAYS = "Always"
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"


class Settings(BaseModel):
    """Validated operator configuration; each field is read from ``AIML_<FIELD NAME IN UPPER CASE>``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespaces: list[str] = Field(default_factory=list, description="Namespaces to watch; empty: all namespaces.")
    gpu_resource_name: str = Field(default="nvidia.com/gpu", min_length=1)
    default_node_selector: dict[str, str] = Field(default_factory=dict)
    default_tolerations: list[dict[str, Any]] = Field(default_factory=list)
    trainer_images: list[str] = Field(
        default_factory=lambda: [DEFAULT_TRAINER_IMAGE],
        min_length=1,
        description="Trainer images a request may name; the first one is the default.",
    )
    trainer_image_pull_policy: PullPolicy = PullPolicy.IF_NOT_PRESENT
    trainer_service_account: str | None = Field(
        default=None, description="ServiceAccount of trainer Pods; its projected token authenticates progress."
    )
    runtime_class_name: str | None = None
    default_queue_name: str | None = Field(
        default=None, description="Kueue LocalQueue for requests that name none; unset: Jobs bypass Kueue."
    )
    priority_class_name: str | None = None
    progress_endpoint_url: str | None = Field(
        default=None, description="Base URL of the status endpoint as trainer Pods reach it; unset: no progress POSTs."
    )
    status_listen_address: str = "127.0.0.1"
    status_port: int = Field(default=8080, ge=1, le=65535)
    webhook_mode: WebhookMode = WebhookMode.LOCAL
    webhook_listen_address: str = "127.0.0.1"
    webhook_port: int = Field(default=9443, ge=1, le=65535)
    webhook_host: str | None = Field(default=None, description="Host name in the webhook URL (local mode).")
    webhook_service_name: str | None = None
    webhook_service_namespace: str | None = None
    webhook_service_port: int = Field(default=443, ge=1, le=65535)
    webhook_cert_file: str | None = None
    webhook_key_file: str | None = None
    webhook_ca_file: str | None = None
    webhook_configuration_name: str | None = Field(
        default="aiml-operator.aiml.mns.io",
        description="Name of the Validating/MutatingWebhookConfiguration the operator keeps up to date; unset: unmanaged.",
    )
    operator_usernames: list[str] = Field(
        default_factory=list,
        description="Identities allowed to change requester annotations, in addition to the operator's own.",
    )
    progress_patch_interval_seconds: float = Field(default=2.0, gt=0)
    reconcile_interval_seconds: float = Field(default=5.0, gt=0)
    authorization_retry_seconds: float = Field(default=30.0, gt=0)
    authorization_grace_seconds: int = Field(
        default=300,
        ge=0,
        description=(
            "Seconds a denied request keeps being checked again before it fails with reason Forbidden. "
            "GitOps tools apply a RoleBinding and a request in one sync, in no fixed order."
        ),
    )
    data_source_grace_seconds: int = Field(
        default=600,
        ge=0,
        description=(
            "Seconds a request whose PersistentVolumeClaim or ConfigMap is missing keeps being checked again before "
            "it fails with reason DataSourceNotFound. GitOps tools may create them after the request."
        ),
    )
    api_retry_seconds: float = Field(
        default=10.0, gt=0, description="First delay before retrying a Job creation the API server rejected; it doubles on each rejection."
    )
    api_retry_max_seconds: float = Field(default=300.0, gt=0, description="Cap of the doubling Job creation retry delay.")
    unschedulable_timeout_seconds: int = Field(default=300, ge=0)
    ttl_seconds_after_finished: int | None = Field(default=86400, ge=0)
    termination_grace_period_seconds: int = Field(default=60, ge=1)
    checkpoint_interval_seconds: int = Field(default=300, ge=1)
    log_format: str = Field(default="json", pattern="^(json|plain)$")
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")

    @property
    def default_trainer_image(self) -> str:
        return self.trainer_images[0]

    @field_validator("progress_endpoint_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value.rstrip("/")

    @field_validator("default_tolerations")
    @classmethod
    def _check_tolerations(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for toleration in value:
            if toleration.get("operator", "Equal") not in ("Equal", "Exists"):
                raise ValueError(f"toleration operator must be Equal or Exists, got {toleration!r}")
        return value

    @model_validator(mode="after")
    def _check_webhook_service(self) -> Settings:
        if self.webhook_mode is WebhookMode.SERVICE and not (self.webhook_service_name and self.webhook_service_namespace):
            raise ValueError(
                "webhook_mode=service needs webhook_service_name and webhook_service_namespace "
                f"({ENV_PREFIX}WEBHOOK_SERVICE_NAME, {ENV_PREFIX}WEBHOOK_SERVICE_NAMESPACE)"
            )
        return self


# Fields whose variables hold a JSON document, or a comma-separated list as a shorthand.
_JSON_FIELDS = {"default_node_selector", "default_tolerations"}
_LIST_FIELDS = {"namespaces", "trainer_images", "operator_usernames"}


def env_name(field: str) -> str:
    """Return the environment variable that sets a settings field."""
    return ENV_PREFIX + field.upper()


def _parse_value(field: str, raw: str) -> Any:
    if field in _JSON_FIELDS:
        try:
            return json.loads(raw)
        except json.JSONDecodeError as error:
            raise SettingsError(f"{env_name(field)}: invalid JSON ({error.msg} at position {error.pos})") from error
    if field in _LIST_FIELDS:
        text = raw.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError as error:
                raise SettingsError(f"{env_name(field)}: invalid JSON list ({error.msg})") from error
        return [item.strip() for item in text.split(",") if item.strip()]
    if raw == "" and type(None) in get_args(Settings.model_fields[field].annotation):
        return None
    return raw


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build the settings from an environment mapping; raise SettingsError naming each invalid variable."""
    known = {env_name(field): field for field in Settings.model_fields}
    values = {field: _parse_value(field, environ[name]) for name, field in known.items() if name in environ}
    try:
        return Settings.model_validate(values)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            field = str(item["loc"][0]) if item["loc"] else ""
            where = env_name(field) if field in Settings.model_fields else "settings"
            problems.append(f"{where}: {item['msg']}")
        raise SettingsError("; ".join(problems)) from error


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """Return ``AIML_*`` variables that set no field, so the operator can warn about likely typos.

    They are not an error because the trainer and test tooling read variables with the same prefix.
    """
    known = {env_name(field) for field in Settings.model_fields}
    return sorted(key for key in environ if key.startswith(ENV_PREFIX) and key not in known)
