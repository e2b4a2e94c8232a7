"""Pod worker: runs one Pod's containers and reports its status, like the kubelet's pod worker.

One worker thread per Pod UID. It prepares the volumes, runs the init containers one after
the other, then every container in its own thread with the Pod's restart policy, and writes
the status through the pods/status subresource after each change. When the Pod is deleted
gracefully it stops the processes (SIGTERM, the grace period, SIGKILL), writes the final
status and deletes the Pod with grace period 0, which is the kubelet's last step.
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes.client.rest import ApiException

from tests.cluster.node_agent.env import ContainerConfigError, expand_references, resolve_env
from tests.cluster.node_agent.image_table import ImageTable, UnknownImageError, resolve_argv
from tests.cluster.node_agent.kube import Kube
from tests.cluster.node_agent.logs import LogWriter, fallback_message
from tests.cluster.node_agent.process import ContainerProcess
from tests.cluster.node_agent.sandbox import START_ERROR_EXIT_CODE
from tests.cluster.node_agent.status import (
    ContainerRecord,
    Termination,
    build_status,
    now_rfc3339,
    truncate_message,
)
from tests.cluster.node_agent.volumes import (
    VolumeFiles,
    check_host_path,
    content_volume_files,
    plan_mounts,
    token_lifetimes,
    volume_kind,
    write_volume_files,
)

Obj = dict[str, Any]
REPOSITORY_ROOT = Path(__file__).resolve().parents[3]

log = logging.getLogger("node_agent.pod")

RETRY_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 300.0
CONTENT_VOLUMES = ("configMap", "secret", "downwardAPI", "projected")
DEFAULT_GRACE_SECONDS = 30
LOST_CONTAINER_REASON = "ContainerStatusUnknown"


@dataclass(frozen=True)
class NodeContext:
    """What a Pod worker needs to know about its node and the agent."""

    name: str
    allocatable: dict[str, str]
    state_dir: Path
    images: ImageTable
    kube: Kube
    backoff_seconds: float


class PodWorker:
    """Runs the containers of one Pod and keeps its status current."""

    def __init__(self, pod: Obj, node: NodeContext) -> None:
        self.pod = pod
        self.node = node
        metadata = pod["metadata"]
        self.namespace, self.name, self.uid = metadata["namespace"], metadata["name"], metadata["uid"]
        self.key = f"{self.namespace}/{self.name}"
        self.pod_dir = node.state_dir / "pods" / self.uid
        spec = pod["spec"]
        self.restart_policy = spec.get("restartPolicy", "Always")

        self.init_records = [ContainerRecord(c["name"], c["image"], "PodInitializing") for c in spec.get("initContainers") or []]
        first_reason = "PodInitializing" if self.init_records else "ContainerCreating"
        self.records = [ContainerRecord(c["name"], c["image"], first_reason) for c in spec["containers"]]
        self._restore_records(pod.get("status") or {})

        self.start_time = (pod.get("status") or {}).get("startTime") or now_rfc3339()
        self.sandbox_ready = False
        self.volume_paths: dict[str, str] = {}
        self.processes: dict[str, ContainerProcess] = {}
        self.live_logs: set[str] = set()
        self.deleting = threading.Event()
        self.pod_removed = threading.Event()
        self.grace_seconds = float(DEFAULT_GRACE_SECONDS)
        self.finished = threading.Event()
        self._status_lock = threading.Lock()
        self._last_status: Obj | None = None
        self._token_refresh_at = float("inf")
        self.thread = threading.Thread(target=self._run, name=f"pod-{self.key}", daemon=True)

    # -- control from the agent ---------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def update(self, pod: Obj) -> None:
        """Take a newer version of the Pod from the watch; start deletion when it is marked."""
        self.pod = pod
        metadata = pod["metadata"]
        if metadata.get("deletionTimestamp") and not self.deleting.is_set():
            grace = metadata.get("deletionGracePeriodSeconds")
            self.grace_seconds = float(DEFAULT_GRACE_SECONDS if grace is None else grace)
            log.info("pod marked for deletion, stopping containers",
                     extra={"pod": self.key, "event": "Killing", "graceSeconds": self.grace_seconds})
            self.deleting.set()
            threading.Thread(target=self._stop_processes, args=(self.grace_seconds,), daemon=True).start()

    def removed(self) -> None:
        """The Pod object is gone from the API: kill its processes at once, write nothing."""
        self.pod_removed.set()
        self.deleting.set()
        self._stop_processes(0)

    def shutdown(self, grace_seconds: float) -> None:
        """The agent stops: end the processes but leave the Pod object alone."""
        self.pod_removed.set()
        self.deleting.set()
        self._stop_processes(grace_seconds)

    def log_file(self, container: str, previous: bool) -> tuple[Path | None, bool]:
        """Return the log file of a container's current (or previous) run and whether it is live."""
        record = next((r for r in self.init_records + self.records if r.name == container), None)
        if record is None:
            return None, False
        run = record.restart_count - 1 if previous else record.restart_count
        if run < 0:
            return None, False
        path = self._container_dir(container, run) / "container.log"
        if not previous and not path.exists() and run > 0 and not record.running:
            run -= 1
            path = self._container_dir(container, run) / "container.log"
        return path, f"{container}/{run}" in self.live_logs

    # -- main flow ----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._sync_status()
            if self._prepare_volumes():
                self.sandbox_ready = True
                self._sync_status()
                if self._run_init_containers():
                    self._run_containers()
            self._finish()
        except Exception:
            log.exception("pod worker failed", extra={"pod": self.key})
        finally:
            self.finished.set()

    def _prepare_volumes(self) -> bool:
        while not self.deleting.is_set():
            try:
                self.volume_paths = self._setup_volumes()
                return True
            except (ContainerConfigError, ApiException) as error:
                message = f"MountVolume.SetUp failed: {_error_text(error)}"
                log.warning("volume setup failed, retrying", extra={"pod": self.key, "event": "FailedMount", "error": message})
                for record in self.init_records or self.records:
                    record.set_waiting("ContainerCreating", message)
                self._sync_status()
                self.deleting.wait(RETRY_SECONDS)
        return False

    def _run_init_containers(self) -> bool:
        for container, record in zip(self.pod["spec"].get("initContainers") or [], self.init_records):
            self._run_container(container, record, is_init=True)
            if self.deleting.is_set() or not record.succeeded:
                return False
        for record in self.records:
            if record.terminated is None and not record.running and record.last_terminated is None:
                record.set_waiting("ContainerCreating")
        return True

    def _run_containers(self) -> None:
        threads = [
            threading.Thread(target=self._run_container, args=(container, record, False), daemon=True,
                             name=f"container-{self.key}/{container['name']}")
            for container, record in zip(self.pod["spec"]["containers"], self.records)
        ]
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            for thread in threads:
                thread.join(1.0)
            self._refresh_tokens_if_due()

    def _run_container(self, container: Obj, record: ContainerRecord, is_init: bool) -> None:
        """Run one container until its restart policy stops restarting it, or the Pod is deleted."""
        failures = 0
        while not self.deleting.is_set():
            if record.terminated is not None and not self._should_restart(record.terminated.exit_code, is_init):
                return
            if record.terminated is not None:
                delay = min(self.node.backoff_seconds * 2 ** failures, MAX_BACKOFF_SECONDS)
                if record.terminated.reason == LOST_CONTAINER_REASON:
                    delay = 0.0
                else:
                    failures += 1
                record.restart_count += 1
                record.set_waiting("CrashLoopBackOff", f"back-off {delay:.0f}s restarting failed container={record.name} pod={self.name}_{self.namespace}({self.uid})")
                self._sync_status()
                if self.deleting.wait(delay):
                    return

            try:
                process = self._start_container(container, record)
            except UnknownImageError as error:
                reason = "ErrImagePull" if record.waiting_reason != "ErrImagePull" else "ImagePullBackOff"
                record.set_waiting(reason, str(error))
                log.warning("image not found in the image table", extra={"pod": self.key, "container": record.name, "event": reason, "image": error.image})
                self._sync_status()
                self.deleting.wait(min(self.node.backoff_seconds * 2 ** failures, MAX_BACKOFF_SECONDS))
                failures += 1
                continue
            except (ContainerConfigError, ApiException, OSError) as error:
                record.set_waiting("CreateContainerConfigError", _error_text(error))
                log.warning("container configuration invalid, retrying", extra={"pod": self.key, "container": record.name, "event": "CreateContainerConfigError", "error": _error_text(error)})
                self._sync_status()
                self.deleting.wait(RETRY_SECONDS)
                continue

            self._sync_status()
            exit_code = process.wait()
            self._record_exit(container, record, exit_code)
            self.processes.pop(record.name, None)
            self._sync_status()

    def _should_restart(self, exit_code: int, is_init: bool) -> bool:
        if self.restart_policy == "Never":
            return False
        if self.restart_policy == "OnFailure" or is_init:
            return exit_code != 0
        return True

    # -- one container run ----------------------------------------------------------------------

    def _container_dir(self, name: str, run: int) -> Path:
        return self.pod_dir / "containers" / name / str(run)

    # NOTE: readiness, liveness and startup probes are not run: a running container counts as ready.
    def _start_container(self, container: Obj, record: ContainerRecord) -> ContainerProcess:
        entry = self.node.images.lookup(container["image"])
        if entry is None:
            raise UnknownImageError(container["image"], self.node.images.patterns())

        env = resolve_env(self.pod, container, self._base_env(entry.env), self.node.kube, self.node.allocatable)
        argv = [expand_references(word, env) for word in resolve_argv(entry, container.get("command"), container.get("args"))]
        mounts = plan_mounts(container, self.volume_paths, env)

        run_dir = self._container_dir(record.name, record.restart_count)
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        message_file = run_dir / "termination-log"
        message_file.touch()

        security = _security_context(self.pod, container)
        if security.get("uid") is not None:
            shutil.chown(message_file, security["uid"], security.get("gid") if security.get("gid") is not None else security["uid"])
        message_path = container.get("terminationMessagePath") or "/dev/termination-log"
        plan = {
            "argv": argv,
            "env": env,
            "workingDir": container.get("workingDir") or entry.working_dir or "/",
            "mounts": [{"source": m.source, "target": m.target, "readOnly": m.read_only} for m in mounts],
            "terminationMessage": {"path": message_path, "hostFile": str(message_file)},
            "devScratch": str(run_dir / "dev"),
            "startErrorFile": str(run_dir / "start-error"),
            # The interpreter and the repository (with .venv) may sit under a private /root.
            "toolchains": [sys.base_prefix, str(REPOSITORY_ROOT)],
            **security,
        }

        log_writer = LogWriter(run_dir / "container.log")
        process = ContainerProcess(plan, run_dir / "plan.json", log_writer)
        self.processes[record.name] = process
        self.live_logs.add(f"{record.name}/{record.restart_count}")
        record.set_running(f"node-agent://{uuid.uuid4().hex}", now_rfc3339())
        log.info("container started", extra={"pod": self.key, "container": record.name, "event": "Started",
                                             "pid": process.pid, "argv": argv, "restartCount": record.restart_count})
        if self.deleting.is_set():
            process.stop(0)
        return process

    def _record_exit(self, container: Obj, record: ContainerRecord, exit_code: int) -> None:
        run_dir = self._container_dir(record.name, record.restart_count)
        self.live_logs.discard(f"{record.name}/{record.restart_count}")

        start_error = run_dir / "start-error"
        if exit_code == START_ERROR_EXIT_CODE and start_error.exists() and start_error.stat().st_size:
            reason, message = "StartError", start_error.read_text()
        else:
            reason = "Completed" if exit_code == 0 else "Error"
            message = (run_dir / "termination-log").read_bytes()[:8192].decode("utf-8", "replace")
            policy = container.get("terminationMessagePolicy", "File")
            if not message and exit_code != 0 and policy == "FallbackToLogsOnError":
                message = fallback_message(run_dir / "container.log")

        record.set_terminated(Termination(exit_code, reason, record.started_at, now_rfc3339(), truncate_message(message)))
        log.info("container exited", extra={"pod": self.key, "container": record.name, "event": "Terminated",
                                            "exitCode": exit_code, "reason": reason})

    # NOTE: only the kubernetes Service's variables are set; other Services' variables are not.
    def _base_env(self, image_env: dict[str, str]) -> dict[str, str]:
        host, port = self.node.kube.server
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}
        env.update(image_env)
        env.update({
            "HOSTNAME": self.pod["spec"].get("hostname") or self.name,
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": str(port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(port),
            "KUBERNETES_PORT": f"tcp://{host}:{port}",
            "KUBERNETES_PORT_443_TCP": f"tcp://{host}:{port}",
            "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
            "KUBERNETES_PORT_443_TCP_ADDR": host,
            "KUBERNETES_PORT_443_TCP_PORT": str(port),
        })
        return env

    # -- volumes ------------------------------------------------------------------------------

    def _setup_volumes(self) -> dict[str, str]:
        paths: dict[str, str] = {}
        lifetimes: list[int] = []
        for volume in self.pod["spec"].get("volumes") or []:
            name, kind = volume["name"], volume_kind(volume)
            if kind == "emptyDir":
                directory = self.pod_dir / "volumes" / "empty-dir" / name
                directory.mkdir(parents=True, exist_ok=True)
                directory.chmod(0o777)
                paths[name] = str(directory)
            elif kind == "hostPath":
                paths[name] = check_host_path(volume["hostPath"])
            elif kind == "persistentVolumeClaim":
                claim = volume["persistentVolumeClaim"]["claimName"]
                path = self.node.kube.claim_path(self.namespace, claim)
                if path is None:
                    raise ContainerConfigError(f'persistentvolumeclaim "{claim}" is not bound')
                Path(path).mkdir(parents=True, exist_ok=True)
                paths[name] = path
            elif kind in CONTENT_VOLUMES:
                directory = self.pod_dir / "volumes" / kind / name
                write_volume_files(directory, self._content_files(volume))
                lifetimes.extend(token_lifetimes(volume))
                paths[name] = str(directory)
            else:
                raise ContainerConfigError(f'volume "{name}" has the unsupported source {kind}')
        if lifetimes:
            # The kubelet refreshes a projected token once 80% of its lifetime has passed.
            self._token_refresh_at = time.monotonic() + 0.8 * min(lifetimes)
        return paths

    def _content_files(self, volume: Obj) -> VolumeFiles:
        def issue(audience: str | None, seconds: int) -> str:
            return self.node.kube.issue_token(self.pod, audience, seconds)

        return content_volume_files(self.pod, volume, self.node.kube, issue, self.node.allocatable)

    def _refresh_tokens_if_due(self) -> None:
        if time.monotonic() < self._token_refresh_at or self.deleting.is_set():
            return
        try:
            self._setup_volumes()
            log.info("projected volumes refreshed", extra={"pod": self.key, "event": "TokenRefreshed"})
        except (ContainerConfigError, ApiException) as error:
            self._token_refresh_at = time.monotonic() + RETRY_SECONDS * 5
            log.warning("projected volume refresh failed", extra={"pod": self.key, "error": _error_text(error)})

    # -- stopping and status ------------------------------------------------------------------

    def _stop_processes(self, grace_seconds: float) -> None:
        processes = list(self.processes.values())
        threads = [threading.Thread(target=p.stop, args=(grace_seconds,), daemon=True) for p in processes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _finish(self) -> None:
        if self.pod_removed.is_set():
            return
        if not self.deleting.is_set():
            log.info("pod finished", extra={"pod": self.key, "event": "Finished", "phase": self._last_status and self._last_status.get("phase")})
            return

        for record in self.init_records + self.records:
            if record.terminated is None and not record.running:
                record.set_terminated(Termination(137, LOST_CONTAINER_REASON, None, now_rfc3339(),
                                                  "The container could not be located when the pod was terminated"))
        self._sync_status(terminal=True)
        self.node.kube.delete_pod_now(self.namespace, self.name, self.uid)
        log.info("pod deleted", extra={"pod": self.key, "event": "Deleted"})
        self.cleanup()

    def cleanup(self) -> None:
        shutil.rmtree(self.pod_dir, ignore_errors=True)

    def _restore_records(self, status: Obj) -> None:
        """Take over container states written by an earlier agent run.

        The processes of that run ended with it, so a container shown as running is
        recorded as terminated with exit code 137, as the kubelet reports a lost container.
        """
        previous = {s["name"]: s for s in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])}
        for record in self.init_records + self.records:
            old = previous.get(record.name)
            if old is None:
                continue
            record.restart_count = old.get("restartCount", 0)
            state = old.get("state") or {}
            if "terminated" in state:
                t = state["terminated"]
                record.set_terminated(Termination(t["exitCode"], t.get("reason", ""), t.get("startedAt"), t.get("finishedAt") or now_rfc3339(), t.get("message", "")))
            elif "running" in state:
                record.set_terminated(Termination(137, LOST_CONTAINER_REASON, state["running"].get("startedAt"), now_rfc3339(),
                                                  "The container could not be located when the node agent restarted"))

    def _sync_status(self, terminal: bool = False) -> None:
        """Write the Pod status if it changed; during deletion the phase becomes terminal."""
        with self._status_lock:
            if self.pod_removed.is_set():
                return
            policy = "Never" if terminal else self.restart_policy
            status = build_status(policy, self.sandbox_ready, self.init_records, self.records, self.start_time,
                                  self.pod.get("status") or {})
            if self.pod["metadata"].get("generation") is not None:
                status["observedGeneration"] = self.pod["metadata"]["generation"]
            comparable = _without_times(status)
            if comparable == self._last_status:
                return
            try:
                self.node.kube.patch_pod_status(self.namespace, self.name, status)
            except ApiException as error:
                if error.status == 404:
                    self.pod_removed.set()
                    return
                log.warning("pod status update failed", extra={"pod": self.key, "error": _error_text(error)})
                return
            previous_phase = (self._last_status or {}).get("phase")
            self._last_status = comparable
            if previous_phase != status["phase"]:
                log.info("pod phase changed", extra={"pod": self.key, "event": "PhaseChanged", "phase": status["phase"]})


def _without_times(status: Obj) -> Obj:
    copy = dict(status)
    copy["conditions"] = [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status["conditions"]]
    return copy


def _security_context(pod: Obj, container: Obj) -> Obj:
    pod_context = pod["spec"].get("securityContext") or {}
    context = container.get("securityContext") or {}
    uid = context.get("runAsUser", pod_context.get("runAsUser"))
    gid = context.get("runAsGroup", pod_context.get("runAsGroup"))
    groups = list(pod_context.get("supplementalGroups") or [])
    if pod_context.get("fsGroup") is not None:
        groups.append(pod_context["fsGroup"])
    return {"uid": uid, "gid": gid, "supplementalGroups": groups}


def _error_text(error: Exception) -> str:
    if isinstance(error, ApiException):
        return f"API error {error.status}: {error.reason}"
    return str(error)
