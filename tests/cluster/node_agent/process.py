"""One run of one container: a process group started through the sandbox, and its output.

The process starts in its own session, so its PID is also its process group id; stopping
the container signals the whole group, and whatever is left of the group after the main
process exits is killed, as a container runtime does when it tears down a container.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.cluster.node_agent.logs import LogWriter

SANDBOX = Path(__file__).with_name("sandbox.py")
READER_JOIN_SECONDS = 2.0


class ContainerProcess:
    """A started container process whose stdout and stderr go to a ``LogWriter``."""

    def __init__(self, plan: dict, plan_path: Path, log: LogWriter) -> None:
        plan_path.write_text(json.dumps(plan))
        self._log = log
        self._popen = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--",
             sys.executable, "-I", "-S", str(SANDBOX), str(plan_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        self.pid = self._popen.pid
        self._readers = [
            threading.Thread(target=self._pump, args=(self._popen.stdout, "stdout"), daemon=True),
            threading.Thread(target=self._pump, args=(self._popen.stderr, "stderr"), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _pump(self, pipe, stream: str) -> None:
        descriptor = pipe.fileno()
        while True:
            data = os.read(descriptor, 65536)
            if not data:
                break
            self._log.write(stream, data)
        self._log.flush_stream(stream)
        pipe.close()

    def wait(self) -> int:
        """Wait for the main process, kill the rest of its group, and return its exit code.

        A process killed by signal N reports 128 + N, as container runtimes do.
        """
        returncode = self._popen.wait()
        self.signal_group(signal.SIGKILL)
        for reader in self._readers:
            reader.join(READER_JOIN_SECONDS)
        self._log.close()
        return 128 - returncode if returncode < 0 else returncode

    def poll(self) -> int | None:
        return self._popen.poll()

    def signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            pass

    def stop(self, grace_seconds: float) -> None:
        """Send SIGTERM to the group, then SIGKILL once ``grace_seconds`` have passed."""
        self.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while self._popen.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        self.signal_group(signal.SIGKILL)
