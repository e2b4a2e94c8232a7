"""The operator's process-wide state: API client, settings and its own identity.

Kopf calls handlers and webhooks as plain functions, so the objects that the startup
handler creates are kept here for them to find.
"""

from __future__ import annotations

import kopf

from .reconciler import Context

_context: Context | None = None
_operator_usernames: frozenset[str] = frozenset()


def set_context(context: Context | None, operator_usernames: frozenset[str] = frozenset()) -> None:
    global _context, _operator_usernames
    _context = context
    _operator_usernames = operator_usernames


def context() -> Context:
    """Return the running operator's context; a temporary error while the operator starts."""
    if _context is None:
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return _context


def operator_usernames() -> frozenset[str]:
    """Return the identities allowed to change requester annotations: the operator's own and configured ones."""
    return _operator_usernames
