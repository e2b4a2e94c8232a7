"""Stand-in trainer for operator tests: speaks the trainer protocol without training a model.

It reads the same TrainerConfig as the real trainer and checks that its data sources are
mounted. It prints ProgressEvents on stdout, POSTs them with the projected token, and
writes checkpoints and a TrainerReport to the termination message path. So the operator
can be tested against real Jobs in seconds. It is not a trainer: its "model" is a small JSON file
and its metrics are derived from the requested scores.

Behaviour comes from the environment variable ``AIML_STANDIN_BEHAVIOUR`` (the image table
sets it per image tag):

- ``succeed`` (default): runs ``hyperparameters.epochs`` epochs and reports success;
- ``config-error``: rejects its configuration and exits with code 78;
- ``crash``: prints 60 log lines and a traceback and exits with code 1, leaving no termination message;
- ``slow``: like ``succeed`` with ten times more steps, for suspend and cancel tests;
- ``empty-adapter``: reports success but zero trained tensors.

``AIML_STANDIN_STEP_SECONDS`` sets the time per step (default 0.2 s). SIGTERM writes a
checkpoint and exits; the next run with the same output resumes from that checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from ml_training_operator import protocol

BEHAVIOURS = ("succeed", "config-error", "crash", "slow", "empty-adapter")
STEPS_PER_EPOCH = 5
TERMINATION_LOG = Path(os.environ.get("AIML_STANDIN_TERMINATION_LOG", "/dev/termination-log"))
PLURALS = {"MLTrainingRequest": "mltrainingrequests", "MLFineTuningRequest": "mlfinetuningrequests"}

_stop_requested = False


def _request_stop(signum: int, frame: object) -> None:
    global _stop_requested
    _stop_requested = True


class Reporter:
    """Prints progress events and POSTs them to the operator; a failed POST never stops the run."""

    def __init__(self, config: protocol.TrainerConfig) -> None:
        self.config = config
        self.url = None
        if config.progress.endpoint:
            request = config.request
            self.url = (
                f"{config.progress.endpoint.rstrip('/')}/v1alpha1/namespaces/{request.namespace}/"
                f"{PLURALS[request.kind]}/{request.name}/progress"
            )
        self.warned = False

    def emit(self, phase: protocol.Phase, percentage: int, **values: object) -> None:
        event = protocol.ProgressEvent(request=self.config.request, phase=phase, progressPercentage=percentage, **values)
        text = event.model_dump_json(exclude_none=True)
        print(text, flush=True)
        if self.url:
            self._post(text)

    def _post(self, text: str) -> None:
        token_path = self.config.progress.tokenPath
        headers = {"Content-Type": "application/json"}
        if token_path and Path(token_path).exists():
            headers["Authorization"] = "Bearer " + Path(token_path).read_text().strip()
        request = urllib.request.Request(self.url, data=text.encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                response.read()
        except (urllib.error.URLError, OSError) as error:
            if not self.warned:
                print(f"stand-in: progress POST to {self.url} failed: {error}", file=sys.stderr, flush=True)
                self.warned = True


def write_report(report: protocol.TrainerReport) -> None:
    TERMINATION_LOG.write_text(report.to_termination_message())


def check_sources(config: protocol.TrainerConfig) -> str | None:
    for uri, path in zip(config.data.consumerUris or config.data.sources, config.data.sources):
        if not Path(path).exists():
            return f"data source {uri} is not readable at {path}: no such file"
    return None


def achieved_scores(config: protocol.TrainerConfig) -> list[protocol.MetricResult]:
    """Return a score per requested metric that just meets its requirement (a stand-in has no model)."""
    results = []
    for requirement in config.performanceRequirements:
        metric = requirement.performanceMetric
        if metric in protocol.LOWER_IS_BETTER:
            score = requirement.performanceScore * 0.9
        else:
            score = min(1.0, requirement.performanceScore + 0.01)
        results.append(protocol.MetricResult(performanceMetric=metric, performanceScore=round(score, 4)))
    return results


def load_checkpoint(path: Path) -> int:
    state = path / "standin-checkpoint.json"
    if not state.exists():
        return 0
    return int(json.loads(state.read_text()).get("step", 0))


def save_checkpoint(path: Path, step: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "standin-checkpoint.json").write_text(json.dumps({"step": step}))


def run(config: protocol.TrainerConfig, behaviour: str, step_seconds: float) -> int:
    reporter = Reporter(config)
    started = time.monotonic()
    reporter.emit(protocol.Phase.COLLECTING_DATA, 1, message=f"stand-in trainer ({behaviour})")

    problem = check_sources(config)
    if behaviour == "config-error":
        problem = f"stand-in trainer rejected its configuration on purpose (AIML_STANDIN_BEHAVIOUR={behaviour})"
    if problem:
        write_report(protocol.TrainerReport(outcome=protocol.Outcome.CONFIG_ERROR, message=problem))
        print(f"configuration error: {problem}", file=sys.stderr, flush=True)
        return protocol.CONFIG_ERROR_EXIT_CODE

    reporter.emit(protocol.Phase.PREPARING_TRAINING_DATA, 5)
    epochs = config.hyperparameters.epochs
    steps_per_epoch = STEPS_PER_EPOCH * (10 if behaviour == "slow" else 1)
    total_steps = epochs * steps_per_epoch
    checkpoint_dir = Path(config.output.checkpointPath)
    first_step = load_checkpoint(checkpoint_dir)
    if first_step:
        print(f"stand-in: resuming from checkpoint at step {first_step}", flush=True)

    for step in range(first_step, total_steps):
        if behaviour == "crash" and step == first_step + 2:
            # A real trainer logs much more than the status may carry before it dies, so the
            # operator must cut the log to its tail.
            for line in range(60):
                print(f"stand-in: debug line {line} before the crash", file=sys.stderr)
            raise RuntimeError("stand-in trainer crashed on purpose (AIML_STANDIN_BEHAVIOUR=crash)")
        if _stop_requested:
            save_checkpoint(checkpoint_dir, step)
            write_report(protocol.TrainerReport(outcome=protocol.Outcome.INTERRUPTED, message=f"checkpoint at step {step}", steps=step))
            print(f"stand-in: stopped by SIGTERM, checkpoint at step {step}", flush=True)
            return 143
        time.sleep(step_seconds)
        done = step + 1
        percentage = 5 + int(85 * done / total_steps)
        reporter.emit(
            protocol.Phase.TRAINING,
            percentage,
            epoch=done // steps_per_epoch,
            totalEpochs=epochs,
            step=done,
            totalSteps=total_steps,
            loss=round(1.0 / done, 4),
            device="cpu",
        )
        if done % steps_per_epoch == 0:
            save_checkpoint(checkpoint_dir, done)

    reporter.emit(protocol.Phase.EVALUATING, 92)
    output = Path(config.output.path)
    output.mkdir(parents=True, exist_ok=True)
    tensors = 0 if behaviour == "empty-adapter" else 4
    (output / "standin-model.json").write_text(json.dumps({"request": config.request.model_dump(), "tensors": tensors}))
    reporter.emit(protocol.Phase.SAVING_MODEL, 98)

    scores = achieved_scores(config)
    report = protocol.TrainerReport(
        outcome=protocol.Outcome.SUCCEEDED,
        message=f"stand-in run finished{f', resumed from step {first_step}' if first_step else ''}",
        modelPerformanceTraining=scores,
        modelPerformanceValidation=scores,
        modelConfidenceIndication=90,
        usedConsumerTrainingData=config.data.consumerUris,
        areNewTrainingDataUsed=True,
        dataRatioTrainingAndValidation=int(round(100 * (1 - config.data.validationSplit))),
        trainableParameters=1000,
        totalParameters=100000,
        trainedTensors=tensors,
        outputPath=str(output),
        artifactFormat="PEFT_ADAPTER" if config.fineTuning else "TORCH_STATE_DICT",
        device="cpu",
        precision=protocol.Precision.FP32,
        epochsCompleted=epochs,
        steps=total_steps,
        durationSeconds=round(time.monotonic() - started, 3),
        stopReason="MAX_EPOCHS",
    )
    (output / protocol.FULL_REPORT_FILE_NAME).write_text(report.model_dump_json(indent=2, exclude_none=True))
    write_report(report)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="standin-trainer", description="Stand-in trainer for operator tests.")
    parser.add_argument("command", choices=["run"])
    parser.add_argument("--config", required=True, help="path of the TrainerConfig JSON document")
    arguments = parser.parse_args(argv)

    behaviour = os.environ.get("AIML_STANDIN_BEHAVIOUR", "succeed")
    if behaviour not in BEHAVIOURS:
        print(f"unknown AIML_STANDIN_BEHAVIOUR {behaviour!r}; expected one of {', '.join(BEHAVIOURS)}", file=sys.stderr)
        return 2
    step_seconds = float(os.environ.get("AIML_STANDIN_STEP_SECONDS", "0.2"))
    signal.signal(signal.SIGTERM, _request_stop)

    config = protocol.TrainerConfig.model_validate_json(Path(arguments.config).read_text())
    return run(config, behaviour, step_seconds)


if __name__ == "__main__":
    sys.exit(main())
