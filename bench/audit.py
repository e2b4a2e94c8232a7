"""Counting the operator's API calls in the local cluster's audit log.

The local cluster, started with audit on, logs every call of the operator's identity at
Metadata level (see ``LocalCluster.audit``). A call is counted once: when its response
completed, or for a watch when its response started, because a watch completes only when
it ends.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path


class AuditLog:
    """Read the calls that one user made after a recorded position in the audit log."""

    def __init__(self, path: Path, username: str) -> None:
        self.path = path
        self.username = username

    @property
    def available(self) -> bool:
        return self.path.exists()

    def position(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def calls_since(self, offset: int) -> Counter[str]:
        """Count the user's calls after ``offset`` by "verb resource[/subresource]"."""
        calls: Counter[str] = Counter()
        if not self.path.exists():
            return calls
        with self.path.open("rb") as log:
            log.seek(offset)
            for line in log:
                if not line.endswith(b"\n"):
                    break
                event = json.loads(line)
                if (event.get("user") or {}).get("username") != self.username:
                    continue
                verb = event.get("verb", "")
                counted_stage = "ResponseStarted" if verb == "watch" else "ResponseComplete"
                if event.get("stage") != counted_stage:
                    continue
                calls[f"{verb} {_resource(event)}"] += 1
        return calls


def _resource(event: dict) -> str:
    reference = event.get("objectRef") or {}
    resource = reference.get("resource") or event.get("requestURI", "?").split("?")[0]
    if reference.get("subresource"):
        resource += "/" + reference["subresource"]
    return resource


def per_request(calls: Counter[str], requests: int) -> dict[str, object]:
    """Return the total calls per request and the breakdown by verb and resource, largest first."""
    total = sum(calls.values())
    return {
        "total": round(total / requests, 2),
        "by_call": {key: round(count / requests, 2) for key, count in calls.most_common()},
    }
