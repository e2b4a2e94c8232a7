"""Events and reports the trainer produces validate against the wire format in protocol.py."""

from __future__ import annotations

import http.server
import io
import json
import threading
import time

import pytest
from ml_training_operator.protocol import (
    ProgressConfig,
    MAX_TERMINATION_MESSAGE_BYTES,
    Outcome,
    Phase,
    ProgressEvent,
    TrainerConfig,
    TrainerReport,
)

from aiml_trainer.cli import main
from aiml_trainer.progress import ProgressReporter, progress_url
from aiml_trainer.report import FullReport
from tests.integration.trainer_support import config_document, write_config


def test_trainer_run_events_and_report_validate(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AIML_TERMINATION_MESSAGE_PATH", str(tmp_path / "termination-log"))
    document = config_document(tmp_path, hyperparameters={"epochs": 2}, progress={"minIntervalSeconds": 0})

    assert main(["run", "--config", str(write_config(tmp_path, document))]) == 0

    events = [ProgressEvent.model_validate_json(line) for line in capsys.readouterr().out.splitlines()]
    assert [phase for phase in Phase if phase in {event.phase for event in events}] == list(Phase)
    assert events[-1].progressPercentage == 100
    message = (tmp_path / "termination-log").read_bytes()
    assert len(message) <= MAX_TERMINATION_MESSAGE_BYTES
    report = TrainerReport.model_validate_json(message)
    assert report.outcome is Outcome.SUCCEEDED
    assert FullReport.model_validate_json((tmp_path / "output" / "report.json").read_text()).steps == report.steps


def test_long_report_fits_termination_message():
    report = FullReport(outcome=Outcome.CONFIG_ERROR, message="row 1 column 'x': invalid " * 400, notes=["n" * 5000])

    text = report.compact().to_termination_message()

    assert len(text.encode()) <= MAX_TERMINATION_MESSAGE_BYTES
    assert TrainerReport.model_validate_json(text).message.endswith("[truncated]")


class ProgressHandler(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - name fixed by BaseHTTPRequestHandler
        body = self.rfile.read(int(self.headers["Content-Length"]))
        ProgressHandler.received.append((self.path, self.headers.get("Authorization", ""), body))
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def progress_server():
    ProgressHandler.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ProgressHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def reporter_config(tmp_path, endpoint: str) -> TrainerConfig:
    token = tmp_path / "token"
    token.write_text("request-scoped-token\n")
    document = config_document(tmp_path, request={"kind": "MLFineTuningRequest", "namespace": "team-a", "name": "topics"},
                               progress={"endpoint": endpoint, "tokenPath": str(token), "minIntervalSeconds": 60})
    return TrainerConfig.model_validate(document)


def test_progress_endpoint_is_base_url(tmp_path):
    config = reporter_config(tmp_path, "http://127.0.0.1:8080/")
    suffix = "/v1alpha1/namespaces/<namespace>/<plural>/<name>/progress"
    assert suffix in ProgressConfig.model_fields["endpoint"].description
    assert progress_url(config) == "http://127.0.0.1:8080/v1alpha1/namespaces/team-a/mlfinetuningrequests/topics/progress"


def test_progress_posts_with_bearer_token(tmp_path, progress_server):
    stream = io.StringIO()
    reporter = ProgressReporter(reporter_config(tmp_path, progress_server), stream)

    assert reporter.emit(Phase.TRAINING, 20, step=1, totalSteps=10)
    assert not reporter.emit(Phase.TRAINING, 30, step=2, totalSteps=10)
    assert reporter.emit(Phase.EVALUATING, 40)
    reporter.close()

    assert reporter.post_failures == 0
    assert [path for path, _, _ in ProgressHandler.received] == ["/v1alpha1/namespaces/team-a/mlfinetuningrequests/topics/progress"] * 2
    assert {authorization for _, authorization, _ in ProgressHandler.received} == {"Bearer request-scoped-token"}
    posted = [json.loads(body) for _, _, body in ProgressHandler.received]
    printed = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert posted == printed
    assert [ProgressEvent.model_validate(event).phase for event in posted] == [Phase.TRAINING, Phase.EVALUATING]


def test_unreachable_endpoint_never_blocks(tmp_path):
    # Port 9 (discard) on loopback has no listener here, so every POST fails at once.
    reporter = ProgressReporter(reporter_config(tmp_path, "http://127.0.0.1:9"), io.StringIO())

    started = time.monotonic()
    for step in range(50):
        reporter.emit(Phase.TRAINING, 20, force=True, step=step + 1)
    emit_seconds = time.monotonic() - started
    reporter.close()

    assert emit_seconds < 1.0
    assert reporter.post_failures > 0
