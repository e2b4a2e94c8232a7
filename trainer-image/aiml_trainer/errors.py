"""Exceptions that decide how the trainer ends.

``ConfigError`` means the configuration or the input data is invalid: the trainer exits with
``CONFIG_ERROR_EXIT_CODE`` so that the Job fails at once instead of retrying, because a retry
with the same input cannot succeed. ``TrainingFailed`` means the run went through but produced
nothing usable; it is reported as a FAILED outcome and retried like a crash.
"""

from __future__ import annotations


class ConfigError(Exception):
    """The configuration or the training data is invalid; the message says what to change."""


class TrainingFailed(Exception):
    """Training ran but its result cannot be used, e.g. an adapter without trained tensors."""
