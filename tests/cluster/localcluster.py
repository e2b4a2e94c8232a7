"""Launcher of the local development cluster: a real control plane without containers.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler run as local processes
built from pinned Go modules (see ``hack/cluster/versions.env``), and the node agent in
``tests.cluster.node_agent`` plays the kubelet for two simulated nodes. Everything lives
under one state directory (default ``.local/cluster``): certificates, kubeconfigs, etcd
data, logs and process ids. ``up`` is idempotent: a healthy running cluster is left alone.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.cluster import pki as pkimod

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = REPO_ROOT / ".local" / "cluster"

# Test users with client certificates: username -> groups. They start with no permissions.
TEST_USERS: dict[str, tuple[str, ...]] = {
    "alice": ("rapp-developers",),
    "bob": ("rapp-developers",),
    "carol": ("gitops",),
    "dave": (),
}

# Controllers the tests and the Helm chart need. The node lifecycle controller is left out on
# purpose: the node agent keeps heartbeats fresh, and without real kubelets nothing would evict.
CONTROLLERS = [
    "job-controller",
    "pod-garbage-collector-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "persistentvolume-binder-controller",
    "persistentvolumeclaim-protection-controller",
    "persistentvolume-protection-controller",
    "ttl-after-finished-controller",
    "deployment-controller",
    "replicaset-controller",
    "resourcequota-controller",
    "clusterrole-aggregation-controller",
    "root-ca-certificate-publisher-controller",
    "disruption-controller",
]

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

# Identity of an operator run as a local process, so that audit logs can tell its calls apart.
OPERATOR_USER = "aiml-operator-dev"

# Audit policy of a cluster started with audit on: the operator's calls at Metadata level, nothing else.
AUDIT_POLICY = f"""apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    users: ["{OPERATOR_USER}"]
  - level: None
"""


class ClusterError(RuntimeError):
    """The cluster could not be started or is not healthy."""


@dataclass(frozen=True)
class Ports:
    """Loopback ports of the control plane; override the base with AIML_CLUSTER_PORT_BASE."""

    base: int

    @property
    def apiserver(self) -> int:
        return self.base

    @property
    def etcd_client(self) -> int:
        return self.base + 1

    @property
    def etcd_peer(self) -> int:
        return self.base + 2

    @property
    def controller_manager(self) -> int:
        return self.base + 3

    @property
    def scheduler(self) -> int:
        return self.base + 4

    @property
    def kubelet_base(self) -> int:
        return self.base + 10


class LocalCluster:
    """Start, stop and inspect the local cluster rooted at one state directory."""

    def __init__(self, state_dir: Path | None = None, port_base: int | None = None, audit: bool | None = None) -> None:
        self.state_dir = Path(state_dir or os.environ.get("AIML_CLUSTER_STATE_DIR") or DEFAULT_STATE_DIR)
        self.ports = Ports(port_base or int(os.environ.get("AIML_CLUSTER_PORT_BASE", "16443")))
        # With audit on, kube-apiserver logs the calls of OPERATOR_USER to audit_log_path; it
        # takes effect when kube-apiserver starts, not on an already running cluster.
        self.audit = os.environ.get("AIML_CLUSTER_AUDIT") == "1" if audit is None else audit
        self.pki = pkimod.Pki(self.state_dir / "pki")
        self._bin_dir: Path | None = None

    # -- paths ---------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    def user_kubeconfig(self, user: str) -> Path:
        return self.state_dir / "users" / f"{user}.kubeconfig"

    @property
    def operator_kubeconfig(self) -> Path:
        """Kubeconfig of OPERATOR_USER (group system:masters), for an operator run as a local process."""
        return self.user_kubeconfig(OPERATOR_USER)

    @property
    def audit_log_path(self) -> Path:
        return self.log_path("audit")

    def log_path(self, component: str) -> Path:
        return self.state_dir / "logs" / f"{component}.log"

    def _pid_path(self, component: str) -> Path:
        return self.state_dir / "pids" / f"{component}.pid"

    @property
    def bin_dir(self) -> Path:
        """Directory with the cluster binaries, built on first use by hack/cluster/build-binaries.sh."""
        if self._bin_dir is None:
            script = REPO_ROOT / "hack" / "cluster" / "build-binaries.sh"
            result = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE, text=True, check=False)
            if result.returncode != 0:
                raise ClusterError(f"building the cluster binaries failed (exit {result.returncode}); see the output above")
            self._bin_dir = Path(result.stdout.strip().splitlines()[-1])
        return self._bin_dir

    def binary(self, name: str) -> str:
        return str(self.bin_dir / name)

    # -- processes -----------------------------------------------------------------------

    def _running_pid(self, component: str) -> int | None:
        path = self._pid_path(component)
        try:
            pid = int(path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def _start(self, component: str, argv: list[str], env: dict[str, str] | None = None) -> int:
        pid = self._running_pid(component)
        if pid is not None:
            return pid
        log = self.log_path(component)
        log.parent.mkdir(parents=True, exist_ok=True)
        self._pid_path(component).parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            process = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=REPO_ROOT,
                env={**os.environ, **(env or {})},
            )
        self._pid_path(component).write_text(str(process.pid))
        return process.pid

    def _stop(self, component: str, timeout: float = 15.0) -> None:
        pid = self._running_pid(component)
        if pid is None:
            self._pid_path(component).unlink(missing_ok=True)
            return
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._running_pid(component) is not None:
            _reap(pid)
            time.sleep(0.1)
        if self._running_pid(component) is not None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _reap(pid)
        self._pid_path(component).unlink(missing_ok=True)

    # -- set-up --------------------------------------------------------------------------

    def _prepare_pki(self) -> None:
        pkimod.ensure_ca(self.pki)
        pkimod.ensure_serving_cert(
            self.pki,
            "apiserver",
            "kube-apiserver",
            ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
             "kubernetes.default.svc.cluster.local"],
            ["127.0.0.1", "10.0.0.1"],
        )
        pkimod.ensure_serving_cert(self.pki, "kubelet", "aiml-node-agent", ["localhost"], ["127.0.0.1"])
        identities = [
            pkimod.ClientIdentity("kubernetes-admin", ("system:masters",), "admin"),
            pkimod.ClientIdentity("kube-apiserver-kubelet-client", ("system:masters",), "apiserver-kubelet-client"),
            pkimod.ClientIdentity("system:kube-controller-manager", (), "controller-manager"),
            pkimod.ClientIdentity("system:kube-scheduler", (), "scheduler"),
            pkimod.ClientIdentity("aiml-node-agent", ("system:masters",), "node-agent"),
            pkimod.ClientIdentity("front-proxy-client", (), "front-proxy-client"),
            pkimod.ClientIdentity(OPERATOR_USER, ("system:masters",)),
        ]
        identities += [pkimod.ClientIdentity(name, groups) for name, groups in TEST_USERS.items()]
        for identity in identities:
            pkimod.ensure_client_cert(self.pki, identity)

        kubeconfigs = {
            self.kubeconfig: ("admin", "kubernetes-admin"),
            self.state_dir / "controller-manager.kubeconfig": ("controller-manager", "system:kube-controller-manager"),
            self.state_dir / "scheduler.kubeconfig": ("scheduler", "system:kube-scheduler"),
            self.state_dir / "node-agent.kubeconfig": ("node-agent", "aiml-node-agent"),
        }
        kubeconfigs.update({self.user_kubeconfig(name): (name, name) for name in TEST_USERS})
        kubeconfigs[self.operator_kubeconfig] = (OPERATOR_USER, OPERATOR_USER)
        for path, (stem, user) in kubeconfigs.items():
            if not path.exists():
                pkimod.write_kubeconfig(path, self.server, self.pki, stem, user, f"aiml-local-{stem}")

    def _start_etcd(self) -> None:
        data = self.state_dir / "etcd"
        self._start(
            "etcd",
            [
                self.binary("etcd"),
                "--name=aiml-local",
                f"--data-dir={data}",
                f"--listen-client-urls=http://127.0.0.1:{self.ports.etcd_client}",
                f"--advertise-client-urls=http://127.0.0.1:{self.ports.etcd_client}",
                f"--listen-peer-urls=http://127.0.0.1:{self.ports.etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{self.ports.etcd_peer}",
                f"--initial-cluster=aiml-local=http://127.0.0.1:{self.ports.etcd_peer}",
                "--listen-metrics-urls=",
                "--quota-backend-bytes=4294967296",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        _wait_until(
            lambda: _http_ok(f"http://127.0.0.1:{self.ports.etcd_client}/health"),
            60,
            "etcd did not become healthy",
            self.log_path("etcd"),
        )

    def _audit_argv(self) -> list[str]:
        if not self.audit:
            return []
        policy = self.state_dir / "audit-policy.yaml"
        policy.write_text(AUDIT_POLICY)
        self.audit_log_path.parent.mkdir(parents=True, exist_ok=True)
        return [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log_path}",
            "--audit-log-format=json",
            "--audit-log-maxsize=1024",
        ]

    def apiserver_argv(self) -> list[str]:
        p = self.pki
        argv = [
            self.binary("kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.ports.etcd_client}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.ports.apiserver}",
            f"--tls-cert-file={p.cert('apiserver')}",
            f"--tls-private-key-file={p.key('apiserver')}",
            f"--client-ca-file={p.ca_cert}",
            f"--service-account-key-file={p.service_account_public_key}",
            f"--service-account-signing-key-file={p.service_account_key}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--api-audiences={SERVICE_ACCOUNT_ISSUER}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--service-cluster-ip-range=10.0.0.0/24",
            f"--kubelet-client-certificate={p.cert('apiserver-kubelet-client')}",
            f"--kubelet-client-key={p.key('apiserver-kubelet-client')}",
            "--kubelet-preferred-address-types=InternalIP",
            # Request-header authentication, so that aggregated API servers and the components'
            # delegated authentication find a complete extension-apiserver-authentication ConfigMap.
            f"--requestheader-client-ca-file={p.ca_cert}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={p.cert('front-proxy-client')}",
            f"--proxy-client-key-file={p.key('front-proxy-client')}",
            f"--kubelet-certificate-authority={p.ca_cert}",
            # Endpoints may not hold loopback addresses, and 127.0.0.1 is all this cluster has.
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
        ]
        return argv + self._audit_argv()

    def _start_apiserver(self) -> None:
        self._start("kube-apiserver", self.apiserver_argv())
        self.wait_ready()

    def _start_controller_manager(self) -> None:
        kubeconfig = self.state_dir / "controller-manager.kubeconfig"
        self._start(
            "kube-controller-manager",
            [
                self.binary("kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports.controller_manager}",
                f"--controllers={','.join(CONTROLLERS)}",
                f"--service-account-private-key-file={self.pki.service_account_key}",
                f"--root-ca-file={self.pki.ca_cert}",
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                "--concurrent-job-syncs=10",
                "--v=1",
            ],
        )

    def _start_scheduler(self) -> None:
        kubeconfig = self.state_dir / "scheduler.kubeconfig"
        self._start(
            "kube-scheduler",
            [
                self.binary("kube-scheduler"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports.scheduler}",
                "--leader-elect=false",
                "--v=1",
            ],
        )

    def _start_node_agent(self) -> None:
        self._start(
            "node-agent",
            [
                sys.executable,
                "-m",
                "tests.cluster.node_agent",
                f"--kubeconfig={self.state_dir / 'node-agent.kubeconfig'}",
                f"--state-dir={self.state_dir / 'nodes'}",
                f"--image-table={REPO_ROOT / 'tests' / 'cluster' / 'images.yaml'}",
                f"--serving-cert={self.pki.cert('kubelet')}",
                f"--serving-key={self.pki.key('kubelet')}",
                f"--log-port-base={self.ports.kubelet_base}",
            ],
            env={"PYTHONUNBUFFERED": "1"},
        )

    # -- public operations ---------------------------------------------------------------

    def up(self) -> None:
        """Start every component that is not running and wait until the cluster is ready."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_pki()
        self._start_etcd()
        self._start_apiserver()
        self._start_controller_manager()
        self._start_scheduler()
        self._start_node_agent()
        self.wait_nodes_ready()
        self.wait_default_service_account()

    def down(self, purge: bool = False) -> None:
        """Stop every component; with purge, delete the state directory too."""
        for component in ("node-agent", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            self._stop(component)
        if purge:
            subprocess.run(["rm", "-rf", str(self.state_dir)], check=True)

    def restart_apiserver(self) -> None:
        """Stop kube-apiserver and start it again; for tests of reconnecting clients."""
        self._stop("kube-apiserver")
        self._start_apiserver()

    def restart_apiserver_with_compaction(self, writes: int = 20) -> int:
        """Stop kube-apiserver, compact etcd's history past some new writes, and start it again.

        A client that reconnects its watch with a resourceVersion from before the restart then
        gets 410 Gone, as happens after a long disconnection in a real cluster. The
        writes go to keys outside the API server's ``/registry`` prefix and are deleted
        before the compaction. Returns the compacted revision.
        """
        self._stop("kube-apiserver")
        prefix = "/aiml-test/compaction/"
        for index in range(writes):
            self._etcd("kv/put", {"key": _base64(f"{prefix}{index}"), "value": _base64("filler")})
        deleted = self._etcd("kv/deleterange", {"key": _base64(prefix), "range_end": _base64(prefix[:-1] + chr(ord(prefix[-1]) + 1))})
        revision = int(deleted["header"]["revision"])
        self._etcd("kv/compaction", {"revision": str(revision), "physical": True})
        self._start_apiserver()
        return revision

    def _etcd(self, method: str, body: dict[str, object]) -> dict[str, object]:
        """Call etcd's HTTP/JSON gateway on its client port (``POST /v3/<method>``)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.ports.etcd_client}/v3/{method}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def component_pids(self) -> dict[str, int | None]:
        names = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "node-agent")
        return {name: self._running_pid(name) for name in names}

    def readyz(self) -> str:
        """Return the API server's /readyz body as returned to the admin, or raise ClusterError."""
        if not self.pki.ca_cert.exists() or not self.pki.cert("admin").exists():
            raise ClusterError(f"no cluster certificates under {self.pki.directory}; run make cluster-up")
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(self.pki.cert("admin")), str(self.pki.key("admin")))
        try:
            with urllib.request.urlopen(f"{self.server}/readyz", context=context, timeout=5) as response:
                return response.read().decode()
        except (urllib.error.URLError, OSError) as error:
            raise ClusterError(f"GET {self.server}/readyz failed: {error}") from error

    def wait_ready(self, timeout: float = 90) -> None:
        def ready() -> bool:
            try:
                return self.readyz().strip() == "ok"
            except ClusterError:
                return False

        _wait_until(ready, timeout, "kube-apiserver did not report /readyz ok", self.log_path("kube-apiserver"))

    def kubectl(self, *args: str, user: str | None = None, check: bool = True,
                input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        kubeconfig = self.user_kubeconfig(user) if user else self.kubeconfig
        return subprocess.run(
            [self.binary("kubectl"), f"--kubeconfig={kubeconfig}", *args],
            input=input, capture_output=True, text=True, check=check, timeout=timeout,
        )

    def wait_nodes_ready(self, timeout: float = 60) -> None:
        def nodes_ready() -> bool:
            result = self.kubectl("get", "nodes", "-o", "json", check=False)
            if result.returncode != 0:
                return False
            ready = {
                node["metadata"]["name"]
                for node in json.loads(result.stdout)["items"]
                if any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))
            }
            return {"gpu-node-1", "cpu-node-1"} <= ready

        _wait_until(nodes_ready, timeout, "nodes gpu-node-1 and cpu-node-1 are not Ready", self.log_path("node-agent"))

    def wait_default_service_account(self, timeout: float = 60) -> None:
        _wait_until(
            lambda: self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0,
            timeout,
            "the default ServiceAccount was not created",
            self.log_path("kube-controller-manager"),
        )

    def status(self) -> dict[str, object]:
        """Summarise component processes, /readyz and node readiness."""
        summary: dict[str, object] = {"components": self.component_pids(), "kubeconfig": str(self.kubeconfig)}
        try:
            summary["readyz"] = self.readyz().strip()
        except ClusterError as error:
            summary["readyz"] = str(error)
            return summary
        nodes = self.kubectl("get", "nodes", "-o", "json", check=False)
        if nodes.returncode == 0:
            summary["nodes"] = {
                node["metadata"]["name"]: next(
                    (c["status"] for c in node["status"].get("conditions", []) if c["type"] == "Ready"), "Unknown"
                )
                for node in json.loads(nodes.stdout)["items"]
            }
        return summary


def _base64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait_until(predicate, timeout: float, message: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    tail = ""
    if log.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    raise ClusterError(f"{message} within {timeout:.0f}s; last lines of {log}:\n{tail}")
