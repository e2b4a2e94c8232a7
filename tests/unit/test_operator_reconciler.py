"""Pure parts of the reconciler: the output MLModel, repaired conditions, retry delays, the authorization grace period."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from ml_training_operator import names, progress, protocol
from ml_training_operator.__main__ import (
    KOPF_WATCH_LOGGER,
    AdmissionRejectionFilter,
    QuietWatchersFilter,
    WatchRestartFilter,
)
from ml_training_operator.reconciler import (
    Context,
    RequestState,
    _missing_job_conditions,
    _retry_delay,
    backoff_delay,
    denied_since,
    failed_as_forbidden,
    failed_while_waiting,
    output_model_body,
)
from ml_training_operator.settings import Settings
from tests.unit.operator_fixtures import fine_tuning_request, training_request


def report(**values):
    return protocol.TrainerReport.model_validate({"outcome": "SUCCEEDED", **values})


def test_output_model_of_fine_tuning():
    state = RequestState(fine_tuning_request(), names.FINE_TUNING_REQUEST)
    body = output_model_body(state, report(artifactFormat="PEFT_ADAPTER"), {"name": "minilm", "namespace": "models"})
    assert body["metadata"] == {
        "name": "sentiment-lora-model",
        "namespace": "team-a",
        "labels": {"app.kubernetes.io/managed-by": "aiml-operator", "aiml.mns.io/request-uid": state.uid},
    }
    spec = body["spec"]
    assert spec["mLTrainingType"] == "FINE_TUNING"
    assert spec["inferenceScope"] == ["SENTIMENT"]
    assert spec["aIMLInferenceName"] == "SENTIMENT"
    assert spec["artifact"] == {"uri": "pvc://models-out/sentiment-lora", "format": "PEFT_ADAPTER"}
    assert spec["sourceTrainedMLModelRef"] == {"name": "minilm", "namespace": "models"}
    assert spec["trainingRequestRef"] == {"kind": "MLFineTuningRequest", "name": "sentiment-lora", "namespace": "team-a"}
    assert "ownerReferences" not in body["metadata"]


def test_output_model_name_and_format_fallbacks():
    request = training_request()
    request["spec"]["output"]["modelName"] = "load-v2"
    request["spec"]["mLTrainingType"] = "PRE_SPECIALISED_TRAINING"
    request["spec"]["expectedInferenceScope"] = ["A", "B"]
    state = RequestState(request, names.TRAINING_REQUEST)
    body = output_model_body(state, report(artifactFormat="SOMETHING_ELSE"), None)
    assert body["metadata"]["name"] == "load-v2"
    assert body["spec"]["artifact"]["format"] == "SAFETENSORS"
    assert body["spec"]["inferenceScope"] == ["A", "B"]
    assert "sourceTrainedMLModelRef" not in body["spec"]


def test_missing_conditions_filled_for_existing_job():
    state = RequestState(fine_tuning_request(), names.FINE_TUNING_REQUEST)
    job = {"metadata": {"name": "j-1"}}
    missing = _missing_job_conditions(state, job)
    assert missing["JobCreated"][0] is True
    assert missing["Authorized"][0] is True
    state.body["status"] = {"conditions": [{"type": "JobCreated", "status": "True"}, {"type": "Authorized", "status": "True"}]}
    assert _missing_job_conditions(state, job) == {}


def test_watcher_success_lines_filtered():
    quiet = QuietWatchersFilter()
    assert not quiet.filter(logging.LogRecord("kopf.objects", logging.INFO, "", 0, "Handler 'pod_changed' succeeded.", None, None))
    assert quiet.filter(logging.LogRecord("kopf.objects", logging.ERROR, "", 0, "Handler 'pod_changed' failed.", None, None))


def test_backoff_delay_doubles_to_cap():
    delays = [backoff_delay(failures, 2.0, 30.0) for failures in range(1, 8)]
    assert delays == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert backoff_delay(0, 2.0, 30.0) == 2.0
    assert backoff_delay(10_000, 2.0, 30.0) == 30.0


def test_rejected_job_creation_backs_off():
    context = Context(kube=None, settings=Settings(api_retry_seconds=2, api_retry_max_seconds=20))
    request = fine_tuning_request()
    request["status"] = progress.apply_transition(
        None, progress.Transition(progress.Phase.JOB_CREATE_FAILED, "Forbidden", "exceeded quota"), 1, progress.parse_time("2030-01-01T00:00:00Z")
    )
    state = RequestState(request, names.FINE_TUNING_REQUEST)
    logger = logging.getLogger("test")

    delays = [_retry_delay(context, state, logger) for _ in range(6)]
    assert delays == [2.0, 4.0, 8.0, 16.0, 20.0, 20.0]

    other = RequestState(fine_tuning_request() | {"status": request["status"]}, names.FINE_TUNING_REQUEST)
    other.body["metadata"]["name"] = "other"
    assert _retry_delay(context, other, logger) == 2.0


def denied_status(since: datetime, phase=progress.Phase.UNAUTHORIZED):
    status = progress.apply_transition(None, progress.Transition(phase, "Forbidden", "denied"), 1, since)
    status["conditions"] = progress.set_condition(status["conditions"], "Authorized", False, "Forbidden", "denied", 1, since)
    return status


def test_authorization_retry_ends_with_grace_period():
    context = Context(kube=None, settings=Settings(authorization_retry_seconds=30, authorization_grace_seconds=300))
    request = fine_tuning_request()
    request["status"] = denied_status(datetime.now(timezone.utc))
    state = RequestState(request, names.FINE_TUNING_REQUEST)
    logger = logging.getLogger("test")
    assert [_retry_delay(context, state, logger) for _ in range(3)] == [30.0, 30.0, 30.0]

    request["status"] = denied_status(datetime.now(timezone.utc) - timedelta(seconds=290))
    assert 1.0 <= _retry_delay(context, state, logger) <= 11.0
    request["status"] = denied_status(datetime.now(timezone.utc) - timedelta(seconds=400))
    assert _retry_delay(context, state, logger) == 1.0


def test_denial_start_and_forbidden_failure():
    now = datetime(2030, 1, 1, tzinfo=timezone.utc)
    earlier = now - timedelta(minutes=3)
    assert denied_since(None, now) == now
    assert denied_since(denied_status(earlier), now) == earlier
    allowed = {"conditions": progress.set_condition([], "Authorized", True, "Allowed", "ok", 1, earlier)}
    assert denied_since(allowed, now) == now

    assert not failed_as_forbidden(denied_status(earlier))
    assert failed_as_forbidden(denied_status(earlier, progress.Phase.FAILED))
    crashed = progress.apply_transition(None, progress.Transition(progress.Phase.FAILED, "Crash", "exit 1"), 1, now)
    assert not failed_as_forbidden(crashed)


def missing_data_status(since, phase=progress.Phase.WAITING_FOR_DATA):
    status = progress.apply_transition(None, progress.Transition(phase, "DataSourceNotFound", "missing"), 1, since)
    status["conditions"] = progress.set_condition(status["conditions"], "JobCreated", False, "DataSourceNotFound", "missing", 1, since)
    return status


def test_data_wait_ends_with_grace_period():
    context = Context(kube=None, settings=Settings(api_retry_seconds=10, api_retry_max_seconds=300, data_source_grace_seconds=600))
    request = fine_tuning_request()
    request["status"] = missing_data_status(datetime.now(timezone.utc))
    state = RequestState(request, names.FINE_TUNING_REQUEST)
    logger = logging.getLogger("test")
    assert [_retry_delay(context, state, logger) for _ in range(3)] == [10.0, 20.0, 40.0]

    request["status"] = missing_data_status(datetime.now(timezone.utc) - timedelta(seconds=590))
    assert 1.0 <= _retry_delay(context, state, logger) <= 11.0


def test_failure_after_waiting_reopens():
    now = datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert failed_while_waiting(missing_data_status(now)) is None
    assert failed_while_waiting(missing_data_status(now, progress.Phase.FAILED)) == "JobCreated"
    assert failed_while_waiting(denied_status(now, progress.Phase.FAILED)) == "Authorized"
    crashed = progress.apply_transition(None, progress.Transition(progress.Phase.FAILED, "Crash", "exit 1"), 1, now)
    assert failed_while_waiting(crashed) is None


def test_watch_restart_logged_at_info():
    restart = logging.LogRecord(KOPF_WATCH_LOGGER, logging.DEBUG, "", 0, "Restarting the watch-stream for %s cluster-wide.", ("mlmodels.v1alpha1.aiml.mns.io",), None)
    assert WatchRestartFilter(keep_debug=False).filter(restart)
    assert restart.levelno == logging.INFO
    assert restart.getMessage() == "watch expired (410 Gone), listing again: mlmodels.v1alpha1.aiml.mns.io cluster-wide."

    other = logging.LogRecord(KOPF_WATCH_LOGGER, logging.DEBUG, "", 0, "Starting the watch-stream for pods.", None, None)
    assert not WatchRestartFilter(keep_debug=False).filter(other)
    assert WatchRestartFilter(keep_debug=True).filter(other)
    warning = logging.LogRecord(KOPF_WATCH_LOGGER, logging.WARNING, "", 0, "Ignoring an unsupported event type", None, None)
    assert WatchRestartFilter(keep_debug=False).filter(warning)


def test_admission_rejection_logged_at_info():
    rejection = logging.LogRecord(
        "kopf.objects", logging.ERROR, __file__, 1,
        "Webhook 'check-mlfinetuningrequests' failed permanently: spec.trainer.image: not allowed", (), None,
    )
    other_error = logging.LogRecord("kopf.objects", logging.ERROR, __file__, 1, "Handler 'wake' failed", (), None)

    assert AdmissionRejectionFilter().filter(rejection)
    assert rejection.levelno == logging.INFO
    assert AdmissionRejectionFilter().filter(other_error)
    assert other_error.levelno == logging.ERROR


def test_wake_successes_dropped():
    wake = logging.LogRecord("kopf.objects", logging.INFO, __file__, 1, "Handler 'wake' succeeded.", (), None)

    assert not QuietWatchersFilter().filter(wake)
