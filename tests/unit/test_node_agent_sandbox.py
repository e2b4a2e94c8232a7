"""Container processes of the node agent: bind mounts, termination message, signals.

These start real processes in a private mount namespace, so they need root and the
``unshare`` tool; elsewhere they are skipped.
"""

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from tests.cluster.node_agent.logs import LogWriter, read_records, render
from tests.cluster.node_agent.process import ContainerProcess
from tests.cluster.node_agent.sandbox import START_ERROR_EXIT_CODE

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")


def make_plan(tmp_path: Path, argv: list[str], mounts=None, uid=None) -> dict:
    message = tmp_path / "termination-log"
    message.touch()
    return {
        "argv": argv,
        "env": {"PATH": "/usr/bin:/bin"},
        "workingDir": "/",
        "mounts": mounts or [],
        "terminationMessage": {"path": "/dev/termination-log", "hostFile": str(message)},
        "devScratch": str(tmp_path / "dev"),
        "startErrorFile": str(tmp_path / "start-error"),
        "uid": uid,
        "gid": uid,
        "supplementalGroups": [],
        "toolchains": [sys.base_prefix],
    }


def run(tmp_path: Path, plan: dict) -> tuple[int, bytes]:
    process = ContainerProcess(plan, tmp_path / "plan.json", LogWriter(tmp_path / "c.log"))
    code = process.wait()
    return code, render(read_records(tmp_path / "c.log"))


def test_mounts_and_termination_message(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "config.json").write_text("{}")
    target = f"/tmp/node-agent-test-{os.getpid()}/config"
    script = f"cat {target}/config.json; echo; touch {target}/x 2>/dev/null || echo read-only; echo report > /dev/termination-log; exit 3"
    plan = make_plan(tmp_path, ["sh", "-c", script], [{"source": str(volume), "target": target, "readOnly": True}])

    code, output = run(tmp_path, plan)

    assert code == 3
    assert output == b"{}\nread-only\n"
    assert (tmp_path / "termination-log").read_text() == "report\n"
    assert not Path("/dev/termination-log").exists()
    shutil.rmtree(f"/tmp/node-agent-test-{os.getpid()}", ignore_errors=True)


def test_runs_as_user(tmp_path: Path) -> None:
    code, output = run(tmp_path, make_plan(tmp_path, ["id", "-u"], uid=1000))

    assert code == 0
    assert output == b"1000\n"


def test_unknown_command_is_start_error(tmp_path: Path) -> None:
    code, _ = run(tmp_path, make_plan(tmp_path, ["no-such-command-here"]))

    assert code == START_ERROR_EXIT_CODE
    assert "executable file not found" in (tmp_path / "start-error").read_text()


def test_stop_sends_term_then_kill(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, ["sh", "-c", "trap '' TERM; echo started; while true; do sleep 0.1; done"])
    process = ContainerProcess(plan, tmp_path / "plan.json", LogWriter(tmp_path / "c.log"))
    deadline = time.monotonic() + 5
    while b"started" not in render(read_records(tmp_path / "c.log")) and time.monotonic() < deadline:
        time.sleep(0.05)

    started = time.monotonic()
    process.stop(0.5)
    code = process.wait()

    assert code == 137
    assert time.monotonic() - started >= 0.5


def test_user_can_run_agent_python(tmp_path: Path) -> None:
    code, output = run(tmp_path, make_plan(tmp_path, [sys.executable, "-c", "import yaml, os; print(os.getuid())"], uid=1000))

    assert code == 0
    assert output == b"1000\n"


def test_listed_directory_under_root_visible_to_non_root(tmp_path: Path) -> None:
    if not os.path.isdir("/root") or os.stat("/root").st_mode & 0o005 == 0o005:
        pytest.skip("needs a private /root")
    private = Path(f"/root/.cache/node-agent-test-{os.getpid()}")
    private.mkdir(parents=True)
    try:
        (private / "hello.txt").write_text("from the repository\n")
        private.chmod(0o755)
        (private / "hello.txt").chmod(0o644)
        plan = make_plan(tmp_path, ["cat", str(private / "hello.txt")], uid=1000)
        plan["toolchains"] = [sys.base_prefix, str(private)]

        code, output = run(tmp_path, plan)

        assert code == 0
        assert output == b"from the repository\n"
    finally:
        shutil.rmtree(private, ignore_errors=True)


def test_volume_over_tmp_keeps_later_sources(tmp_path: Path) -> None:
    empty = tmp_path / "empty-dir"
    empty.mkdir()
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "data.txt").write_text("volume content\n")
    repository = tmp_path / "repository"
    repository.mkdir()
    (repository / "hello.txt").write_text("repository content\n")
    target = f"/srv/node-agent-test-{os.getpid()}"
    # The emptyDir at /tmp covers the host's /tmp, where the second source and the repository live.
    mounts = [
        {"source": str(empty), "target": "/tmp", "readOnly": False},
        {"source": str(volume), "target": target, "readOnly": True},
    ]
    plan = make_plan(tmp_path, ["sh", "-c", f"cat {target}/data.txt {repository}/hello.txt"], mounts)
    plan["toolchains"] = [sys.base_prefix, str(repository)]

    code, output = run(tmp_path, plan)

    assert code == 0, output
    assert output == b"volume content\nrepository content\n"
    shutil.rmtree(target, ignore_errors=True)
