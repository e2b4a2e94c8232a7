"""Shared pytest fixtures: the local cluster, a fresh namespace per test, acting as test users.

The ``cluster`` fixture brings the local cluster up once per test session, or reuses one
that is already running (``make cluster-up``); it stops the cluster at the end only if it
started it. Tests that need it are marked ``cluster``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.cluster.localcluster import REPO_ROOT, TEST_USERS, LocalCluster

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@dataclass
class ClusterHandle:
    """What tests get from the ``cluster`` fixture."""

    local: LocalCluster
    started_here: bool
    _clients: dict[str | None, object] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.local.kubeconfig

    @property
    def users(self) -> dict[str, tuple[str, ...]]:
        return dict(TEST_USERS)

    def user_kubeconfig(self, user: str) -> Path:
        return self.local.user_kubeconfig(user)

    def kubectl(self, *args: str, user: str | None = None, check: bool = True,
                input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run kubectl as the admin, or as a named test user."""
        return self.local.kubectl(*args, user=user, check=check, input=input, timeout=timeout)

    def kubectl_json(self, *args: str, user: str | None = None) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json", user=user).stdout)

    def api_client(self, user: str | None = None):
        """Return a ``kubernetes`` ApiClient for the admin, or acting as a named test user."""
        if user not in self._clients:
            from kubernetes import config

            path = self.user_kubeconfig(user) if user else self.kubeconfig
            self._clients[user] = config.new_client_from_config(config_file=str(path))
        return self._clients[user]

    def restart_apiserver(self) -> None:
        self.local.restart_apiserver()

    def restart_apiserver_with_compaction(self) -> int:
        return self.local.restart_apiserver_with_compaction()

    @property
    def binary_dir(self) -> Path:
        return self.local.bin_dir


def wait_for(predicate, timeout: float = 60, interval: float = 0.25, message: str = "condition"):
    """Poll until ``predicate()`` returns a truthy value and return it; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {message}; last value: {last!r}")


@pytest.fixture(scope="session")
def cluster() -> Iterator[ClusterHandle]:
    local = LocalCluster()
    already_running = local.status().get("readyz") == "ok"
    if not already_running:
        local.up()
    else:
        local.wait_nodes_ready()
    handle = ClusterHandle(local=local, started_here=not already_running)
    yield handle
    if handle.started_here and os.environ.get("AIML_KEEP_CLUSTER") != "1":
        local.down()


@pytest.fixture
def namespace(cluster: ClusterHandle, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards without waiting for it to be gone."""
    base = request.node.name.lower().replace("_", "-")
    base = "".join(ch for ch in base if ch.isalnum() or ch == "-")[:40].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    wait_for(
        lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
        timeout=30,
        message=f"ServiceAccount default in namespace {name}",
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
