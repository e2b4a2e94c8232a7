"""Entry point ``aiml-operator``: start Kopf with the operator's handlers and status endpoint.

Run exactly one replica. Kopf's peering only pauses other operators that watch the same
resources; it is not leader election, so two active replicas would both reconcile. The
Helm chart therefore uses one replica with the Recreate strategy, and offers no standby.
"""

from __future__ import annotations

import logging
import os
import sys

import kopf

from .settings import SettingsError, load_settings


# Kopf logs every run of a handler at INFO. For the Job and Pod watchers, which only wake a
# request's reconciler, that is one line per Pod status change and hides the decisions.
_QUIET_HANDLERS = (
    "Handler 'job_changed' succeeded.",
    "Handler 'pod_changed' succeeded.",
    "Handler 'wake' succeeded.",
)


class QuietWatchersFilter(logging.Filter):
    """Drops the success lines of the Job and Pod watchers; their failures still pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in _QUIET_HANDLERS


class AdmissionRejectionFilter(logging.Filter):
    """Lowers Kopf's ERROR line for a rejected admission request to INFO.

    A rejection is the consumer's mistake, already logged by the webhook with its reason;
    at ERROR it would look like a fault of the operator and page whoever watches errors.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR:
            message = record.getMessage()
            if message.startswith("Webhook '") and "failed permanently" in message:
                record.levelno, record.levelname = logging.INFO, "INFO"
        return True


# Kopf (1.45) logs at DEBUG that a watch ended with 410 Gone (its resourceVersion was
# compacted away) and that it lists the resource again. That line is the only trace of an
# expired watch, so the operator logs it at INFO.
KOPF_WATCH_LOGGER = "kopf._cogs.clients.watching"
_WATCH_RESTART_PREFIX = "Restarting the watch-stream for "


class WatchRestartFilter(logging.Filter):
    """Raises Kopf's watch restart lines after 410 Gone to INFO and drops its other DEBUG lines."""

    def __init__(self, keep_debug: bool) -> None:
        super().__init__()
        self.keep_debug = keep_debug

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG:
            return True
        message = record.getMessage()
        if message.startswith(_WATCH_RESTART_PREFIX):
            record.msg = f"watch expired (410 Gone), listing again: {message[len(_WATCH_RESTART_PREFIX):]}"
            record.args = ()
            record.levelno, record.levelname = logging.INFO, "INFO"
            return True
        return self.keep_debug


def main(argv: list[str] | None = None) -> int:
    try:
        settings = load_settings(os.environ)
    except SettingsError as error:
        print(f"aiml-operator: invalid configuration: {error}", file=sys.stderr)
        return 2

    log_format = kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL
    kopf.configure(log_format=log_format, log_refkey="object", verbose=settings.log_level == "DEBUG")
    logging.getLogger().setLevel(settings.log_level)
    for handler in logging.getLogger().handlers:
        handler.addFilter(QuietWatchersFilter())
        handler.addFilter(AdmissionRejectionFilter())
    watch_logger = logging.getLogger(KOPF_WATCH_LOGGER)
    watch_logger.setLevel(logging.DEBUG)
    watch_logger.addFilter(WatchRestartFilter(keep_debug=settings.log_level == "DEBUG"))

    from . import handlers  # noqa: F401  (registers the handlers and webhooks with Kopf)

    kopf.run(
        standalone=True,
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
