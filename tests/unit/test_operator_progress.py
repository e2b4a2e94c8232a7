"""Status mapping: Job and Pod states, failure reasons, reports and progress events."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ml_training_operator import progress, protocol
from ml_training_operator.progress import Phase, Transition

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def stamp(seconds_ago=0):
    return progress.format_time(NOW - timedelta(seconds=seconds_ago))


def job(conditions=(), suspend=False, labels=None, failed=0, backoff_limit=2):
    return {
        "metadata": {"name": "j", "labels": labels or {}},
        "spec": {"suspend": suspend, "backoffLimit": backoff_limit},
        "status": {"conditions": list(conditions), "failed": failed},
    }


def condition(kind, reason="", message="", status="True"):
    return {"type": kind, "status": status, "reason": reason, "message": message, "lastTransitionTime": stamp()}


def pod(phase, state=None, created=10, conditions=(), last_state=None, name="p"):
    container = {"name": "trainer", "image": "img:1", "state": state or {}}
    if last_state:
        container["lastState"] = last_state
    return {
        "metadata": {"name": name, "creationTimestamp": stamp(created)},
        "status": {"phase": phase, "containerStatuses": [container], "conditions": list(conditions), "startTime": stamp(created)},
    }


def terminated(exit_code, message="", reason="Error"):
    return {"terminated": {"exitCode": exit_code, "message": message, "reason": reason}}


def report(**values):
    base = {"outcome": "SUCCEEDED", "message": "done", "trainedTensors": 12}
    base.update(values)
    return protocol.TrainerReport.model_validate(base)


def observe(job_object, pods=(), timeout=300):
    return progress.observe_job(job_object, list(pods), NOW, timeout)


def test_missing_job():
    assert observe(None).phase is Phase.NOT_STARTED


def test_kueue_wait_and_consumer_suspension_differ():
    queued = observe(job(suspend=True, labels={"kueue.x-k8s.io/queue-name": "q"}))
    assert queued.phase is Phase.WAITING_FOR_ADMISSION
    assert "'q'" in queued.message
    assert observe(job(suspend=True)).phase is Phase.SUSPENDED


def test_pending_scheduling_then_unschedulable_after_timeout():
    unscheduled = condition("PodScheduled", "Unschedulable", "0/2 nodes are available: insufficient nvidia.com/gpu", status="False")
    unscheduled["lastTransitionTime"] = stamp(100)
    waiting = observe(job(), [pod("Pending", conditions=[unscheduled])], timeout=300)
    assert waiting.phase is Phase.PENDING_SCHEDULING
    assert "insufficient nvidia.com/gpu" in waiting.message
    failed = observe(job(), [pod("Pending", conditions=[unscheduled])], timeout=60)
    assert failed.phase is Phase.FAILED
    assert failed.reason == "Unschedulable"
    assert "insufficient nvidia.com/gpu" in failed.message


def test_not_yet_scheduled_pod_is_pending():
    assert observe(job(), [pod("Pending")]).phase is Phase.PENDING_SCHEDULING


def test_scheduled_then_running_pod():
    scheduled = condition("PodScheduled")
    assert observe(job(), [pod("Pending", {"waiting": {"reason": "ContainerCreating"}}, conditions=[scheduled])]).phase is Phase.STARTING
    assert observe(job(), [pod("Running", {"running": {"startedAt": stamp()}}, conditions=[scheduled])]).phase is Phase.RUNNING


def test_image_pull_failure():
    observation = observe(job(), [pod("Pending", {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}})])
    assert observation.phase is Phase.FAILED
    assert observation.reason == "ImagePullFailed"
    assert "img:1" in observation.message


def test_config_error_uses_trainer_message():
    message = report(outcome="CONFIG_ERROR", message="labelColumn 'y' is not in the data").to_termination_message()
    observation = observe(
        job([condition("Failed", "PodFailurePolicy", "Container trainer exited with 78")]),
        [pod("Failed", terminated(78, message))],
    )
    assert observation.phase is Phase.FAILED
    assert observation.reason == "ConfigurationError"
    assert observation.message == "labelColumn 'y' is not in the data"


def test_config_error_seen_on_failure_target():
    observation = observe(job([condition("FailureTarget", "PodFailurePolicy")]), [pod("Failed", terminated(78, "plain text"))])
    assert observation.reason == "ConfigurationError"
    assert observation.message == "plain text"


def test_crash_after_backoff_carries_log_tail():
    log = "\n".join(f"line {index}" for index in range(100)) + "\nRuntimeError: boom"
    pods = [pod("Failed", terminated(1, log), created=30, name="a"), pod("Failed", terminated(1, log), created=5, name="b")]
    observation = observe(job([condition("Failed", "BackoffLimitExceeded")], failed=2, backoff_limit=1), pods)
    assert observation.reason == "Crash"
    assert "RuntimeError: boom" in observation.message
    assert "line 99" in observation.message
    assert "line 10\n" not in observation.message
    assert "backoffLimit 1" in observation.message
    assert "code 1" in observation.message
    assert len(observation.message) < progress.LOG_TAIL_CHARACTERS + 200


def test_oom_killed():
    observation = observe(job([condition("Failed", "BackoffLimitExceeded")]), [pod("Failed", terminated(137, "", reason="OOMKilled"))])
    assert observation.reason == "OOMKilled"


def test_deadline_exceeded():
    observation = observe(job([condition("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")]), [])
    assert observation.reason == "DeadlineExceeded"
    assert "maxDurationSeconds" in observation.message


def test_backoff_without_exit_code():
    evicted = pod("Failed")
    evicted["status"]["containerStatuses"] = []
    evicted["status"]["message"] = "The node was low on resource: memory."
    observation = observe(job([condition("Failed", "BackoffLimitExceeded")]), [evicted])
    assert observation.reason == "BackoffLimitExceeded"
    assert "low on resource" in observation.message


def test_retrying_between_crashes():
    observation = observe(job(), [pod("Failed", terminated(1, "boom"))])
    assert observation.phase is Phase.STARTING
    assert "retrying" in observation.message


def test_pod_creation_refused_by_quota():
    waiting = observe(job())
    assert waiting.reason == "PodCreating"
    events = [
        {"reason": "SuccessfulCreate", "message": "Created pod"},
        {"reason": "FailedCreate", "message": "old", "lastTimestamp": stamp(60)},
        {"reason": "FailedCreate", "message": "pods \"x\" is forbidden: exceeded quota: gpus", "lastTimestamp": stamp(1)},
    ]
    refused = progress.pod_creation_problem(waiting, events)
    assert refused.phase is Phase.STARTING
    assert refused.reason == "PodCreationFailed"
    assert "exceeded quota: gpus" in refused.message
    assert progress.pod_creation_problem(waiting, events[:1]) is waiting


def test_success_with_report():
    message = report(modelPerformanceValidation=[{"performanceMetric": "ACCURACY", "performanceScore": 0.9}]).to_termination_message()
    observation = observe(job([condition("Complete")]), [pod("Succeeded", terminated(0, message, reason="Completed"))])
    assert observation.phase is Phase.SUCCEEDED
    assert observation.report is not None
    assert observation.report.modelPerformanceValidation[0].performanceScore == 0.9


def test_success_with_empty_adapter_fails():
    message = report(trainedTensors=0).to_termination_message()
    observation = observe(job([condition("Complete")]), [pod("Succeeded", terminated(0, message, reason="Completed"))])
    assert observation.phase is Phase.FAILED
    assert observation.reason == "EmptyAdapter"


def test_success_without_report_fails():
    observation = observe(job([condition("Complete")]), [pod("Succeeded", terminated(0, "just logs", reason="Completed"))])
    assert observation.reason == "ReportMissing"
    assert observe(job([condition("Complete")]), []).reason == "ReportMissing"


def test_report_with_failed_outcome():
    message = report(outcome="FAILED", message="loss is NaN").to_termination_message()
    observation = observe(job([condition("Complete")]), [pod("Succeeded", terminated(0, message, reason="Completed"))])
    assert observation.reason == "TrainerFailed"
    assert observation.message == "loss is NaN"


def test_parse_report_ignores_other_text():
    assert progress.parse_report("") is None
    assert progress.parse_report("{not json") is None
    assert progress.parse_report('{"type": "progress"}') is None
    assert progress.parse_report('{"type": "report", "outcome": "WHATEVER"}') is None


def transition(status, phase, reason="R", message="m", **kwargs):
    return progress.apply_transition(status, Transition(phase, reason, message, **kwargs), 3, NOW)


def conditions_of(status):
    return {entry["type"]: entry for entry in status["conditions"]}


def test_running_status():
    status = transition({}, Phase.RUNNING, "Running", "the trainer is running")
    assert status["requestStatus"] == "IN_PROGRESS"
    assert status["process"]["progressStatus"] == {"status": "RUNNING", "progressStateInfo": "TRAINING", "progressPercentage": 0}
    assert status["observedGeneration"] == 3
    assert conditions_of(status)["Running"]["status"] == "True"
    assert conditions_of(status)["Ready"]["status"] == "False"
    assert conditions_of(status)["Running"]["observedGeneration"] == 3


def test_running_keeps_trainer_phase_and_percentage():
    before = {"requestStatus": "IN_PROGRESS", "process": {"progressStatus": {"status": "RUNNING", "progressStateInfo": "EVALUATING", "progressPercentage": 80}}}
    status = transition(before, Phase.RUNNING)
    assert status["process"]["progressStatus"]["progressStateInfo"] == "EVALUATING"
    assert status["process"]["progressStatus"]["progressPercentage"] == 80


def test_waiting_states_are_distinct():
    queued = progress.apply_transition({}, Transition(Phase.WAITING_FOR_ADMISSION, "WaitingForAdmission", "q"), 1, NOW, uses_queue=True)
    assert queued["process"]["progressStatus"]["progressStateInfo"] == "WAITING_FOR_ADMISSION"
    assert queued["process"]["progressStatus"]["status"] == "WAITING"
    assert conditions_of(queued)["Admitted"]["status"] == "False"
    pending = transition({}, Phase.PENDING_SCHEDULING)
    assert pending["process"]["progressStatus"]["progressStateInfo"] == "PENDING_SCHEDULING"
    assert "Admitted" not in conditions_of(pending)
    suspended = transition({}, Phase.SUSPENDED)
    assert suspended["requestStatus"] == "SUSPENDED"
    assert conditions_of(suspended)["Suspended"]["status"] == "True"


def test_failure_is_finished_with_failed_monitor():
    status = transition({}, Phase.FAILED, "Crash", "exit 1")
    assert status["requestStatus"] == "FINISHED"
    assert status["process"]["progressStatus"]["status"] == "FAILED"
    assert status["process"]["progressStatus"]["resultStateInfo"] == "Crash: exit 1"
    assert conditions_of(status)["Failed"]["status"] == "True"
    assert conditions_of(status)["Failed"]["reason"] == "Crash"
    assert conditions_of(status)["Ready"]["status"] == "False"
    assert status["process"]["endTime"] == progress.format_time(NOW)


def test_success_sets_ready_and_full_progress():
    status = transition({}, Phase.SUCCEEDED, "Succeeded", "done", report={"artifactUri": "pvc://x/y"})
    assert status["requestStatus"] == "FINISHED"
    assert status["process"]["progressStatus"]["progressPercentage"] == 100
    assert conditions_of(status)["Ready"]["status"] == "True"
    assert conditions_of(status)["Succeeded"]["status"] == "True"
    assert status["report"]["artifactUri"] == "pvc://x/y"


def test_cancel_states():
    cancelling = transition({}, Phase.CANCELLING)
    assert cancelling["requestStatus"] == "CANCELLING"
    cancelled = transition(cancelling, Phase.CANCELLED)
    assert cancelled["requestStatus"] == "CANCELLED"
    assert cancelled["process"]["progressStatus"]["status"] == "CANCELLED"
    assert conditions_of(cancelled)["Cancelled"]["status"] == "True"


def test_transition_time_moves_only_on_status_change():
    first = progress.set_condition([], "Running", True, "A", "a", 1, NOW)
    later = NOW + timedelta(minutes=5)
    same = progress.set_condition(first, "Running", True, "B", "b", 2, later)
    assert same[0]["lastTransitionTime"] == first[0]["lastTransitionTime"]
    assert same[0]["reason"] == "B"
    changed = progress.set_condition(first, "Running", False, "C", "c", 2, later)
    assert changed[0]["lastTransitionTime"] == progress.format_time(later)


def test_phase_read_back():
    for phase in Phase:
        assert progress.phase_of(transition({}, phase)) is phase
    assert progress.phase_of({}) is None
    trainer_phase = {"requestStatus": "IN_PROGRESS", "process": {"progressStatus": {"progressStateInfo": "EVALUATING"}}}
    assert progress.phase_of(trainer_phase) is Phase.RUNNING


def test_report_has_one_entry_per_requirement():
    trainer_report = report(
        modelPerformanceTraining=[{"performanceMetric": "ACCURACY", "performanceScore": 0.95}],
        modelPerformanceValidation=[
            {"performanceMetric": "ACCURACY", "performanceScore": 0.75},
            {"performanceMetric": "F1", "performanceScore": 0.7},
        ],
        modelConfidenceIndication=80,
        dataRatioTrainingAndValidation=80,
        trainableParameters=1000,
        totalParameters=100000,
        usedConsumerTrainingData=["pvc://d/x.csv"],
        areNewTrainingDataUsed=True,
    )
    spec = {
        "performanceRequirements": [
            {"performanceMetric": "ACCURACY", "performanceScore": 0.8},
            {"performanceMetric": "MAE", "performanceScore": 1.0},
        ],
        "output": {"uri": "pvc://out/m"},
    }
    result = progress.build_report(trainer_report, spec, last_training_ref="MLTrainingRequest/ns/old")
    validation = result["modelPerformanceValidation"]
    assert validation[0] == {"performanceMetric": "ACCURACY", "performanceScore": 0.75, "requiredScore": 0.8, "requirementMet": False}
    assert validation[1]["performanceMetric"] == "MAE"
    assert validation[1]["requirementMet"] is False
    assert validation[2] == {"performanceMetric": "F1", "performanceScore": 0.7}
    assert result["modelPerformanceTraining"][0]["requirementMet"] is True
    assert result["trainableParameters"] == 1000
    assert result["modelConfidenceIndication"] == 80
    assert result["artifactUri"] == "pvc://out/m"
    assert result["lastTrainingRef"] == "MLTrainingRequest/ns/old"


def test_lower_is_better_metric():
    trainer_report = report(modelPerformanceValidation=[{"performanceMetric": "RMSE", "performanceScore": 0.5}])
    spec = {"performanceRequirements": [{"performanceMetric": "RMSE", "performanceScore": 0.6}], "output": {"uri": "pvc://o"}}
    assert progress.build_report(trainer_report, spec)["modelPerformanceValidation"][0]["requirementMet"] is True


def event(percentage, seconds=0, **values):
    return protocol.ProgressEvent(phase="TRAINING", progressPercentage=percentage, time=NOW + timedelta(seconds=seconds), **values)


def test_progress_event_patch():
    patch = progress.apply_progress_event({}, event(40, epoch=1, totalEpochs=3, loss=0.5, metrics={"ACCURACY": 0.7}))
    assert patch["progressStatus"] == {"status": "RUNNING", "progressPercentage": 40, "progressStateInfo": "TRAINING"}
    assert patch["epoch"] == 1
    assert patch["loss"] == 0.5
    assert patch["interimMetrics"] == {"ACCURACY": 0.7}
    assert patch["lastProgressTime"] == progress.format_time(NOW)


def test_progress_never_goes_back():
    status = {"process": {"progressStatus": {"progressPercentage": 60}}}
    assert progress.apply_progress_event(status, event(40))["progressStatus"]["progressPercentage"] == 60


def test_merge_events_keeps_latest_and_highest():
    merged = progress.merge_events([event(50, 2, loss=0.2), event(30, 1, loss=0.9, metrics={"F1": 0.5})])
    assert merged.progressPercentage == 50
    assert merged.loss == 0.2
    assert merged.metrics == {protocol.PerformanceMetric.F1: 0.5}
    assert progress.merge_events([]) is None


def test_merge_patch():
    old = {"a": 1, "b": {"c": 2, "d": 3}, "e": [1]}
    new = {"a": 1, "b": {"c": 5}, "e": [1, 2], "f": "x"}
    assert progress.merge_patch(old, new) == {"b": {"c": 5, "d": None}, "e": [1, 2], "f": "x"}
    assert progress.merge_patch(old, old) is None


def test_log_tail_bounds():
    text = "\n".join("x" * 200 for _ in range(50))
    tail = progress.log_tail(text)
    assert len(tail) <= progress.LOG_TAIL_CHARACTERS + 3
    assert tail.startswith("...")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('0/2 nodes are available: persistentvolumeclaim "nope" not found. not found', '0/2 nodes are available: persistentvolumeclaim "nope" not found'),
        ("0/2 nodes are available: 2 Insufficient nvidia.com/gpu. preemption: 0/2 nodes are available: 2 No preemption victims found.",
         "0/2 nodes are available: 2 Insufficient nvidia.com/gpu. preemption: 0/2 nodes are available: 2 No preemption victims found."),
        ("", ""),
    ],
)
def test_scheduler_message_drops_repeats(raw, expected):
    assert progress.scheduler_message(raw) == expected
