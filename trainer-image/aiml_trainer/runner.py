"""One trainer run from configuration to report: the phases in order, and how the run ends.

Exit codes: 0 on success and ``CONFIG_ERROR_EXIT_CODE`` (78) for invalid configuration or data.
143 (128 + SIGTERM, as a shell reports it) means SIGTERM stopped the run after a checkpoint.
1 means a failed or crashed run, which the Job may retry.
"""

from __future__ import annotations

import json
import logging
import pathlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from ml_training_operator.protocol import (
    CONFIG_ERROR_EXIT_CODE,
    FineTuningConfig,
    FineTuningMethod,
    Outcome,
    Phase,
    PerformanceMetric,
    Task,
    TrainerConfig,
    TrainingType,
)

from . import finetune, metrics, models
from .config import load_config, resolve_model_path
from .data import CLASSIFICATION_TASKS, PreparedData, Split, prepare
from .errors import ConfigError, TrainingFailed
from .loop import LoopResult, StopFlag, TrainingLoop
from .network import NetworkTarget
from .progress import ProgressReporter
from .report import FullReport, all_requirements_met, metric_results, write_reports
from .runtime import Runtime, seed_everything, select_runtime
from .sources import read_sources
from .target import TrainingTarget, count_parameters, trainable_state

log = logging.getLogger(__name__)

INTERRUPTED_EXIT_CODE = 128 + signal.SIGTERM
FAILED_EXIT_CODE = 1
PREDICTIONS_FILE = "validation-predictions.jsonl"


@dataclass
class Built:
    """A target ready to train, with what saving it needs afterwards."""

    target: TrainingTarget
    save: Callable[[pathlib.Path], tuple[int, str]]
    trainable: int
    total: int


def run(config_path: pathlib.Path) -> int:
    """Run the trainer for the configuration at ``config_path`` and return the exit code."""
    started = time.monotonic()
    try:
        config = load_config(config_path)
    except ConfigError as error:
        log.error("%s", error)
        write_reports(FullReport(outcome=Outcome.CONFIG_ERROR, message=str(error)), None)
        return CONFIG_ERROR_EXIT_CODE

    stop_flag = StopFlag()
    signal.signal(signal.SIGTERM, lambda signum, frame: _on_sigterm(stop_flag))
    reporter = ProgressReporter(config)
    report = FullReport(outcome=Outcome.FAILED, outputPath=config.output.path, usedConsumerTrainingData=_consumer_uris(config))
    try:
        exit_code = _execute(config, reporter, stop_flag, started, report)
    except ConfigError as error:
        log.error("%s", error)
        report.outcome, report.message, exit_code = Outcome.CONFIG_ERROR, str(error), CONFIG_ERROR_EXIT_CODE
    except TrainingFailed as error:
        log.error("training failed: %s", error)
        report.outcome, report.message, exit_code = Outcome.FAILED, str(error), FAILED_EXIT_CODE
    except Exception as error:  # noqa: BLE001 - any crash still gets a report before the Job sees it
        log.exception("trainer crashed")
        report.outcome, report.message, exit_code = Outcome.FAILED, f"trainer crashed: {type(error).__name__}: {error}", FAILED_EXIT_CODE
    finally:
        reporter.close()

    report.durationSeconds = round(time.monotonic() - started, 2)
    report.progressPostFailures = reporter.post_failures
    write_reports(report, config.output.path)
    return exit_code


def _on_sigterm(stop_flag: StopFlag) -> None:
    log.warning("SIGTERM received: finishing the current step, then writing a checkpoint")
    stop_flag.set()


def _execute(config: TrainerConfig, reporter: ProgressReporter, stop_flag: StopFlag, started: float, report: FullReport) -> int:
    runtime = select_runtime(config.hyperparameters.precision)
    reporter.device, reporter.precision = runtime.device_name, runtime.precision
    report.device, report.precision = runtime.device_name, runtime.precision
    if runtime.note:
        log.warning("%s", runtime.note)
        report.notes.append(runtime.note)
    _check_config(config, runtime)
    seed_everything(config.hyperparameters.seed, runtime.device)

    reporter.emit(Phase.COLLECTING_DATA, 1, force=True, message=f"reading {len(config.data.sources)} data source(s)")
    table = read_sources(config.data)

    reporter.emit(Phase.PREPARING_TRAINING_DATA, 5, force=True, message=f"{len(table)} rows read")
    base_spec = None
    if config.task is not Task.TEXT_CLASSIFICATION and config.model.basePath:
        base_spec = models.load_spec(resolve_model_path(config.model.basePath))
    labels = config.model.labels or (base_spec.labels if base_spec else [])
    data = prepare(table, config.task, config.data, config.hyperparameters.seed, labels, models.normalization_of(base_spec) if base_spec else None)
    report.labels = data.labels
    report.dataRatioTrainingAndValidation = round(100 * len(data.train) / (len(data.train) + len(data.validation)))
    report.areNewTrainingDataUsed = True

    built = _build(config, data, runtime)
    report.trainableParameters, report.totalParameters = built.trainable, built.total
    evaluate = _evaluator(config, data, built.target, data.validation)
    loop = TrainingLoop(
        config, data, built.target, runtime, reporter, evaluate,
        lambda values: all_requirements_met(values, config.performanceRequirements), stop_flag, started,
    )
    result = loop.run()
    _fill_from_loop(report, config, result)
    if result.stop_reason == "INTERRUPTED":
        report.outcome = Outcome.INTERRUPTED
        report.message = f"stopped by SIGTERM at epoch {result.epochs_completed} step {result.steps}; checkpoint {result.checkpoint}"
        return INTERRUPTED_EXIT_CODE

    reporter.emit(Phase.SAVING_MODEL, 92, force=True, message=f"saving to {config.output.path}")
    report.trainedTensors, report.artifactFormat = built.save(pathlib.Path(config.output.path))
    _write_predictions(config, data, built.target)
    training_metrics, _ = _evaluator(config, data, built.target, data.train)()
    report.modelPerformanceTraining = metric_results(training_metrics, config.performanceRequirements)

    report.outcome = Outcome.SUCCEEDED
    report.message = _summary(result)
    reporter.emit(Phase.SAVING_MODEL, 100, force=True, message=report.message)
    return 0


def _check_config(config: TrainerConfig, runtime: Runtime) -> None:
    requested = [requirement.performanceMetric for requirement in config.performanceRequirements]
    unfit = metrics.check_metrics_fit_task(config.task, requested)
    if unfit:
        raise ConfigError(
            f"performanceRequirements: {', '.join(metric.value for metric in unfit)} cannot be computed for task {config.task.value}"
        )
    fine_tuning = config.task is Task.TEXT_CLASSIFICATION
    if config.mLTrainingType is TrainingType.FINE_TUNING and not fine_tuning:
        raise ConfigError(f"fine-tuning supports task TEXT_CLASSIFICATION only, not {config.task.value}")
    if fine_tuning:
        if not config.model.basePath:
            raise ConfigError("model.basePath is required for TEXT_CLASSIFICATION: it names the pre-trained model to fine-tune")
        resolve_model_path(config.model.basePath)
        finetune.check_fine_tuning(config.fineTuning or FineTuningConfig(), runtime)
    elif config.mLTrainingType is TrainingType.RE_TRAINING and not config.model.basePath:
        raise ConfigError("model.basePath is required for RE_TRAINING: it names the model to train further")


def _build(config: TrainerConfig, data: PreparedData, runtime: Runtime) -> Built:
    if config.task is Task.TEXT_CLASSIFICATION:
        return _build_fine_tune(config, data, runtime)
    return _build_network(config, data, runtime)


def _build_network(config: TrainerConfig, data: PreparedData, runtime: Runtime) -> Built:
    lookback = config.data.lookback if config.task is Task.TIME_SERIES_FORECASTING else 0
    if config.model.basePath:
        network, spec = models.load_network(resolve_model_path(config.model.basePath))
        if spec.task != config.task.value:
            raise ConfigError(f"model.basePath was trained for {spec.task}, the request is for {config.task.value}")
        if spec.lookback != lookback:
            raise ConfigError(f"model.basePath expects a lookback of {spec.lookback}, dataMapping.lookback is {lookback}")
    else:
        spec = models.NetworkSpec(
            architecture=config.model.architecture,
            task=config.task.value,
            input_size=data.input_size,
            output_size=models.output_size_for(config.task, data.labels),
            hidden_sizes=list(config.model.hiddenSizes),
            lookback=lookback,
            labels=data.labels,
            feature_names=data.feature_names,
            normalization=vars(data.normalization),
        )
        network = models.build_network(spec)
    target = NetworkTarget(network, config.task, data.normalization, runtime)
    trainable, total = count_parameters(network)

    def save(directory: pathlib.Path) -> tuple[int, str]:
        return models.save_network(target.model, spec, directory), "SAFETENSORS"

    return Built(target, save, trainable, total)


def _build_fine_tune(config: TrainerConfig, data: PreparedData, runtime: Runtime) -> Built:
    fine_tuning = config.fineTuning or FineTuningConfig()
    base_path = resolve_model_path(config.model.basePath or "")
    tokenizer, model, head_modules = finetune.load_base_model(base_path, data.labels, fine_tuning, runtime)
    setup = finetune.apply_method(model, fine_tuning, head_modules)
    setup.model.to(runtime.device)
    initial_state = trainable_state(setup.model)
    target = finetune.FineTuneTarget(setup.model, tokenizer, config.hyperparameters.maxSequenceLength, runtime)
    trainable, total = count_parameters(setup.model)
    log.info("fine-tuning %s with %s: %d of %d parameters trainable (%.2f%%)", base_path, fine_tuning.method.value, trainable, total, 100 * trainable / total)

    def save(directory: pathlib.Path) -> tuple[int, str]:
        metadata = finetune.fine_tuning_metadata(config.task, fine_tuning.method, config.model.basePath or "", data.labels, setup)
        # The adapter is saved (and checked) before any merge, so a failed merge never loses it.
        saved = finetune.save_fine_tuned(setup, tokenizer, directory, metadata, initial_state)
        if fine_tuning.mergeAdapter and fine_tuning.method is not FineTuningMethod.FULL:
            finetune.merge_adapter(base_path, directory, data.labels, directory / "merged")
        return saved

    return Built(target, save, trainable, total)


def _evaluator(config: TrainerConfig, data: PreparedData, target: TrainingTarget, split: Split):
    requested = [requirement.performanceMetric for requirement in config.performanceRequirements]
    chosen = metrics.metrics_for(config.task, requested)

    def evaluate() -> tuple[dict[PerformanceMetric, float], float]:
        output = target.predict(split)
        if config.task in CLASSIFICATION_TASKS:
            return metrics.classification_metrics(output, split.targets, chosen)
        return metrics.regression_metrics(output, split.targets, chosen)

    return evaluate


def _fill_from_loop(report: FullReport, config: TrainerConfig, result: LoopResult) -> None:
    report.modelPerformanceValidation = metric_results(result.metrics, config.performanceRequirements)
    report.modelConfidenceIndication = round(result.confidence) if result.metrics else None
    report.epochsCompleted = result.epochs_completed
    report.steps = result.steps
    report.totalSteps = result.total_steps
    report.stopReason = result.stop_reason
    report.samplesPerSecond = result.samples_per_second
    report.resumedFromStep = result.resumed_from_step
    report.checkpointPath = str(result.checkpoint) if result.checkpoint else None


def _write_predictions(config: TrainerConfig, data: PreparedData, target: TrainingTarget) -> None:
    """Write the validation predictions, so a reloaded model can be checked against them."""
    output = target.predict(data.validation)
    path = pathlib.Path(config.output.path) / PREDICTIONS_FILE
    with path.open("w", encoding="utf-8") as file:
        for index in range(len(data.validation)):
            record: dict = {"target": data.validation.targets[index].item()}
            if config.task is Task.TEXT_CLASSIFICATION:
                record["text"] = data.validation.inputs[index]
            if config.task in CLASSIFICATION_TASKS:
                record["prediction"] = int(output[index].argmax())
                record["logits"] = [round(value, 6) for value in output[index].tolist()]
            else:
                record["prediction"] = round(float(output[index]), 6)
            file.write(json.dumps(record) + "\n")


def _summary(result: LoopResult) -> str:
    scores = ", ".join(f"{metric.value}={value:.4g}" for metric, value in result.metrics.items())
    return f"trained {result.steps} steps in {result.epochs_completed} epoch(s), stopped by {result.stop_reason}; validation {scores}"


def _consumer_uris(config: TrainerConfig) -> list[str]:
    return config.data.consumerUris or config.data.sources

