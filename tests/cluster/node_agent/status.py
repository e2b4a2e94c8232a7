"""Pod status as a kubelet reports it: phase, conditions and container statuses.

The Pod worker keeps one ``ContainerRecord`` per container and calls ``build_status`` after
every change. The phase rules follow the kubelet's ``getPhase``: a container waiting to
restart after it stopped counts as stopped, not as waiting, and with restartPolicy Always
or OnFailure a stopped Pod is still Running because it will restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

Obj = dict[str, Any]

POD_IP = "127.0.0.1"
MAX_TERMINATION_MESSAGE_BYTES = 4096


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Termination:
    """How one run of a container ended."""

    exit_code: int
    reason: str
    started_at: str | None
    finished_at: str
    message: str = ""
    signal: int | None = None

    def to_dict(self, container_id: str) -> Obj:
        state: Obj = {
            "exitCode": self.exit_code,
            "reason": self.reason,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "containerID": container_id,
        }
        if self.message:
            state["message"] = self.message
        if self.signal is not None:
            state["signal"] = self.signal
        return state


@dataclass
class ContainerRecord:
    """What the agent knows about one container; exactly one of the three states applies."""

    name: str
    image: str
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    started_at: str | None = None
    terminated: Termination | None = None
    last_terminated: Termination | None = None
    restart_count: int = 0
    container_id: str = ""

    def set_waiting(self, reason: str, message: str = "") -> None:
        self.waiting_reason, self.waiting_message = reason, message
        self.started_at = None
        if self.terminated is not None:
            self.last_terminated = self.terminated
            self.terminated = None

    def set_running(self, container_id: str, started_at: str) -> None:
        self.container_id = container_id
        self.started_at = started_at
        self.terminated = None

    def set_terminated(self, termination: Termination) -> None:
        self.terminated = termination

    @property
    def running(self) -> bool:
        return self.terminated is None and self.started_at is not None

    @property
    def succeeded(self) -> bool:
        return self.terminated is not None and self.terminated.exit_code == 0

    def to_dict(self) -> Obj:
        if self.terminated is not None:
            state: Obj = {"terminated": self.terminated.to_dict(self.container_id)}
        elif self.started_at is not None:
            state = {"running": {"startedAt": self.started_at}}
        else:
            waiting: Obj = {"reason": self.waiting_reason}
            if self.waiting_message:
                waiting["message"] = self.waiting_message
            state = {"waiting": waiting}

        status: Obj = {
            "name": self.name,
            "image": self.image,
            "imageID": f"node-agent://{self.image}",
            "ready": self.running,
            "started": self.running,
            "restartCount": self.restart_count,
            "state": state,
            "lastState": {"terminated": self.last_terminated.to_dict(self.container_id)} if self.last_terminated else {},
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status


def pod_phase(restart_policy: str, init: list[ContainerRecord], containers: list[ContainerRecord]) -> str:
    """Compute the Pod phase from its container records (kubelet ``getPhase`` rules)."""
    for record in init:
        if record.succeeded:
            continue
        failed = record.terminated is not None or record.last_terminated is not None
        if failed and restart_policy == "Never":
            return "Failed"
        return "Pending"

    waiting = running = stopped = succeeded = 0
    for record in containers:
        if record.running:
            running += 1
        elif record.terminated is not None:
            stopped += 1
            succeeded += record.terminated.exit_code == 0
        elif record.last_terminated is not None:
            stopped += 1
        else:
            waiting += 1

    if waiting > 0:
        return "Pending"
    if running > 0:
        return "Running"
    if stopped > 0:
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _condition(kind: str, ok: bool, reason: str = "", message: str = "") -> Obj:
    condition: Obj = {"type": kind, "status": "True" if ok else "False"}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def build_conditions(
    phase: str,
    sandbox_ready: bool,
    init: list[ContainerRecord],
    containers: list[ContainerRecord],
    previous: list[Obj],
    now: str,
) -> list[Obj]:
    """Build the kubelet-owned Pod conditions; PodScheduled and others are kept as they were."""
    terminal = phase in ("Succeeded", "Failed")
    incomplete = [r.name for r in init if not r.succeeded]
    unready = [r.name for r in containers if not r.running]

    if terminal and not incomplete:
        initialized = _condition("Initialized", True, "PodCompleted")
    elif incomplete:
        initialized = _condition(
            "Initialized", False, "ContainersNotInitialized", f"containers with incomplete status: [{' '.join(incomplete)}]"
        )
    else:
        initialized = _condition("Initialized", True)

    if terminal:
        ready = _condition("ContainersReady", False, "PodCompleted")
    elif unready:
        ready = _condition("ContainersReady", False, "ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]")
    else:
        ready = _condition("ContainersReady", True)
    pod_ready = dict(ready, type="Ready")

    owned = [_condition("PodReadyToStartContainers", sandbox_ready and not terminal), initialized, ready, pod_ready]
    owned_types = {c["type"] for c in owned}
    previous_by_type = {c["type"]: c for c in previous}

    conditions = [c for c in previous if c["type"] not in owned_types]
    for condition in owned:
        before = previous_by_type.get(condition["type"])
        changed = before is None or before.get("status") != condition["status"]
        condition["lastTransitionTime"] = now if changed else before.get("lastTransitionTime", now)
        condition["lastProbeTime"] = None
        conditions.append(condition)
    return conditions


def build_status(
    restart_policy: str,
    sandbox_ready: bool,
    init: list[ContainerRecord],
    containers: list[ContainerRecord],
    start_time: str,
    previous: Obj,
    now: str | None = None,
) -> Obj:
    """Build the full ``status`` the agent writes through the pods/status subresource."""
    now = now or now_rfc3339()
    phase = pod_phase(restart_policy, init, containers)
    status: Obj = {
        "phase": phase,
        "conditions": build_conditions(phase, sandbox_ready, init, containers, previous.get("conditions") or [], now),
        "hostIP": POD_IP,
        "hostIPs": [{"ip": POD_IP}],
        "podIP": POD_IP,
        "podIPs": [{"ip": POD_IP}],
        "startTime": start_time,
        "containerStatuses": [r.to_dict() for r in containers],
    }
    if init:
        status["initContainerStatuses"] = [r.to_dict() for r in init]
    return status


def truncate_message(text: str, limit: int = MAX_TERMINATION_MESSAGE_BYTES) -> str:
    """Cut a termination message to ``limit`` bytes as the kubelet does (keeps the start)."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")
