"""Progress events: one JSON line per event on stdout, and the same JSON POSTed to the operator.

Events are rate-bounded (at most one per ``progress.minIntervalSeconds`` within a phase; a
phase change and the final event always go out). The POST runs in a background thread with a
short timeout and a small queue that drops the oldest event when full, so a slow or missing
endpoint never blocks or stops training: the first failure is logged as a warning and later
ones are only counted. Only the standard library is used, so the trainer needs no HTTP client.
"""

from __future__ import annotations

import logging
import queue
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any, TextIO

from ml_training_operator.protocol import Phase, ProgressEvent, TrainerConfig

log = logging.getLogger(__name__)

POST_TIMEOUT_SECONDS = 5.0
QUEUE_SIZE = 16
PLURALS = {"MLTrainingRequest": "mltrainingrequests", "MLFineTuningRequest": "mlfinetuningrequests"}


def progress_url(config: TrainerConfig) -> str | None:
    """Return the operator's progress URL for this request, or None when no endpoint is set."""
    if not config.progress.endpoint:
        return None
    request = config.request
    plural = PLURALS.get(request.kind, request.kind.lower() + "s")
    return f"{config.progress.endpoint.rstrip('/')}/v1alpha1/namespaces/{request.namespace}/{plural}/{request.name}/progress"


class ProgressReporter:
    """Prints progress events and forwards them to the operator's status endpoint."""

    def __init__(self, config: TrainerConfig, stream: TextIO | None = None) -> None:
        self._config = config
        self._stream = stream or sys.stdout
        self._min_interval = config.progress.minIntervalSeconds
        self._last_time = -float("inf")
        self._last_phase: Phase | None = None
        self._url = progress_url(config)
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._warned = False
        self.post_failures = 0
        self.posted = 0
        self.device: str | None = None
        self.precision: Any = None
        if self._url:
            self._ssl_context = ssl.create_default_context(cafile=config.progress.caFile) if self._url.startswith("https") else None
            self._thread = threading.Thread(target=self._post_loop, name="progress-post", daemon=True)
            self._thread.start()

    def emit(self, phase: Phase, percentage: float, force: bool = False, **fields: Any) -> bool:
        """Send one event unless the rate bound skips it; return whether it was sent."""
        now = time.monotonic()
        if not force and phase == self._last_phase and now - self._last_time < self._min_interval:
            return False
        self._last_time = now
        self._last_phase = phase

        event = ProgressEvent(
            request=self._config.request,
            phase=phase,
            progressPercentage=int(min(max(percentage, 0), 100)),
            device=self.device,
            precision=self.precision,
            **fields,
        )
        line = event.model_dump_json(exclude_none=True)
        self._stream.write(line + "\n")
        self._stream.flush()
        if self._url:
            self._enqueue(line.encode())
        return True

    def close(self, timeout: float = POST_TIMEOUT_SECONDS) -> None:
        """Let queued events go out for at most ``timeout`` seconds, then stop the sender."""
        if self._thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)

    def _enqueue(self, body: bytes) -> None:
        while True:
            try:
                self._queue.put_nowait(body)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    pass

    def _post_loop(self) -> None:
        while True:
            body = self._queue.get()
            if body is None:
                return
            try:
                self._post(body)
                self.posted += 1
            except (OSError, urllib.error.URLError, ValueError) as error:
                self._record_failure(error)

    def _post(self, body: bytes) -> None:
        headers = {"Content-Type": "application/json"}
        token_path = self._config.progress.tokenPath
        if token_path:
            # Read on every POST: the kubelet rotates projected tokens in place.
            with open(token_path, encoding="utf-8") as file:
                headers["Authorization"] = f"Bearer {file.read().strip()}"
        request = urllib.request.Request(self._url or "", data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=POST_TIMEOUT_SECONDS, context=self._ssl_context) as response:
            response.read()

    def _record_failure(self, error: Exception) -> None:
        self.post_failures += 1
        if not self._warned:
            self._warned = True
            log.warning("progress POST to %s failed, training goes on; later failures are only counted: %s", self._url, error)
