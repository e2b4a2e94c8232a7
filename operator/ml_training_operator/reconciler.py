"""One reconciliation of a request: read it, decide the next step, act, write the status.

The handlers call ``reconcile`` whenever anything about a request may have changed (its
spec, its Job, its Pods, a timer). Each call reads the request fresh from the API server
and derives everything from what it finds, so a call after an operator restart or an
API server outage behaves like any other. The decisions themselves come from the pure
modules (``authz``, ``jobs``, ``progress``); this module only sequences the API calls.

Invariants:
- One Job per attempt: the Job name is a function of the request and the attempt number
  kept in ``status.process.attempt``, and an existing Job of that name is adopted.
- The attempt number is written before the Job of a new attempt is created, so a crash
  in between recreates or adopts the same Job.
- Status writes carry the resourceVersion read, so a stale decision fails with 409 and is
  taken again on fresh data instead of overwriting newer status.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import kopf

from . import authz, jobs, metrics, names, progress
from .kube import ApiError, Kube
from .progress import Phase, Transition
from .settings import Settings

# Seconds between checks while nothing can change by itself (suspended, finished).
IDLE_SECONDS = 300.0
# Seconds between checks while a Job or its Pods are being deleted.
DELETION_POLL_SECONDS = 1.0

# Failures the Job controller never ends by itself: the operator deletes such a Job.
STUCK_REASONS = frozenset({progress.FailureReason.IMAGE_PULL_FAILED.value, progress.FailureReason.UNSCHEDULABLE.value})
WARNING_PHASES = frozenset({Phase.FAILED, Phase.UNAUTHORIZED, Phase.JOB_CREATE_FAILED, Phase.WAITING_FOR_DATA})
# Reason of a denied SubjectAccessReview, on the Authorized condition and, after the grace period, on Failed.
FORBIDDEN = "Forbidden"
# Reason of a missing PersistentVolumeClaim or ConfigMap, on JobCreated and, after the grace period, on Failed.
DATA_SOURCE_NOT_FOUND = "DataSourceNotFound"
# Failure reasons a new spec generation reopens, with the condition that stays False while waiting.
REOPENED_FAILURES = {FORBIDDEN: "Authorized", DATA_SOURCE_NOT_FOUND: "JobCreated"}
_VALID_ARTIFACT_FORMATS = ("HF_TRANSFORMERS", "PEFT_ADAPTER", "SAFETENSORS", "TORCH_STATE_DICT")


@dataclass
class Context:
    """Shared state of all reconciliations: the API client, the settings, the wake-up registry."""

    kube: Kube
    settings: Settings
    wakeups: Wakeups = field(default_factory=lambda: Wakeups())
    # Consecutive rejected Job creations per request, for the retry backoff. Kept in memory,
    # so an operator restart starts the backoff again from its first delay.
    create_failures: dict[RequestKey, int] = field(default_factory=dict)


RequestKey = tuple[str, str, str]


class Wakeups:
    """Per-request events that cut a reconciler's wait short when its Job or Pods change."""

    def __init__(self) -> None:
        self._events: dict[RequestKey, asyncio.Event] = {}
        self._keys_by_uid: dict[str, RequestKey] = {}

    def alias(self, uid: str, key: RequestKey) -> None:
        """Remember a request's key under its uid, which is all its Jobs and Pods carry reliably."""
        self._keys_by_uid[uid] = key

    def poke(self, key: RequestKey) -> None:
        event = self._events.get(key)
        if event is not None:
            event.set()

    def poke_uid(self, uid: str) -> None:
        key = self._keys_by_uid.get(uid)
        if key is not None:
            self.poke(key)

    async def wait(self, key: RequestKey, timeout: float) -> None:
        event = self._events.setdefault(key, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        event.clear()

    def forget(self, key: RequestKey) -> None:
        self._events.pop(key, None)
        self._keys_by_uid = {uid: known for uid, known in self._keys_by_uid.items() if known != key}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class RequestState:
    """A request as read at the start of one reconciliation."""

    body: dict[str, Any]
    kind: names.Kind
    default_queue: str | None = None

    @property
    def metadata(self) -> dict[str, Any]:
        return self.body["metadata"]

    @property
    def namespace(self) -> str:
        return self.metadata["namespace"]

    @property
    def name(self) -> str:
        return self.metadata["name"]

    @property
    def uid(self) -> str:
        return self.metadata["uid"]

    @property
    def spec(self) -> dict[str, Any]:
        return self.body.get("spec") or {}

    @property
    def status(self) -> dict[str, Any]:
        return self.body.get("status") or {}

    @property
    def generation(self) -> int | None:
        return self.metadata.get("generation")

    @property
    def attempt(self) -> int:
        return int((self.status.get("process") or {}).get("attempt") or 1)

    @property
    def uses_queue(self) -> bool:
        return bool((self.spec.get("trainer") or {}).get("queueName") or self.default_queue)

    @property
    def key(self) -> RequestKey:
        return (self.kind.plural, self.namespace, self.name)

    def job_name(self, attempt: int | None = None) -> str:
        return jobs.job_name(self.kind.kind, self.namespace, self.name, self.uid, attempt or self.attempt)


async def write_status(
    ctx: Context,
    state: RequestState,
    new_status: dict[str, Any],
    logger: logging.Logger | logging.LoggerAdapter,
) -> None:
    """Send the difference between the read and the new status, then post an Event on a phase change."""
    old_status = state.status
    patch = progress.merge_patch(old_status, new_status)
    if patch is None:
        return
    body = {"metadata": {"resourceVersion": state.metadata["resourceVersion"]}, "status": patch}
    path = ctx.kube.custom_path(state.namespace, state.kind.plural, state.name, "status")
    updated = await ctx.kube.merge_patch(path, body)
    state.body = updated
    metrics.record_request_status(state.kind.kind, state.namespace, state.name, new_status.get("requestStatus"))

    old_phase, new_phase = progress.phase_of(old_status), progress.phase_of(new_status)
    if new_phase is not None and new_phase != old_phase:
        condition = _primary_condition(new_status, new_phase)
        reason = (condition or {}).get("reason") or new_phase.value
        message = (condition or {}).get("message") or new_phase.value
        event_type = "Warning" if new_phase in WARNING_PHASES else "Normal"
        kopf.event(state.body, type=event_type, reason=reason, message=f"{new_phase.value}: {message}"[:1000])
        logger.info(
            f"phase {old_phase.value if old_phase else 'none'} -> {new_phase.value}: {reason}",
            extra={"decision": new_phase.value, "reason": reason, "attempt": state.attempt},
        )


def _primary_condition(status: Mapping[str, Any], phase: Phase) -> Mapping[str, Any] | None:
    condition_type = {
        Phase.UNAUTHORIZED: "Authorized",
        Phase.JOB_CREATE_FAILED: "JobCreated",
        Phase.WAITING_FOR_DATA: "JobCreated",
        Phase.FAILED: "Failed",
        Phase.SUCCEEDED: "Succeeded",
        Phase.SUSPENDED: "Suspended",
        Phase.CANCELLED: "Cancelled",
    }.get(phase, "Ready")
    return progress.get_condition(status, condition_type)


async def transition(
    ctx: Context,
    state: RequestState,
    change: Transition,
    logger: logging.Logger | logging.LoggerAdapter,
    extra_conditions: dict[str, tuple[bool | None, str, str]] | None = None,
) -> None:
    now = utcnow()
    new_status = progress.apply_transition(state.status, change, state.generation, now, state.uses_queue)
    for condition_type, (value, reason, message) in (extra_conditions or {}).items():
        new_status["conditions"] = progress.set_condition(
            new_status["conditions"], condition_type, value, reason, message, state.generation, now
        )
    await write_status(ctx, state, new_status, logger)


async def reconcile(
    ctx: Context,
    kind: names.Kind,
    namespace: str,
    name: str,
    logger: logging.Logger | logging.LoggerAdapter,
) -> float | None:
    """Reconcile one request; return seconds until the next check, or None when the request is gone."""
    started = time.monotonic()
    try:
        body = await ctx.kube.get_or_none(ctx.kube.custom_path(namespace, kind.plural, name))
        if body is None or body["metadata"].get("deletionTimestamp"):
            ctx.create_failures.pop((kind.plural, namespace, name), None)
            return None
        body.setdefault("kind", kind.kind)
        body.setdefault("apiVersion", names.API_VERSION)
        return await _reconcile(ctx, RequestState(body, kind, ctx.settings.default_queue_name), logger)
    finally:
        metrics.RECONCILE_SECONDS.labels(kind.kind).observe(time.monotonic() - started)


async def _reconcile(ctx: Context, state: RequestState, logger: logging.Logger | logging.LoggerAdapter) -> float:
    phase = progress.phase_of(state.status)
    if phase in progress.TERMINAL_PHASES:
        if state.status.get("observedGeneration") == state.generation:
            return IDLE_SECONDS
        waited_on = failed_while_waiting(state.status)
        if waited_on is None:
            await write_status(ctx, state, {**state.status, "observedGeneration": state.generation}, logger)
            return IDLE_SECONDS
        # A new generation may name another model, consumer or data source, or follow a new RoleBinding.
        await _reopen(ctx, state, waited_on, logger)
        phase = progress.phase_of(state.status)
    if phase is None:
        await transition(ctx, state, Transition(Phase.NOT_STARTED, "Accepted", "the request was accepted"), logger)

    job = await ctx.kube.get_or_none(ctx.kube.job_path(state.namespace, state.job_name()))
    if state.spec.get("cancelRequest"):
        return await _cancel(ctx, state, job, logger)
    if state.spec.get("suspendRequest"):
        return await _suspend(ctx, state, job, logger)
    if job is not None and job["metadata"].get("deletionTimestamp"):
        # A Job of this attempt is still being deleted (after a suspension); wait until it is gone.
        return DELETION_POLL_SECONDS
    if phase in (Phase.SUSPENDED, Phase.SUSPENDING) and job is None:
        await _start_next_attempt(ctx, state, logger)

    if job is None:
        job = await _authorize_and_create(ctx, state, logger)
        if job is None:
            return _retry_delay(ctx, state, logger)
    ctx.create_failures.pop(state.key, None)
    return await _follow(ctx, state, job, logger)


def backoff_delay(failures: int, first: float, cap: float) -> float:
    """Return the delay after ``failures`` consecutive failures: first, 2 * first, 4 * first, ..., at most cap."""
    exponent = min(max(failures - 1, 0), 32)
    return min(cap, first * 2**exponent)


def _retry_delay(ctx: Context, state: RequestState, logger: Any) -> float:
    phase = progress.phase_of(state.status)
    if phase is Phase.UNAUTHORIZED:
        # Check again when the grace period ends, so the request fails on time.
        now = utcnow()
        remaining = ctx.settings.authorization_grace_seconds - (now - denied_since(state.status, now)).total_seconds()
        return max(1.0, min(ctx.settings.authorization_retry_seconds, remaining))
    if phase is Phase.NOT_STARTED:
        return ctx.settings.authorization_retry_seconds
    if phase is Phase.FAILED:
        return IDLE_SECONDS
    failures = ctx.create_failures.get(state.key, 0) + 1
    ctx.create_failures[state.key] = failures
    delay = backoff_delay(failures, ctx.settings.api_retry_seconds, ctx.settings.api_retry_max_seconds)
    if phase is Phase.WAITING_FOR_DATA:
        # Check again when the grace period ends at the latest, so the request fails on time.
        now = utcnow()
        remaining = ctx.settings.data_source_grace_seconds - (now - waiting_since(state.status, "JobCreated", now)).total_seconds()
        delay = max(1.0, min(delay, remaining))
    logger.info(
        f"retrying the Job creation in {delay:g}s after {failures} rejection(s)",
        extra={"decision": "retry-create", "failures": failures, "delay_seconds": delay},
    )
    return delay


async def _cancel(ctx: Context, state: RequestState, job: dict[str, Any] | None, logger: Any) -> float:
    if job is not None:
        if not job["metadata"].get("deletionTimestamp"):
            # Foreground deletion keeps the Job until its Pods are gone, so CANCELLING lasts
            # exactly as long as the trainer still runs.
            await ctx.kube.delete_if_exists(ctx.kube.job_path(state.namespace, job["metadata"]["name"]), "Foreground")
            logger.info("deleting the Job to cancel the request", extra={"decision": "cancel", "job": job["metadata"]["name"]})
        await transition(ctx, state, Transition(Phase.CANCELLING, "CancelRequested", "stopping the trainer"), logger)
        return DELETION_POLL_SECONDS
    await transition(ctx, state, Transition(Phase.CANCELLED, "Cancelled", "the consumer cancelled the request"), logger)
    return IDLE_SECONDS


async def _suspend(ctx: Context, state: RequestState, job: dict[str, Any] | None, logger: Any) -> float:
    if job is not None:
        if not job["metadata"].get("deletionTimestamp"):
            # The trainer checkpoints on SIGTERM; the next attempt resumes from that checkpoint.
            # With a Kueue queue the Job's own suspend field belongs to Kueue, so the operator
            # always stops an attempt by deleting its Job instead of setting suspend.
            await ctx.kube.delete_if_exists(ctx.kube.job_path(state.namespace, job["metadata"]["name"]), "Foreground")
            logger.info("deleting the Job to suspend the request", extra={"decision": "suspend", "job": job["metadata"]["name"]})
        await transition(ctx, state, Transition(Phase.SUSPENDING, "SuspendRequested", "the trainer is writing a checkpoint and stopping"), logger)
        return DELETION_POLL_SECONDS
    message = "suspended by the consumer; set suspendRequest to false to resume from the last checkpoint"
    await transition(ctx, state, Transition(Phase.SUSPENDED, "SuspendedByConsumer", message), logger)
    return IDLE_SECONDS


async def _start_next_attempt(ctx: Context, state: RequestState, logger: Any) -> None:
    """Record the next attempt number before its Job exists (see the module's invariants)."""
    attempt = state.attempt + 1
    new_status = progress.apply_transition(
        state.status,
        Transition(Phase.STARTING, "Resumed", f"resuming as attempt {attempt} from the last checkpoint", process={"attempt": attempt}),
        state.generation,
        utcnow(),
        state.uses_queue,
    )
    new_status["conditions"] = progress.set_condition(
        new_status["conditions"], "Suspended", False, "Resumed", "the consumer resumed the request", state.generation, utcnow()
    )
    new_status["process"].pop("jobRef", None)
    await write_status(ctx, state, new_status, logger)


async def _read_base_model(ctx: Context, state: RequestState) -> tuple[dict[str, Any] | None, str | None]:
    """Read the MLModel that ``mLModelRef`` names; return (model, problem)."""
    reference = state.spec.get("mLModelRef") or {}
    if not reference.get("name"):
        return None, None
    namespace = reference.get("namespace") or state.namespace
    model = await ctx.kube.get_or_none(ctx.kube.custom_path(namespace, names.ML_MODEL.plural, reference["name"]))
    if model is None:
        return None, f"spec.mLModelRef: MLModel {namespace}/{reference['name']} not found; create it or fix the reference"
    return model, None


async def authorize(ctx: Context, state: RequestState, model: Mapping[str, Any] | None) -> authz.Decision:
    """Send the request's SubjectAccessReviews and decide; no identity means denied."""
    requester = authz.requester_identity(state.metadata.get("annotations"))
    if requester is None:
        return authz.decide_without_identity()
    checks = authz.required_checks(state.kind.kind, state.namespace, state.spec, requester, model)
    results: list[Mapping[str, Any] | None] = []
    for check in checks:
        results.append(await ctx.kube.create_review(check.to_review()))
    return authz.decide(checks, results)


async def _authorize_and_create(ctx: Context, state: RequestState, logger: Any) -> dict[str, Any] | None:
    """Authorize the consumer, then create or adopt the attempt's Job; None when it cannot start yet."""
    model, problem = await _read_base_model(ctx, state)
    if problem is not None:
        await transition(ctx, state, Transition(Phase.NOT_STARTED, "BaseModelNotFound", problem), logger)
        return None

    decision = await authorize(ctx, state, model)
    if not decision.allowed:
        await _deny(ctx, state, decision.message, logger)
        return None
    authorized = {"Authorized": (True, "Allowed", decision.message)}
    await _set_conditions(ctx, state, authorized, logger)

    missing = await _missing_sources(ctx, state, model)
    if missing:
        await _wait_for_data(ctx, state, missing, logger)
        return None

    plan = jobs.build_job_plan(state.body, model, ctx.settings, state.attempt)
    try:
        await ctx.kube.create_or_get(ctx.kube.core_path(state.namespace, "configmaps"), plan.config_map)
        job, created = await ctx.kube.create_or_get(ctx.kube.job_path(state.namespace), plan.job)
    except ApiError as error:
        if error.temporary:
            raise
        message = f"creating Job {plan.job_name} failed: {error.message}"
        reason = error.reason or "ApiError"
        await transition(
            ctx, state, Transition(Phase.JOB_CREATE_FAILED, reason, message), logger,
            extra_conditions={**authorized, "JobCreated": (False, reason, message)},
        )
        metrics.RECONCILE_ERRORS.labels(state.kind.kind, reason).inc()
        return None

    owner = (job["metadata"].get("labels") or {}).get(names.LABEL_REQUEST_UID)
    if owner != state.uid:
        message = f"Job {plan.job_name} exists but belongs to another object (request uid {owner!r}); delete it"
        await transition(
            ctx, state, Transition(Phase.JOB_CREATE_FAILED, "JobConflict", message), logger,
            extra_conditions={**authorized, "JobCreated": (False, "JobConflict", message)},
        )
        return None

    if created:
        metrics.JOBS_LAUNCHED.labels(state.kind.kind).inc()
    reason = "Created" if created else "Adopted"
    logger.info(f"{reason.lower()} Job {plan.job_name}", extra={"decision": reason, "job": plan.job_name, "attempt": state.attempt})
    process = {
        "jobRef": {"name": plan.job_name, "uid": job["metadata"]["uid"]},
        "attempt": state.attempt,
    }
    if not (state.status.get("process") or {}).get("startTime"):
        process["startTime"] = progress.format_time(utcnow())
    await transition(
        ctx, state, Transition(Phase.STARTING, reason, f"{reason} Job {plan.job_name}", process=process), logger,
        extra_conditions={**authorized, "JobCreated": (True, reason, f"Job {plan.job_name} for attempt {state.attempt}")},
    )
    return job


def waiting_since(status: Mapping[str, Any] | None, condition_type: str, now: datetime) -> datetime:
    """Return when a condition turned False and stayed so: its lastTransitionTime, else now."""
    condition = progress.get_condition(status, condition_type) or {}
    if condition.get("status") != "False":
        return now
    return progress.parse_time(condition.get("lastTransitionTime")) or now


def denied_since(status: Mapping[str, Any] | None, now: datetime) -> datetime:
    """Return when the consumer was first denied in a row: the Authorized=False transition, else now."""
    return waiting_since(status, "Authorized", now)


def failed_while_waiting(status: Mapping[str, Any] | None) -> str | None:
    """Return the condition a request waited on past its grace period before it failed, else None.

    That is Authorized for a consumer that stayed unauthorized and JobCreated for a data
    source that stayed missing.
    """
    failed = progress.get_condition(status, "Failed") or {}
    if failed.get("status") != "True":
        return None
    condition_type = REOPENED_FAILURES.get(failed.get("reason") or "")
    if condition_type is None or (progress.get_condition(status, condition_type) or {}).get("status") != "False":
        return None
    return condition_type


def failed_as_forbidden(status: Mapping[str, Any] | None) -> bool:
    """Tell whether a request ended because its consumer stayed unauthorized past the grace period."""
    return failed_while_waiting(status) == "Authorized"


async def _missing_sources(ctx: Context, state: RequestState, model: Mapping[str, Any] | None) -> list[jobs.SourceObject]:
    """Return the PersistentVolumeClaims and ConfigMaps the Job would mount that do not exist."""
    missing = []
    for source in jobs.source_objects(state.body, model):
        if await ctx.kube.get_or_none(ctx.kube.core_path(source.namespace, source.resource, source.name)) is None:
            missing.append(source)
    return missing


async def _wait_for_data(ctx: Context, state: RequestState, missing: list[jobs.SourceObject], logger: Any) -> None:
    """Record the missing data sources, and end the request once the grace period has passed."""
    not_found = "; ".join(f"{source.describe()} not found" for source in missing)
    message = f"{not_found}; create it, and the operator creates the Job on its next check"
    grace = ctx.settings.data_source_grace_seconds
    now = utcnow()
    waited = (now - waiting_since(state.status, "JobCreated", now)).total_seconds()
    not_created = {"JobCreated": (False, DATA_SOURCE_NOT_FOUND, message)}
    logger.info(f"waiting for data: {message}", extra={"decision": "wait-for-data", "waited_seconds": waited})
    if waited < grace:
        await transition(ctx, state, Transition(Phase.WAITING_FOR_DATA, DATA_SOURCE_NOT_FOUND, message), logger, extra_conditions=not_created)
        return
    final = (
        f"{not_found}. It was still missing after the {grace}s data source grace period, so the request failed. "
        "Create it, then change the spec to check again"
    )
    await transition(ctx, state, Transition(Phase.FAILED, DATA_SOURCE_NOT_FOUND, final), logger, extra_conditions=not_created)


async def _deny(ctx: Context, state: RequestState, message: str, logger: Any) -> None:
    """Record a denial, and end the request with reason Forbidden once the grace period has passed."""
    denied = {"Authorized": (False, FORBIDDEN, message)}
    grace = ctx.settings.authorization_grace_seconds
    now = utcnow()
    waited = (now - denied_since(state.status, now)).total_seconds()
    if waited < grace:
        await transition(ctx, state, Transition(Phase.UNAUTHORIZED, FORBIDDEN, message), logger, extra_conditions=denied)
        return
    final = (
        f"{message}. The consumer was still denied after the {grace}s authorization grace period, so the request failed. "
        "Grant the permission, then change the spec to check again"
    )
    await transition(ctx, state, Transition(Phase.FAILED, FORBIDDEN, final), logger, extra_conditions=denied)


async def _reopen(ctx: Context, state: RequestState, waited_on: str, logger: Any) -> None:
    """Reopen a request that failed while waiting (see failed_while_waiting) after a spec change, with a fresh grace period."""
    now = utcnow()
    if waited_on == "Authorized":
        message = "the spec changed, so the operator checks the consumer's authorization again"
    else:
        message = "the spec changed, so the operator checks the data sources again"
    new_status = progress.apply_transition(
        state.status, Transition(Phase.NOT_STARTED, "SpecChanged", message), state.generation, now, state.uses_queue
    )
    new_status["process"].pop("endTime", None)
    # The waited-on condition goes to Unknown, so a new wait starts its grace period from a new lastTransitionTime.
    for condition_type in (waited_on, "Failed", "Succeeded"):
        value = None if condition_type == waited_on else False
        new_status["conditions"] = progress.set_condition(
            new_status["conditions"], condition_type, value, "SpecChanged", message, state.generation, now
        )
    await write_status(ctx, state, new_status, logger)


async def list_job_pods(ctx: Context, namespace: str, job: Mapping[str, Any]) -> list[dict[str, Any]]:
    """List the Pods the Job controller created for this Job (label and controller owner must match)."""
    job_uid = job["metadata"]["uid"]
    pods = await ctx.kube.list_items(ctx.kube.core_path(namespace, "pods"), f"{names.LABEL_JOB_NAME}={job['metadata']['name']}")
    return [
        pod for pod in pods
        if any(owner.get("uid") == job_uid and owner.get("controller") for owner in pod["metadata"].get("ownerReferences") or [])
    ]


async def _follow(ctx: Context, state: RequestState, job: dict[str, Any], logger: Any) -> float:
    pods = await list_job_pods(ctx, state.namespace, job)
    observation = progress.observe_job(job, pods, utcnow(), ctx.settings.unschedulable_timeout_seconds)
    if observation.reason == "PodCreating":
        events = await ctx.kube.list_items(
            ctx.kube.core_path(state.namespace, "events"), "", field_selector=f"involvedObject.uid={job['metadata']['uid']}"
        )
        observation = progress.pod_creation_problem(observation, events)
    process: dict[str, Any] = {"jobRef": {"name": job["metadata"]["name"], "uid": job["metadata"]["uid"]}, "attempt": state.attempt}
    if observation.start_time and not (state.status.get("process") or {}).get("startTime"):
        process["startTime"] = observation.start_time
    if observation.end_time:
        process["endTime"] = observation.end_time

    report = None
    if observation.phase is Phase.SUCCEEDED and observation.report is not None:
        report, problem = await _publish_model(ctx, state, observation.report, logger)
        if problem is not None:
            observation = progress.Observation(Phase.FAILED, "OutputModelConflict", problem, observation.report, end_time=observation.end_time)
    elif observation.phase is Phase.FAILED and observation.report is not None:
        report = progress.build_report(observation.report, state.spec)

    change = Transition(observation.phase, observation.reason, observation.message, process=process, report=report)
    await transition(ctx, state, change, logger, extra_conditions=_missing_job_conditions(state, job))

    if observation.phase is Phase.FAILED and observation.reason in STUCK_REASONS and not _job_finished(job):
        # Image pull and scheduling failures leave the Job active forever, so stop it. This
        # runs after the FAILED status is stored: a request that is not yet marked failed
        # would otherwise create the same Job again on its next pass.
        await ctx.kube.delete_if_exists(ctx.kube.job_path(state.namespace, job["metadata"]["name"]), "Background")
        logger.info("deleted the stuck Job", extra={"decision": "stop-job", "reason": observation.reason})
    if observation.phase in progress.TERMINAL_PHASES:
        return IDLE_SECONDS
    return ctx.settings.reconcile_interval_seconds


def _missing_job_conditions(state: RequestState, job: Mapping[str, Any]) -> dict[str, tuple[bool | None, str, str]]:
    """Return Authorized and JobCreated for a Job whose creation was not recorded (the write failed).

    The operator creates a Job only after the consumer was authorized, so an existing Job of
    the request's attempt shows both.
    """
    missing: dict[str, tuple[bool | None, str, str]] = {}
    name = job["metadata"]["name"]
    if (progress.get_condition(state.status, "JobCreated") or {}).get("status") != "True":
        missing["JobCreated"] = (True, "Adopted", f"Job {name} for attempt {state.attempt}")
    if (progress.get_condition(state.status, "Authorized") or {}).get("status") != "True":
        missing["Authorized"] = (True, "Allowed", f"the consumer was authorized before Job {name} was created")
    return missing


async def _set_conditions(
    ctx: Context, state: RequestState, conditions: dict[str, tuple[bool | None, str, str]], logger: Any
) -> None:
    now = utcnow()
    new_status = json.loads(json.dumps(state.status))
    entries = list(new_status.get("conditions") or [])
    for condition_type, (value, reason, message) in conditions.items():
        entries = progress.set_condition(entries, condition_type, value, reason, message, state.generation, now)
    new_status["conditions"] = entries
    await write_status(ctx, state, new_status, logger)


def _job_finished(job: Mapping[str, Any]) -> bool:
    return any(
        condition.get("type") in ("Complete", "Failed", "FailureTarget", "SuccessCriteriaMet") and condition.get("status") == "True"
        for condition in (job.get("status") or {}).get("conditions") or []
    )


def output_model_body(state: RequestState, report: Any, base_model_ref: Mapping[str, Any] | None) -> dict[str, Any]:
    """Build the MLModel that describes the trained model or adapter."""
    spec = state.spec
    output = spec.get("output") or {}
    model_name = output.get("modelName") or f"{state.name}-model"
    training_type = "FINE_TUNING" if state.kind is names.FINE_TUNING_REQUEST else spec.get("mLTrainingType") or "INITIAL_TRAINING"
    scope = list(spec.get("expectedInferenceScope") or []) or [spec["aIMLInferenceName"]]

    artifact_format = report.artifactFormat if report.artifactFormat in _VALID_ARTIFACT_FORMATS else None
    if artifact_format is None:
        merged = bool((spec.get("fineTuning") or {}).get("mergeAdapter"))
        artifact_format = "PEFT_ADAPTER" if state.kind is names.FINE_TUNING_REQUEST and not merged else "SAFETENSORS"
    model_spec: dict[str, Any] = {
        "aIMLInferenceName": spec["aIMLInferenceName"],
        "inferenceScope": scope,
        "mLTrainingType": training_type,
        "artifact": {"uri": output["uri"], "format": artifact_format},
        "trainingRequestRef": {"kind": state.kind.kind, "name": state.name, "namespace": state.namespace},
    }

    if spec.get("task"):
        model_spec["task"] = spec["task"]
    architecture = ((spec.get("trainer") or {}).get("model") or {}).get("architecture")
    if architecture:
        model_spec["architecture"] = architecture
    if base_model_ref:
        model_spec["sourceTrainedMLModelRef"] = dict(base_model_ref)

    return {
        "apiVersion": names.API_VERSION,
        "kind": names.ML_MODEL.kind,
        "metadata": {
            "name": model_name,
            "namespace": state.namespace,
            "labels": {names.LABEL_MANAGED_BY: names.MANAGED_BY, names.LABEL_REQUEST_UID: state.uid},
        },
        "spec": model_spec,
    }


async def _publish_model(ctx: Context, state: RequestState, trainer_report: Any, logger: Any) -> tuple[dict[str, Any], str | None]:
    """Create (or adopt) the output MLModel and return the status report and a conflict message."""
    reference = state.spec.get("mLModelRef") or {}
    base_ref = None
    last_training_ref = None
    if reference.get("name"):
        base_ref = {"name": reference["name"], "namespace": reference.get("namespace") or state.namespace}
        base_model = await ctx.kube.get_or_none(ctx.kube.custom_path(base_ref["namespace"], names.ML_MODEL.plural, base_ref["name"]))
        previous = ((base_model or {}).get("spec") or {}).get("trainingRequestRef")
        if previous:
            last_training_ref = f"{previous['kind']}/{previous['namespace']}/{previous['name']}"

    report = progress.build_report(trainer_report, state.spec, last_training_ref)
    body = output_model_body(state, trainer_report, base_ref)
    model, created = await ctx.kube.create_or_get(ctx.kube.custom_path(state.namespace, names.ML_MODEL.plural), body)
    recorded = (model.get("spec") or {}).get("trainingRequestRef") or {}
    if not created and recorded != body["spec"]["trainingRequestRef"]:
        return report, (
            f"MLModel {state.namespace}/{body['metadata']['name']} already exists and was not produced by this request; "
            "set spec.output.modelName to another name"
        )
    if created:
        logger.info(f"created MLModel {body['metadata']['name']}", extra={"decision": "publish-model"})
    report["mLModelGeneratedRef"] = {"name": body["metadata"]["name"], "namespace": state.namespace}
    return report, None


async def cleanup(ctx: Context, kind: names.Kind, body: Mapping[str, Any], logger: Any) -> None:
    """Delete every Job and ConfigMap of a request; objects already gone are fine."""
    namespace = body["metadata"]["namespace"]
    selector = f"{names.LABEL_REQUEST_UID}={body['metadata']['uid']}"
    for item in await ctx.kube.list_items(ctx.kube.job_path(namespace), selector):
        await ctx.kube.delete_if_exists(ctx.kube.job_path(namespace, item["metadata"]["name"]), "Background")
    for item in await ctx.kube.list_items(ctx.kube.core_path(namespace, "configmaps"), selector):
        await ctx.kube.delete_if_exists(ctx.kube.core_path(namespace, "configmaps", item["metadata"]["name"]))
    metrics.record_request_status(kind.kind, namespace, body["metadata"]["name"], None)
    logger.info("deleted the request's Jobs and ConfigMaps", extra={"decision": "cleanup"})
