"""Turning Job state, Pod state and trainer messages into a request's status.

A request's status speaks 3GPP (``requestStatus``, the process monitor, the training
report) and Kubernetes (conditions, ``observedGeneration``). This module derives all of
it from plain data: a Job and its Pods as the API server returns them, the trainer's
ProgressEvents and its final TrainerReport. Nothing here talks to the cluster, so each
state and failure reason is unit-tested on recorded objects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from pydantic import ValidationError

from . import names, protocol

# Bounds on what a failure message carries into the status, so a chatty crash cannot bloat
# the object (etcd stores it on every update).
LOG_TAIL_LINES = 20
LOG_TAIL_CHARACTERS = 1500

IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
CONDITION_TYPES = ("Ready", "Authorized", "JobCreated", "Admitted", "Running", "Succeeded", "Failed", "Suspended", "Cancelled")


class Phase(str, Enum):
    """Position of a request in its lifecycle; each phase maps to one requestStatus and process monitor state."""

    NOT_STARTED = "NOT_STARTED"
    UNAUTHORIZED = "UNAUTHORIZED"
    JOB_CREATE_FAILED = "JOB_CREATE_FAILED"
    WAITING_FOR_DATA = "WAITING_FOR_DATA"
    WAITING_FOR_ADMISSION = "WAITING_FOR_ADMISSION"
    PENDING_SCHEDULING = "PENDING_SCHEDULING"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    SUSPENDING = "SUSPENDING"
    SUSPENDED = "SUSPENDED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


TERMINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED})


class FailureReason(str, Enum):
    CONFIGURATION_ERROR = "ConfigurationError"
    CRASH = "Crash"
    OOM_KILLED = "OOMKilled"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    IMAGE_PULL_FAILED = "ImagePullFailed"
    UNSCHEDULABLE = "Unschedulable"
    EMPTY_ADAPTER = "EmptyAdapter"
    REPORT_MISSING = "ReportMissing"
    TRAINER_FAILED = "TrainerFailed"
    JOB_FAILED = "JobFailed"


@dataclass(frozen=True)
class Observation:
    """State of the current attempt as its Job and Pods show it."""

    phase: Phase
    reason: str = ""
    message: str = ""
    report: protocol.TrainerReport | None = None
    start_time: str | None = None
    end_time: str | None = None


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def format_time(value: datetime) -> str:
    return value.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _condition(obj: Mapping[str, Any] | None, condition_type: str) -> Mapping[str, Any] | None:
    for condition in ((obj or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == condition_type and condition.get("status") == "True":
            return condition
    return None


def log_tail(text: str, lines: int = LOG_TAIL_LINES, characters: int = LOG_TAIL_CHARACTERS) -> str:
    """Return the last lines of a log, at most ``characters`` long."""
    tail = "\n".join(text.rstrip().splitlines()[-lines:])
    if len(tail) > characters:
        tail = "..." + tail[-characters:]
    return tail


def parse_report(message: str | None) -> protocol.TrainerReport | None:
    """Parse a termination message as a TrainerReport; None when it is something else (a log tail)."""
    if not message or not message.lstrip().startswith("{"):
        return None
    try:
        data = json.loads(message)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("type") != "report":
        return None
    try:
        return protocol.TrainerReport.model_validate(data)
    except ValidationError:
        return None


def _trainer_state(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == names.TRAINER_CONTAINER:
            return status
    return {}


def _terminated(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    state = _trainer_state(pod)
    return (state.get("state") or {}).get("terminated") or (state.get("lastState") or {}).get("terminated")


def _creation(pod: Mapping[str, Any]) -> str:
    return (pod.get("metadata") or {}).get("creationTimestamp") or ""


def _newest(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return max(pods, key=_creation, default=None)


def _failed_pods(pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [pod for pod in pods if (pod.get("status") or {}).get("phase") == "Failed"]


def describe_pod_failure(pod: Mapping[str, Any] | None) -> tuple[FailureReason | None, str]:
    """Map a failed trainer Pod to a failure reason and a message from its termination state."""
    if pod is None:
        return None, ""
    terminated = _terminated(pod)
    if not terminated:
        status = pod.get("status") or {}
        detail = status.get("message") or status.get("reason") or ""
        return None, detail
    exit_code = terminated.get("exitCode")
    message = terminated.get("message") or ""
    if terminated.get("reason") == "OOMKilled" or exit_code == 137 and "OOM" in message:
        return FailureReason.OOM_KILLED, "the trainer ran out of memory; raise spec.trainer.memory or lower the batch size"
    if exit_code == protocol.CONFIG_ERROR_EXIT_CODE:
        report = parse_report(message)
        text = report.message if report else log_tail(message)
        return FailureReason.CONFIGURATION_ERROR, text or "the trainer rejected its configuration"
    if exit_code not in (None, 0):
        report = parse_report(message)
        if report is not None:
            return FailureReason.CRASH, f"the trainer exited with code {exit_code}: {report.message}"
        tail = log_tail(message)
        return FailureReason.CRASH, f"the trainer exited with code {exit_code}; last log lines:\n{tail}" if tail else (
            f"the trainer exited with code {exit_code} and left no log"
        )
    return None, ""


def _observe_failed_job(job: Mapping[str, Any], failed: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> Observation:
    job_reason = failed.get("reason") or ""
    job_message = failed.get("message") or ""
    end = failed.get("lastTransitionTime")
    last_pod = _newest(_failed_pods(pods)) or _newest(pods)
    pod_reason, pod_message = describe_pod_failure(last_pod)

    if job_reason == "DeadlineExceeded":
        return Observation(
            Phase.FAILED, FailureReason.DEADLINE_EXCEEDED.value,
            f"the run exceeded terminationConditions.maxDurationSeconds: {job_message}".rstrip(": "), end_time=end,
        )
    if pod_reason is FailureReason.CONFIGURATION_ERROR or job_reason == "PodFailurePolicy" and pod_reason is None:
        return Observation(Phase.FAILED, FailureReason.CONFIGURATION_ERROR.value, pod_message or job_message, end_time=end)
    if pod_reason is FailureReason.OOM_KILLED:
        return Observation(Phase.FAILED, pod_reason.value, pod_message, end_time=end)
    backoff_limit = (job.get("spec") or {}).get("backoffLimit")
    if pod_reason is FailureReason.CRASH:
        failures = ((job.get("status") or {}).get("failed")) or len(_failed_pods(pods))
        prefix = f"failed {failures} time(s), backoffLimit {backoff_limit}: " if job_reason == "BackoffLimitExceeded" else ""
        return Observation(Phase.FAILED, pod_reason.value, prefix + pod_message, end_time=end)
    if job_reason == "BackoffLimitExceeded":
        detail = f": {pod_message}" if pod_message else ""
        return Observation(
            Phase.FAILED, FailureReason.BACKOFF_LIMIT_EXCEEDED.value,
            f"the Job reached backoffLimit {backoff_limit}{detail}", end_time=end,
        )
    return Observation(Phase.FAILED, FailureReason.JOB_FAILED.value, f"{job_reason}: {job_message}".strip(": "), end_time=end)


def _observe_succeeded_job(complete: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> Observation:
    end = complete.get("lastTransitionTime")
    succeeded = [pod for pod in pods if (pod.get("status") or {}).get("phase") == "Succeeded"]
    pod = _newest(succeeded)
    if pod is None:
        return Observation(
            Phase.FAILED, FailureReason.REPORT_MISSING.value,
            "the Job completed but its Pod is gone, so the trainer's report cannot be read", end_time=end,
        )
    report = parse_report((_terminated(pod) or {}).get("message"))
    return judge_report(report, end)


def judge_report(report: protocol.TrainerReport | None, end: str | None) -> Observation:
    """Decide whether a completed run produced a model, from its report."""
    if report is None:
        return Observation(
            Phase.FAILED, FailureReason.REPORT_MISSING.value,
            "the trainer exited with code 0 but wrote no report to its termination message", end_time=end,
        )
    if report.outcome is not protocol.Outcome.SUCCEEDED:
        return Observation(Phase.FAILED, FailureReason.TRAINER_FAILED.value, report.message or report.outcome.value, report, end_time=end)
    if report.trainedTensors == 0:
        return Observation(
            Phase.FAILED, FailureReason.EMPTY_ADAPTER.value,
            "the trainer reported success but saved no trained tensors; check fineTuning target modules", report, end_time=end,
        )
    return Observation(Phase.SUCCEEDED, "Succeeded", report.message or "training finished", report, end_time=end)


def scheduler_message(text: str) -> str:
    """Drop sentences that only repeat the end of the sentence before them.

    kube-scheduler appends its preemption message to the filter message, and for a missing
    PersistentVolumeClaim both end in the same words:
    ``persistentvolumeclaim "x" not found. not found``.
    """
    sentences: list[str] = []
    for sentence in text.split(". "):
        if sentences and sentence.strip() and sentences[-1].endswith(sentence.strip().rstrip(".")):
            continue
        sentences.append(sentence)
    return ". ".join(sentences)


def _observe_active_pod(pod: Mapping[str, Any], now: datetime, unschedulable_timeout: float) -> Observation:
    status = pod.get("status") or {}
    start = status.get("startTime")
    state = _trainer_state(pod).get("state") or {}
    waiting = state.get("waiting") or {}
    if waiting.get("reason") in IMAGE_PULL_REASONS:
        image = _trainer_state(pod).get("image") or ""
        return Observation(
            Phase.FAILED, FailureReason.IMAGE_PULL_FAILED.value,
            f"image {image!r} cannot be pulled ({waiting.get('reason')}): {waiting.get('message', '')}".rstrip(": "),
        )
    if state.get("running"):
        return Observation(Phase.RUNNING, "Running", "the trainer is running", start_time=start)

    scheduled = None
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled":
            scheduled = condition
    if scheduled is not None and scheduled.get("status") == "True":
        return Observation(Phase.STARTING, "ContainerCreating", waiting.get("message") or "the trainer container is starting", start_time=start)
    if scheduled is not None and scheduled.get("reason") == "Unschedulable":
        message = scheduler_message(scheduled.get("message") or "") or "no node fits the Pod"
        since = parse_time(scheduled.get("lastTransitionTime")) or parse_time(_creation(pod)) or now
        if (now - since).total_seconds() >= unschedulable_timeout:
            return Observation(Phase.FAILED, FailureReason.UNSCHEDULABLE.value, f"no node can run the trainer: {message}")
        return Observation(Phase.PENDING_SCHEDULING, "Unschedulable", message)
    return Observation(Phase.PENDING_SCHEDULING, "PendingScheduling", "waiting for the scheduler to place the trainer Pod")


def observe_job(
    job: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    now: datetime,
    unschedulable_timeout: float,
) -> Observation:
    """Derive the attempt's phase from its Job and the Job's Pods."""
    if job is None:
        return Observation(Phase.NOT_STARTED, "JobMissing", "no Job exists for the current attempt")

    failed = _condition(job, "Failed") or _condition(job, "FailureTarget")
    if failed is not None:
        return _observe_failed_job(job, failed, pods)
    complete = _condition(job, "Complete") or _condition(job, "SuccessCriteriaMet")
    if complete is not None:
        return _observe_succeeded_job(complete, pods)

    labels = (job.get("metadata") or {}).get("labels") or {}
    if (job.get("spec") or {}).get("suspend"):
        if labels.get(names.LABEL_KUEUE_QUEUE):
            return Observation(Phase.WAITING_FOR_ADMISSION, "WaitingForAdmission", f"waiting for Kueue to admit the Job to queue {labels[names.LABEL_KUEUE_QUEUE]!r}")
        return Observation(Phase.SUSPENDED, "JobSuspended", "the Job is suspended")

    active = [pod for pod in pods if (pod.get("status") or {}).get("phase") in ("Pending", "Running") and not (pod.get("metadata") or {}).get("deletionTimestamp")]
    pod = _newest(active)
    if pod is not None:
        return _observe_active_pod(pod, now, unschedulable_timeout)

    failed_pods = _failed_pods(pods)
    if failed_pods:
        _, detail = describe_pod_failure(_newest(failed_pods))
        return Observation(Phase.STARTING, "Retrying", f"retrying after {len(failed_pods)} failed Pod(s): {detail}".rstrip(": "))
    return Observation(Phase.STARTING, "PodCreating", "the Job controller is creating the trainer Pod")


def pod_creation_problem(observation: Observation, events: Sequence[Mapping[str, Any]]) -> Observation:
    """Name why the Job controller cannot create the Pod (a ResourceQuota, a LimitRange), from the Job's events.

    The Job itself shows nothing in that case: it stays active without Pods and the
    controller reports each refused Pod creation only as a FailedCreate Event.
    """
    if observation.reason != "PodCreating":
        return observation
    refused = [event for event in events if event.get("reason") == "FailedCreate"]
    if not refused:
        return observation
    latest = max(refused, key=lambda event: event.get("lastTimestamp") or event.get("eventTime") or "")
    return Observation(Phase.STARTING, "PodCreationFailed", f"the Job controller cannot create the trainer Pod: {latest.get('message', '')}")


# requestStatus, process monitor status and progressStateInfo of each phase.
_PHASE_STATES: dict[Phase, tuple[str, str, str]] = {
    Phase.NOT_STARTED: ("NOT_STARTED", "NOT_STARTED", "NOT_STARTED"),
    Phase.UNAUTHORIZED: ("NOT_STARTED", "NOT_STARTED", "WAITING_FOR_AUTHORIZATION"),
    Phase.JOB_CREATE_FAILED: ("NOT_STARTED", "WAITING", "JOB_CREATION_FAILED"),
    Phase.WAITING_FOR_DATA: ("NOT_STARTED", "WAITING", "WAITING_FOR_DATA"),
    Phase.WAITING_FOR_ADMISSION: ("IN_PROGRESS", "WAITING", "WAITING_FOR_ADMISSION"),
    Phase.PENDING_SCHEDULING: ("IN_PROGRESS", "WAITING", "PENDING_SCHEDULING"),
    Phase.STARTING: ("IN_PROGRESS", "RUNNING", "STARTING"),
    Phase.RUNNING: ("IN_PROGRESS", "RUNNING", "TRAINING"),
    Phase.SUSPENDING: ("IN_PROGRESS", "RUNNING", "SUSPENDING"),
    Phase.SUSPENDED: ("SUSPENDED", "SUSPENDED", "SUSPENDED"),
    Phase.CANCELLING: ("CANCELLING", "CANCELLING", "CANCELLING"),
    Phase.CANCELLED: ("CANCELLED", "CANCELLED", "CANCELLED"),
    Phase.SUCCEEDED: ("FINISHED", "FINISHED", "FINISHED"),
    # RequestStatus has no failure literal, so a failed request is FINISHED and its process monitor is FAILED.
    Phase.FAILED: ("FINISHED", "FAILED", "FAILED"),
}


def phase_of(status: Mapping[str, Any] | None) -> Phase | None:
    """Read back the phase a status was written for; None for a status never written."""
    text = ((status or {}).get("process") or {}).get("progressStatus", {}).get("progressStateInfo")
    request_status = (status or {}).get("requestStatus")
    if request_status is None:
        return None
    for phase, (wanted_request, _, wanted_info) in _PHASE_STATES.items():
        if request_status == wanted_request and text == wanted_info:
            return phase
    if request_status == "IN_PROGRESS":
        # The status endpoint writes the trainer's own phases (TRAINING, EVALUATING, ...).
        return Phase.RUNNING
    return None


def set_condition(
    conditions: list[dict[str, Any]],
    condition_type: str,
    status: bool | None,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """Return the conditions with one replaced; lastTransitionTime moves only when status changes."""
    if status is None:
        value = "Unknown"
    else:
        value = "True" if status else "False"
    result = [dict(condition) for condition in conditions if condition.get("type") != condition_type]
    previous = next((condition for condition in conditions if condition.get("type") == condition_type), None)
    transition = format_time(now)
    if previous is not None and previous.get("status") == value and previous.get("lastTransitionTime"):
        transition = previous["lastTransitionTime"]
    entry: dict[str, Any] = {
        "type": condition_type,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition,
    }
    if generation is not None:
        entry["observedGeneration"] = generation
    result.append(entry)
    return sorted(result, key=lambda condition: CONDITION_TYPES.index(condition["type"]) if condition["type"] in CONDITION_TYPES else 99)


def get_condition(status: Mapping[str, Any] | None, condition_type: str) -> Mapping[str, Any] | None:
    for condition in (status or {}).get("conditions") or []:
        if condition.get("type") == condition_type:
            return condition
    return None


@dataclass(frozen=True)
class Transition:
    """A phase change to write: the phase, its reason and message, and extra process fields."""

    phase: Phase
    reason: str
    message: str
    process: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] | None = None


def _phase_conditions(phase: Phase, reason: str, message: str, uses_queue: bool) -> dict[str, tuple[bool | None, str, str]]:
    """Return the condition values a phase implies; types not listed keep their value."""
    ready_message = message if phase is not Phase.SUCCEEDED else "the trained model is available"
    conditions: dict[str, tuple[bool | None, str, str]] = {"Ready": (phase is Phase.SUCCEEDED, reason, ready_message)}
    running = phase in (Phase.RUNNING, Phase.SUSPENDING)
    conditions["Running"] = (running, reason, message)
    if phase is Phase.SUCCEEDED:
        conditions["Succeeded"] = (True, reason, message)
        conditions["Failed"] = (False, "Succeeded", "the run succeeded")
    elif phase is Phase.FAILED:
        conditions["Failed"] = (True, reason, message)
        conditions["Succeeded"] = (False, reason, message)
    if phase is Phase.SUSPENDED:
        conditions["Suspended"] = (True, reason, message)
    elif phase in (Phase.RUNNING, Phase.STARTING, Phase.PENDING_SCHEDULING, Phase.WAITING_FOR_ADMISSION):
        conditions["Suspended"] = (False, "NotSuspended", "the request is not suspended")
    if phase is Phase.CANCELLED:
        conditions["Cancelled"] = (True, reason, message)
    elif phase is Phase.CANCELLING:
        conditions["Cancelled"] = (False, reason, message)
    if uses_queue:
        if phase is Phase.WAITING_FOR_ADMISSION:
            conditions["Admitted"] = (False, reason, message)
        elif phase in (Phase.PENDING_SCHEDULING, Phase.STARTING, Phase.RUNNING):
            conditions["Admitted"] = (True, "Admitted", "Kueue admitted the Job")
    return conditions


def apply_transition(
    status: Mapping[str, Any] | None,
    transition: Transition,
    generation: int | None,
    now: datetime,
    uses_queue: bool = False,
) -> dict[str, Any]:
    """Return a new status for a phase change, keeping fields the phase does not own."""
    new = json.loads(json.dumps(status or {}))
    request_status, monitor_status, state_info = _PHASE_STATES[transition.phase]
    new["requestStatus"] = request_status
    process = new.setdefault("process", {})
    progress = dict(process.get("progressStatus") or {})
    progress["status"] = monitor_status
    keep_trainer_phase = transition.phase is Phase.RUNNING and progress.get("progressStateInfo") in {item.value for item in protocol.Phase}
    if not keep_trainer_phase:
        progress["progressStateInfo"] = state_info
    progress.setdefault("progressPercentage", 0)
    if transition.phase is Phase.SUCCEEDED:
        progress["progressPercentage"] = 100
    if transition.phase in TERMINAL_PHASES or transition.phase in (Phase.NOT_STARTED, Phase.SUSPENDED, Phase.UNAUTHORIZED, Phase.JOB_CREATE_FAILED, Phase.WAITING_FOR_DATA, Phase.PENDING_SCHEDULING, Phase.WAITING_FOR_ADMISSION):
        progress["resultStateInfo"] = f"{transition.reason}: {transition.message}" if transition.message else transition.reason
    else:
        progress.pop("resultStateInfo", None)
    process["progressStatus"] = progress
    process.update(transition.process)
    if transition.phase in TERMINAL_PHASES and "endTime" not in process:
        process["endTime"] = format_time(now)
    if transition.report is not None:
        new["report"] = {**(new.get("report") or {}), **transition.report}

    conditions = list(new.get("conditions") or [])
    for condition_type, (value, reason, message) in _phase_conditions(transition.phase, transition.reason, transition.message, uses_queue).items():
        conditions = set_condition(conditions, condition_type, value, reason, message, generation, now)
    new["conditions"] = conditions
    if generation is not None:
        new["observedGeneration"] = generation
    return new


def _requirement_key(metric: str, output_name: str | None) -> tuple[str, str | None]:
    return (metric, output_name or None)


def judge_metrics(
    achieved: Sequence[protocol.MetricResult],
    requirements: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Return one ModelPerformanceResult per requested metric, then the unrequested ones achieved.

    The operator judges ``requirementMet`` itself from the achieved score, so the
    verdict does not depend on the trainer's version.
    """
    by_key = {_requirement_key(result.performanceMetric.value, result.inferenceOutputName): result for result in achieved}
    by_metric = {result.performanceMetric.value: result for result in achieved}
    entries: list[dict[str, Any]] = []
    used: set[tuple[str, str | None]] = set()
    for requirement in requirements:
        metric = requirement["performanceMetric"]
        output_name = requirement.get("inferenceOutputName")
        result = by_key.get(_requirement_key(metric, output_name)) or by_metric.get(metric)
        entry: dict[str, Any] = {"performanceMetric": metric, "requiredScore": float(requirement["performanceScore"])}
        if output_name:
            entry["inferenceOutputName"] = output_name
        if requirement.get("decisionConfidenceScore") is not None:
            entry["decisionConfidenceScore"] = requirement["decisionConfidenceScore"]
        if result is None:
            # NOTE: a requested metric the trainer did not compute shows score 0 and requirementMet false.
            entry["performanceScore"] = 0.0
            entry["requirementMet"] = False
        else:
            used.add(_requirement_key(result.performanceMetric.value, result.inferenceOutputName))
            entry["performanceScore"] = result.performanceScore
            entry["requirementMet"] = protocol.requirement_met(
                protocol.PerformanceMetric(metric), result.performanceScore, float(requirement["performanceScore"])
            )
        entries.append(entry)
    for result in achieved:
        if _requirement_key(result.performanceMetric.value, result.inferenceOutputName) in used:
            continue
        if any(entry["performanceMetric"] == result.performanceMetric.value for entry in entries):
            continue
        extra: dict[str, Any] = {"performanceMetric": result.performanceMetric.value, "performanceScore": result.performanceScore}
        if result.inferenceOutputName:
            extra["inferenceOutputName"] = result.inferenceOutputName
        entries.append(extra)
    return entries


def build_report(
    report: protocol.TrainerReport,
    spec: Mapping[str, Any],
    last_training_ref: str | None = None,
) -> dict[str, Any]:
    """Render the trainer's report as the 3GPP MLTrainingReport part of the status."""
    requirements = spec.get("performanceRequirements") or []
    result: dict[str, Any] = {
        "modelPerformanceTraining": judge_metrics(report.modelPerformanceTraining, requirements),
        "modelPerformanceValidation": judge_metrics(report.modelPerformanceValidation, requirements),
        "usedConsumerTrainingData": list(report.usedConsumerTrainingData or spec.get("candidateTrainingDataSource") or []),
        "artifactUri": (spec.get("output") or {}).get("uri"),
    }
    optional = {
        "modelConfidenceIndication": report.modelConfidenceIndication,
        "areNewTrainingDataUsed": report.areNewTrainingDataUsed,
        "dataRatioTrainingAndValidation": report.dataRatioTrainingAndValidation,
        "trainableParameters": report.trainableParameters,
        "totalParameters": report.totalParameters,
        "artifactFormat": report.artifactFormat,
        "device": report.device,
        "precision": report.precision.value if report.precision else None,
        "durationSeconds": report.durationSeconds,
        "stopReason": report.stopReason,
        "lastTrainingRef": last_training_ref,
    }
    result.update({key: value for key, value in optional.items() if value is not None})
    return result


def apply_progress_event(status: Mapping[str, Any] | None, event: protocol.ProgressEvent) -> dict[str, Any]:
    """Return the ``process`` fields a progress event updates (a merge patch of status.process).

    Percentages never go backwards within an attempt, because events may arrive out of order.
    """
    process = (status or {}).get("process") or {}
    previous = (process.get("progressStatus") or {}).get("progressPercentage") or 0
    percentage = max(int(previous), event.progressPercentage)
    patch: dict[str, Any] = {
        "progressStatus": {"status": "RUNNING", "progressPercentage": percentage, "progressStateInfo": event.phase.value},
        "lastProgressTime": format_time(event.time),
    }
    optional = {
        "epoch": event.epoch,
        "totalEpochs": event.totalEpochs,
        "step": event.step,
        "totalSteps": event.totalSteps,
        "loss": event.loss,
        "etaSeconds": event.etaSeconds,
        "device": event.device,
        "precision": event.precision.value if event.precision else None,
    }
    patch.update({key: value for key, value in optional.items() if value is not None})
    if event.metrics:
        patch["interimMetrics"] = {metric.value: value for metric, value in event.metrics.items()}
    return patch


def merge_events(events: Sequence[protocol.ProgressEvent]) -> protocol.ProgressEvent | None:
    """Coalesce a burst of events into one: the latest values, the highest percentage."""
    if not events:
        return None
    ordered = sorted(events, key=lambda event: event.time)
    latest = ordered[-1]
    highest = max(event.progressPercentage for event in ordered)
    metrics: dict[protocol.PerformanceMetric, float] = {}
    for event in ordered:
        metrics.update(event.metrics)
    return latest.model_copy(update={"progressPercentage": highest, "metrics": metrics})


def merge_patch(old: Any, new: Any) -> Any:
    """Return the JSON merge patch (RFC 7386) that turns ``old`` into ``new``; None when equal.

    Writers send only the fields they changed, so the reconciler and the status endpoint do
    not overwrite each other's fields with stale copies.
    """
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        patch: dict[str, Any] = {}
        for key, value in new.items():
            if key not in old:
                patch[key] = value
                continue
            child = merge_patch(old[key], value)
            if child is not None:
                patch[key] = child
        for key in old:
            if key not in new:
                patch[key] = None
        return patch or None
    if old == new:
        return None
    return new
