"""The node agent: nodes, their log endpoints, the Pod watch, and one worker per Pod.

Each simulated node watches the Pods bound to it (field selector ``spec.nodeName``) and
hands every Pod to a ``PodWorker``. A Pod that is already terminal when the agent first
receives it is not run again; its worker only serves the logs left in the state directory.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from tests.cluster.node_agent.image_table import ImageTable
from tests.cluster.node_agent.kube import Kube, list_and_watch
from tests.cluster.node_agent.log_server import LogServer
from tests.cluster.node_agent.nodes import NodeHeartbeat, NodeSpec
from tests.cluster.node_agent.pod_worker import NodeContext, PodWorker
from tests.cluster.node_agent.provisioner import Provisioner

Obj = dict[str, Any]
log = logging.getLogger("node_agent")

SHUTDOWN_GRACE_SECONDS = 5.0
TERMINAL_PHASES = ("Succeeded", "Failed")


class AgentStartError(RuntimeError):
    """The agent cannot start, for example because its log port is taken."""


class NodeAgent:
    """Plays the kubelet for a set of simulated nodes."""

    def __init__(
        self,
        kube: Kube,
        nodes: list[NodeSpec],
        state_dir: Path,
        images: ImageTable,
        serving_cert: str,
        serving_key: str,
        client_ca: str | None,
        backoff_seconds: float,
    ) -> None:
        self.kube = kube
        self.nodes = nodes
        self.state_dir = state_dir
        self.images = images
        self.serving = (serving_cert, serving_key, client_ca)
        self.backoff_seconds = backoff_seconds
        self.stop = threading.Event()
        self.workers: dict[str, PodWorker] = {}
        self.lock = threading.Lock()
        self.contexts: dict[str, NodeContext] = {}

    def run(self) -> None:
        """Register the nodes, start every loop, and block until ``stop`` is set."""
        version = self.kube.version.get_code().git_version
        for spec in self.nodes:
            self.contexts[spec.name] = NodeContext(
                spec.name, spec.allocatable, self.state_dir / "nodes" / spec.name, self.images, self.kube, self.backoff_seconds
            )
            cert, key, client_ca = self.serving
            try:
                server = LogServer(spec.port, cert, key, client_ca, self._locator(spec.name))
            except OSError as error:
                raise AgentStartError(
                    f"cannot serve the log endpoint of node {spec.name} on 127.0.0.1:{spec.port}: {error}. "
                    "Another node agent may be running; stop it or choose another --log-port-base."
                ) from error
            server.start()
            heartbeat = NodeHeartbeat(self.kube, spec, version, self.stop)
            heartbeat.register()
            heartbeat.start()
            threading.Thread(target=self._watch_pods, args=(spec.name,), name=f"pods-{spec.name}", daemon=True).start()
            log.info("node ready", extra={"node": spec.name, "port": spec.port, "event": "NodeReady"})

        Provisioner(self.kube, self.state_dir, self.stop).start()

        self.stop.wait()
        self._shutdown()

    # -- Pod watch ----------------------------------------------------------------------------

    def _watch_pods(self, node: str) -> None:
        while not self.stop.is_set():
            try:
                for kind, obj in list_and_watch(
                    self.kube.core.list_pod_for_all_namespaces, self.stop.is_set, field_selector=f"spec.nodeName={node}"
                ):
                    if kind == "RESYNC":
                        self._resync(node, obj["items"])
                    else:
                        self._handle(node, kind, obj)
            except Exception as error:  # noqa: BLE001 - the watch restarts after any connection error
                log.warning("pod watch failed, restarting", extra={"node": node, "error": repr(error)})
                self.stop.wait(2)

    def _resync(self, node: str, pods: list[Obj]) -> None:
        seen = {pod["metadata"]["uid"] for pod in pods}
        with self.lock:
            vanished = [w for uid, w in self.workers.items() if w.node.name == node and uid not in seen]
        for worker in vanished:
            self._handle(node, "DELETED", worker.pod)
        for pod in pods:
            self._handle(node, "ADDED", pod)

    def _handle(self, node: str, kind: str, pod: Obj) -> None:
        metadata = pod["metadata"]
        uid, key = metadata["uid"], f"{metadata['namespace']}/{metadata['name']}"

        if kind == "DELETED":
            with self.lock:
                worker = self.workers.pop(uid, None)
            if worker is not None:
                log.info("pod removed from the API", extra={"pod": key, "node": node, "event": "Removed"})
                worker.removed()
                threading.Thread(target=self._cleanup_after, args=(worker,), daemon=True).start()
            return

        with self.lock:
            worker = self.workers.get(uid)
            if worker is None:
                worker = PodWorker(pod, self.contexts[node])
                self.workers[uid] = worker
                terminal = (pod.get("status") or {}).get("phase") in TERMINAL_PHASES
                if terminal or metadata.get("deletionTimestamp"):
                    worker.finished.set()
                else:
                    log.info("pod bound to node, starting", extra={"pod": key, "node": node, "event": "Scheduled"})
                    worker.start()
                    return

        if worker.finished.is_set():
            worker.pod = pod
            if metadata.get("deletionTimestamp"):
                self.kube.delete_pod_now(metadata["namespace"], metadata["name"], uid)
            return
        worker.update(pod)

    @staticmethod
    def _cleanup_after(worker: PodWorker) -> None:
        worker.finished.wait(SHUTDOWN_GRACE_SECONDS)
        worker.cleanup()

    def _locator(self, node: str):
        def locate(namespace: str, pod: str, container: str, previous: bool) -> tuple[Path | None, bool, str]:
            with self.lock:
                worker = next(
                    (w for w in self.workers.values() if w.node.name == node and (w.namespace, w.name) == (namespace, pod)),
                    None,
                )
            if worker is None:
                return None, False, f'pod "{pod}" in namespace "{namespace}" is not running on node {node}'
            path, live = worker.log_file(container, previous)
            if path is None or not path.exists():
                record = next((r for r in worker.init_records + worker.records if r.name == container), None)
                if record is None:
                    return None, False, f'container "{container}" is not valid for pod "{pod}"'
                if previous:
                    return None, False, f'previous terminated container "{container}" in pod "{pod}" not found'
                return None, False, f'container "{container}" in pod "{pod}" is waiting to start: {record.waiting_reason}'
            return path, live, ""

        return locate

    # -- shutdown -----------------------------------------------------------------------------

    def _shutdown(self) -> None:
        with self.lock:
            workers = list(self.workers.values())
        log.info("node agent stopping, ending all Pod processes", extra={"event": "Stopping", "pods": len(workers)})
        threads = [threading.Thread(target=w.shutdown, args=(SHUTDOWN_GRACE_SECONDS,)) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
