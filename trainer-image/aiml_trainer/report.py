"""The final report: compact to the termination message path, full to ``<output>/report.json``.

The operator reads the termination message (at most 4 KiB) from the Pod status, so that copy
carries the protocol's ``TrainerReport`` only. The full report adds details for people and
tools that read the output directory: per-run numbers such as throughput and where a run resumed.
"""

from __future__ import annotations

import logging
import os
import pathlib

from ml_training_operator.protocol import (
    FULL_REPORT_FILE_NAME,
    MetricResult,
    PerformanceMetric,
    PerformanceRequirement,
    TrainerReport,
    requirement_met,
)
from pydantic import Field

log = logging.getLogger(__name__)

TERMINATION_MESSAGE_PATH_ENV = "AIML_TERMINATION_MESSAGE_PATH"
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"


class FullReport(TrainerReport):
    """TrainerReport plus details that do not fit, or do not belong, in the termination message."""

    labels: list[str] = Field(default_factory=list)
    totalSteps: int | None = None
    samplesPerSecond: float | None = None
    resumedFromStep: int | None = None
    checkpointPath: str | None = None
    progressPostFailures: int = 0
    notes: list[str] = Field(default_factory=list)

    def compact(self) -> TrainerReport:
        return TrainerReport.model_validate(self.model_dump(include=set(TrainerReport.model_fields)))


def metric_results(
    values: dict[PerformanceMetric, float], requirements: list[PerformanceRequirement]
) -> list[MetricResult]:
    """Pair achieved scores with the requirements; metrics without a requirement carry no verdict."""
    results = []
    judged = set()
    for requirement in requirements:
        metric = requirement.performanceMetric
        if metric not in values:
            continue
        judged.add(metric)
        results.append(
            MetricResult(
                performanceMetric=metric,
                performanceScore=values[metric],
                inferenceOutputName=requirement.inferenceOutputName,
                requiredScore=requirement.performanceScore,
                requirementMet=requirement_met(metric, values[metric], requirement.performanceScore),
            )
        )
    for metric, value in values.items():
        if metric not in judged:
            results.append(MetricResult(performanceMetric=metric, performanceScore=value))
    return results


def all_requirements_met(values: dict[PerformanceMetric, float], requirements: list[PerformanceRequirement]) -> bool:
    return all(
        requirement.performanceMetric in values
        and requirement_met(requirement.performanceMetric, values[requirement.performanceMetric], requirement.performanceScore)
        for requirement in requirements
    )


def termination_message_path() -> pathlib.Path:
    return pathlib.Path(os.environ.get(TERMINATION_MESSAGE_PATH_ENV, DEFAULT_TERMINATION_MESSAGE_PATH))


def write_reports(report: FullReport, output_path: str | None) -> None:
    """Write the compact report to the termination message path and the full one next to the model."""
    path = termination_message_path()
    try:
        path.write_text(report.compact().to_termination_message(), encoding="utf-8")
    except OSError as error:
        log.error("cannot write the termination message to %s: %s", path, error)

    if output_path is None:
        return
    full_path = pathlib.Path(output_path) / FULL_REPORT_FILE_NAME
    try:
        full_path.parent.mkdir(parents=True, exist_ok=True)
        full_path.write_text(report.model_dump_json(indent=2, exclude_none=True) + "\n", encoding="utf-8")
    except OSError as error:
        log.error("cannot write the full report to %s: %s", full_path, error)
