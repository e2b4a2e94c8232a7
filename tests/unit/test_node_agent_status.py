"""Pod status building of the node agent: phase rules, conditions, container states."""

import pytest

from tests.cluster.node_agent.status import (
    ContainerRecord,
    Termination,
    build_status,
    pod_phase,
    truncate_message,
)

NOW = "2026-01-01T00:00:00Z"


def running(name: str = "main") -> ContainerRecord:
    record = ContainerRecord(name, "busybox")
    record.set_running("node-agent://1", NOW)
    return record


def exited(code: int, name: str = "main") -> ContainerRecord:
    record = running(name)
    record.set_terminated(Termination(code, "Completed" if code == 0 else "Error", NOW, NOW, "msg"))
    return record


def backing_off(name: str = "main") -> ContainerRecord:
    record = exited(1, name)
    record.restart_count += 1
    record.set_waiting("CrashLoopBackOff", "back-off")
    return record


@pytest.mark.parametrize(
    ("policy", "init", "containers", "expected"),
    [
        ("Never", [], [ContainerRecord("main", "i")], "Pending"),
        ("Never", [], [running()], "Running"),
        ("Never", [], [exited(0)], "Succeeded"),
        ("Never", [], [exited(2)], "Failed"),
        ("Never", [], [exited(0, "a"), running("b")], "Running"),
        ("Never", [], [exited(0, "a"), exited(1, "b")], "Failed"),
        ("OnFailure", [], [exited(0)], "Succeeded"),
        ("OnFailure", [], [backing_off()], "Running"),
        ("Always", [], [exited(0)], "Running"),
        ("Never", [running("init")], [ContainerRecord("main", "i")], "Pending"),
        ("Never", [exited(1, "init")], [ContainerRecord("main", "i")], "Failed"),
        ("OnFailure", [backing_off("init")], [ContainerRecord("main", "i")], "Pending"),
        ("Never", [exited(0, "init")], [running()], "Running"),
    ],
)
def test_pod_phase(policy, init, containers, expected) -> None:
    assert pod_phase(policy, init, containers) == expected


def conditions_by_type(status):
    return {c["type"]: c for c in status["conditions"]}


def test_status_running_pod() -> None:
    previous = {"conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "earlier"}], "qosClass": "BestEffort"}

    status = build_status("Never", True, [], [running()], NOW, previous, now=NOW)
    conditions = conditions_by_type(status)

    assert status["phase"] == "Running"
    assert status["podIP"] == "127.0.0.1"
    assert status["hostIP"] == "127.0.0.1"
    assert status["startTime"] == NOW
    assert conditions["PodScheduled"]["lastTransitionTime"] == "earlier"
    assert conditions["Ready"]["status"] == "True"
    assert conditions["ContainersReady"]["status"] == "True"
    assert conditions["Initialized"]["status"] == "True"
    assert status["containerStatuses"][0]["state"] == {"running": {"startedAt": NOW}}
    assert status["containerStatuses"][0]["ready"] is True
    assert "initContainerStatuses" not in status


def test_status_failed_pod_reports_termination() -> None:
    status = build_status("Never", True, [], [exited(78)], NOW, {}, now=NOW)
    terminated = status["containerStatuses"][0]["state"]["terminated"]
    conditions = conditions_by_type(status)

    assert status["phase"] == "Failed"
    assert terminated["exitCode"] == 78
    assert terminated["reason"] == "Error"
    assert terminated["message"] == "msg"
    assert terminated["finishedAt"] == NOW
    assert conditions["Ready"]["reason"] == "PodCompleted"
    assert conditions["Ready"]["status"] == "False"


def test_status_not_ready_lists_containers() -> None:
    status = build_status("Always", True, [], [running("a"), ContainerRecord("b", "i")], NOW, {}, now=NOW)
    ready = conditions_by_type(status)["ContainersReady"]

    assert ready["status"] == "False"
    assert ready["message"] == "containers with unready status: [b]"


def test_status_restart_keeps_last_state() -> None:
    status = build_status("OnFailure", True, [], [backing_off()], NOW, {}, now=NOW)
    container = status["containerStatuses"][0]

    assert container["restartCount"] == 1
    assert container["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert container["lastState"]["terminated"]["exitCode"] == 1


def test_condition_transition_time_kept_when_unchanged() -> None:
    first = build_status("Never", True, [], [running()], NOW, {}, now=NOW)

    second = build_status("Never", True, [], [running()], NOW, first, now="2026-01-01T00:01:00Z")
    third = build_status("Never", True, [], [exited(0)], NOW, second, now="2026-01-01T00:02:00Z")

    assert conditions_by_type(second)["Ready"]["lastTransitionTime"] == NOW
    assert conditions_by_type(third)["Ready"]["lastTransitionTime"] == "2026-01-01T00:02:00Z"


def test_init_containers_block_initialized() -> None:
    status = build_status("Never", True, [running("init")], [ContainerRecord("main", "i", "PodInitializing")], NOW, {}, now=NOW)
    initialized = conditions_by_type(status)["Initialized"]

    assert initialized["status"] == "False"
    assert initialized["message"] == "containers with incomplete status: [init]"
    assert status["initContainerStatuses"][0]["state"]["running"]["startedAt"] == NOW
    assert status["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"


def test_truncate_message_keeps_utf8_valid() -> None:
    assert truncate_message("é" * 3000) == "é" * 2048
    assert truncate_message("short") == "short"
