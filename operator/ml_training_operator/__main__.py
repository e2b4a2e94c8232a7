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
_QUIET_HANDLERS = ("Handler 'job_changed' succeeded.", "Handler 'pod_changed' succeeded.")


class QuietWatchersFilter(logging.Filter):
    """Drops the success lines of the Job and Pod watchers; their failures still pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in _QUIET_HANDLERS


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

    from . import handlers  # noqa: F401  (registers the handlers and webhooks with Kopf)

    kopf.run(
        standalone=True,
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
