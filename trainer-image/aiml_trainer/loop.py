"""The training loop: epochs of seeded mini-batches, evaluation, checkpoints and stop rules.

Data order is a permutation seeded with ``seed + epoch``, so a run resumed from a checkpoint
at (epoch, step) rebuilds the same order and skips the batches already done. With the model,
optimizer, scheduler and RNG states restored too, a resumed run continues where the stopped
one was. A SIGTERM only sets a flag: the current step finishes, then the loop writes a
checkpoint and returns with stop reason INTERRUPTED.

Stop reasons: EPOCHS_COMPLETED (hyperparameters.epochs), MAX_EPOCHS (termination.maxEpochs
was lower), MAX_DURATION (termination.maxDurationSeconds, counted from the start of this
process), REQUIREMENTS_MET (termination.stopWhenRequirementsMet after an evaluation where
every requirement was met) and INTERRUPTED.
"""

from __future__ import annotations

import logging
import math
import pathlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from ml_training_operator.protocol import Phase, PerformanceMetric, TrainerConfig

from . import checkpoints
from .data import PreparedData
from .progress import ProgressReporter
from .runtime import Runtime
from .target import TrainingTarget, load_trainable_state, trainable_state

log = logging.getLogger(__name__)

WARMUP_SHARE = 0.06
MAX_GRADIENT_NORM = 1.0
# Training spans 10..90 percent of the progress bar; data loading and saving share the rest.
TRAINING_PROGRESS_START = 10
TRAINING_PROGRESS_END = 90

Evaluate = Callable[[], tuple[dict[PerformanceMetric, float], float]]


@dataclass
class LoopResult:
    stop_reason: str
    epochs_completed: int
    steps: int
    total_steps: int
    metrics: dict[PerformanceMetric, float] = field(default_factory=dict)
    confidence: float = 0.0
    last_loss: float | None = None
    samples_per_second: float | None = None
    resumed_from_step: int | None = None
    checkpoint: pathlib.Path | None = None


class StopFlag:
    """Set from the SIGTERM handler; read by the loop between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


def linear_schedule(total_steps: int) -> Callable[[int], float]:
    warmup = max(1, int(total_steps * WARMUP_SHARE))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


class TrainingLoop:
    def __init__(
        self,
        config: TrainerConfig,
        data: PreparedData,
        target: TrainingTarget,
        runtime: Runtime,
        reporter: ProgressReporter,
        evaluate: Evaluate,
        requirements_met: Callable[[dict[PerformanceMetric, float]], bool],
        stop_flag: StopFlag,
        started_at: float,
    ) -> None:
        self.config = config
        self.data = data
        self.target = target
        self.runtime = runtime
        self.reporter = reporter
        self.evaluate = evaluate
        self.requirements_met = requirements_met
        self.stop_flag = stop_flag
        self.started_at = started_at

        hyperparameters = config.hyperparameters
        self.epochs = min(hyperparameters.epochs, config.termination.maxEpochs or hyperparameters.epochs)
        self.batch_size = hyperparameters.batchSize
        self.steps_per_epoch = math.ceil(len(data.train) / self.batch_size)
        self.total_steps = self.epochs * self.steps_per_epoch
        self.checkpoint_dir = pathlib.Path(config.output.checkpointPath)
        self.fingerprint = checkpoints.fingerprint(config)

        parameters = [parameter for parameter in target.model.parameters() if parameter.requires_grad]
        self.optimizer = torch.optim.AdamW(parameters, lr=hyperparameters.learningRate)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, linear_schedule(self.total_steps))
        self.scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.autocast_dtype is torch.float16)

        self.epoch = 0
        self.step_in_epoch = 0
        self.step = 0
        self.metrics: dict[PerformanceMetric, float] = {}
        self.confidence = 0.0
        self.evaluated_at_step = -1

    def run(self) -> LoopResult:
        resumed_from = self._resume()
        self.target.model.train()
        last_checkpoint = time.monotonic()
        interval = self.config.output.checkpointIntervalSeconds
        max_duration = self.config.termination.maxDurationSeconds
        loss_value: float | None = None
        samples = 0
        training_seconds = 0.0
        stop_reason = "MAX_EPOCHS" if self.epochs < self.config.hyperparameters.epochs else "EPOCHS_COMPLETED"

        while self.epoch < self.epochs:
            order = torch.randperm(len(self.data.train), generator=torch.Generator().manual_seed(self.config.hyperparameters.seed + self.epoch))
            while self.step_in_epoch < self.steps_per_epoch:
                if self.stop_flag.is_set():
                    path = self._checkpoint()
                    return self._result("INTERRUPTED", loss_value, samples, training_seconds, resumed_from, path)
                if max_duration is not None and time.monotonic() - self.started_at >= max_duration:
                    return self._finish("MAX_DURATION", loss_value, samples, training_seconds, resumed_from)

                indices = order[self.step_in_epoch * self.batch_size : (self.step_in_epoch + 1) * self.batch_size]
                step_started = time.perf_counter()
                loss_value = self._train_step(indices)
                training_seconds += time.perf_counter() - step_started
                samples += len(indices)
                self.step += 1
                self.step_in_epoch += 1

                self._emit_training(loss_value, samples, training_seconds)
                if time.monotonic() - last_checkpoint >= interval:
                    self._checkpoint()
                    last_checkpoint = time.monotonic()

            self.epoch += 1
            self.step_in_epoch = 0
            self._evaluate(loss_value)
            if self.config.termination.stopWhenRequirementsMet and self.config.performanceRequirements and self.requirements_met(self.metrics):
                stop_reason = "REQUIREMENTS_MET"
                break

        return self._finish(stop_reason, loss_value, samples, training_seconds, resumed_from)

    def _train_step(self, indices: torch.Tensor) -> float:
        loss = self.target.loss(self.data.train, indices)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(
            [parameter for parameter in self.target.model.parameters() if parameter.requires_grad], MAX_GRADIENT_NORM
        )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return float(loss.detach())

    def _emit_training(self, loss: float, samples: int, seconds: float) -> None:
        done = self.step / max(1, self.total_steps)
        rate = samples / seconds if seconds > 0 else None
        eta = (self.total_steps - self.step) * self.batch_size / rate if rate else None
        self.reporter.emit(
            Phase.TRAINING,
            TRAINING_PROGRESS_START + done * (TRAINING_PROGRESS_END - TRAINING_PROGRESS_START),
            force=self.step == self.total_steps,
            epoch=self.epoch,
            totalEpochs=self.epochs,
            step=self.step,
            totalSteps=self.total_steps,
            loss=round(loss, 6),
            samplesPerSecond=round(rate, 2) if rate else None,
            etaSeconds=round(eta, 1) if eta is not None else None,
        )

    def _evaluate(self, loss: float | None) -> None:
        self.metrics, self.confidence = self.evaluate()
        self.evaluated_at_step = self.step
        self.reporter.emit(
            Phase.EVALUATING,
            TRAINING_PROGRESS_START + self.step / max(1, self.total_steps) * (TRAINING_PROGRESS_END - TRAINING_PROGRESS_START),
            force=True,
            epoch=self.epoch,
            totalEpochs=self.epochs,
            step=self.step,
            totalSteps=self.total_steps,
            loss=round(loss, 6) if loss is not None else None,
            metrics=self.metrics,
        )
        self.target.model.train()

    def _finish(self, reason: str, loss: float | None, samples: int, seconds: float, resumed_from: int | None) -> LoopResult:
        if self.evaluated_at_step != self.step:
            self._evaluate(loss)
        return self._result(reason, loss, samples, seconds, resumed_from, None)

    def _result(self, reason: str, loss: float | None, samples: int, seconds: float, resumed_from: int | None, path: pathlib.Path | None) -> LoopResult:
        return LoopResult(
            stop_reason=reason,
            epochs_completed=self.epoch,
            steps=self.step,
            total_steps=self.total_steps,
            metrics=self.metrics,
            confidence=self.confidence,
            last_loss=loss,
            samples_per_second=round(samples / seconds, 2) if seconds > 0 else None,
            resumed_from_step=resumed_from,
            checkpoint=path,
        )

    def _checkpoint(self) -> pathlib.Path:
        state = {
            "fingerprint": self.fingerprint,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "step": self.step,
            "model": trainable_state(self.target.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.runtime.device.type == "cuda" else [],
            "metrics": {metric.value: value for metric, value in self.metrics.items()},
            "confidence": self.confidence,
            "evaluated_at_step": self.evaluated_at_step,
        }
        path = checkpoints.save(self.checkpoint_dir, self.step, state)
        log.info("checkpoint written at epoch %d step %d: %s", self.epoch, self.step, path)
        return path

    def _resume(self) -> int | None:
        state = checkpoints.load_newest(self.checkpoint_dir, self.fingerprint)
        if state is None:
            return None
        load_trainable_state(self.target.model, state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and self.runtime.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.epoch = state["epoch"]
        self.step_in_epoch = state["step_in_epoch"]
        self.step = state["step"]
        self.metrics = {PerformanceMetric(name): value for name, value in state["metrics"].items()}
        self.confidence = state["confidence"]
        self.evaluated_at_step = state["evaluated_at_step"]
        self.reporter.emit(
            Phase.TRAINING,
            TRAINING_PROGRESS_START + self.step / max(1, self.total_steps) * (TRAINING_PROGRESS_END - TRAINING_PROGRESS_START),
            force=True,
            epoch=self.epoch,
            totalEpochs=self.epochs,
            step=self.step,
            totalSteps=self.total_steps,
            message=f"resumed from checkpoint at epoch {self.epoch} step {self.step}",
        )
        return self.step
