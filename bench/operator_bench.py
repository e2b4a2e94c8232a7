"""Operator benchmark: latency, throughput, API calls and memory against the local cluster.

The operator runs as a local process, started by the integration tests' harness with the
operator's default intervals, under its own client identity so that the cluster's audit
log can count its calls. Trainer Pods run the stand-in trainer (image tag ``bench``: the
stand-in without pauses between steps) on the CPU node, so a run costs one Python start
plus its progress POSTs. Requests are created as the test user alice, through the
operator's admission webhooks, like a consumer's.

Each latency is compared with a floor measured on the same cluster in the same run, with
the same client and identity, before the operator starts. The floors are the time that
kube-apiserver takes to create the operator's own Job (suspended) and to merge-patch a
request's status.
"""

from __future__ import annotations

import asyncio
import copy
import os
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ml_training_operator import jobs, names
from ml_training_operator.kube import ApiError, Kube
from ml_training_operator.settings import load_settings

from bench import audit, results
from bench.watch import Watcher, connect
from tests.cluster.localcluster import OPERATOR_USER, REPO_ROOT, LocalCluster
from tests.conftest import ClusterHandle, wait_for
from tests.integration.operator_harness import (
    OperatorProcess,
    _delete_webhook_configurations,
    base_model,
    fine_tuning_request,
    operator_environment,
    prepare_namespace,
)

BENCH_STATE_DIR = REPO_ROOT / ".local" / "bench-cluster"
BENCH_PORT_BASE = 18443
BENCH_IMAGE = "aiml.mns.io/standin-trainer:bench"
# A shell that writes the final report and sends no progress (bench/minimal_trainer.sh), for
# bursts where a thousand Python starts would cost more CPU than the operator under test.
MINIMAL_IMAGE = "aiml.mns.io/standin-trainer:bench-minimal"
CONSUMER = "alice"
PLURAL = names.FINE_TUNING_REQUEST.plural
# Kopf names each webhook "<handler id>.<configuration>", which needs three dot-separated parts.
WEBHOOK_CONFIGURATION = "bench.aiml.mns.io"
# Test-harness settings that shorten the operator's intervals. The benchmark drops them, so
# the operator runs with its defaults (settings.py) as the Helm chart deploys it.
SHORTENED_SETTINGS = (
    "AIML_PROGRESS_PATCH_INTERVAL_SECONDS",
    "AIML_RECONCILE_INTERVAL_SECONDS",
    "AIML_AUTHORIZATION_RETRY_SECONDS",
    "AIML_API_RETRY_SECONDS",
    "AIML_UNSCHEDULABLE_TIMEOUT_SECONDS",
    "AIML_TERMINATION_GRACE_PERIOD_SECONDS",
)
# Creations in flight at once: a burst is sent as fast as the API server and the operator's
# admission webhooks accept it, without waiting in the client's queue past its timeout.
CREATE_CONCURRENCY = 32
CREATE_ATTEMPTS = 10
# Seconds to let late calls (progress patches, Kopf's annotations) reach the audit log after the last FINISHED.
SETTLE_SECONDS = 3.0


@dataclass(frozen=True)
class Sizes:
    """How many requests each scenario creates."""

    single_runs: int
    bursts: tuple[int, ...]
    minimal_bursts: tuple[int, ...]
    floor_samples: int
    # Bounds that keep ``make bench`` within 20 minutes on 2 cores; a scenario that runs out
    # reports how many of its requests finished.
    burst_timeout_seconds: float = 400.0


FULL_SIZES = Sizes(single_runs=10, bursts=(200,), minimal_bursts=(1000,), floor_samples=30, burst_timeout_seconds=480.0)
QUICK_SIZES = Sizes(single_runs=3, bursts=(20,), minimal_bursts=(20,), floor_samples=10, burst_timeout_seconds=180.0)


# -- the cluster and the operator --------------------------------------------------------------


def open_bench_cluster() -> ClusterHandle:
    """Start the benchmark's own cluster with audit on, or reuse the one already running there."""
    local = LocalCluster(BENCH_STATE_DIR, BENCH_PORT_BASE, audit=True)
    already_running = local.status().get("readyz") == "ok"
    # up() leaves running components alone and creates missing certificates and kubeconfigs.
    local.up()
    return ClusterHandle(local=local, started_here=not already_running)


def close_bench_cluster(cluster: ClusterHandle) -> None:
    """Stop and delete a cluster that the benchmark started; leave one it found running."""
    if cluster.started_here:
        cluster.local.down(purge=True)


def apply_crds(cluster: ClusterHandle) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO_ROOT / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")


def bench_environment(cluster: ClusterHandle) -> dict[str, str]:
    environment = operator_environment(
        cluster,
        KUBECONFIG=str(cluster.local.operator_kubeconfig),
        AIML_TRAINER_IMAGES=f"{BENCH_IMAGE},{MINIMAL_IMAGE}",
        AIML_WEBHOOK_CONFIGURATION_NAME=WEBHOOK_CONFIGURATION,
    )
    for variable in SHORTENED_SETTINGS:
        environment.pop(variable, None)
    return environment


def resident_memory(pid: int) -> dict[str, int]:
    """Return VmRSS and VmHWM (peak) of a process in bytes, from /proc."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values


def cpu_seconds(pid: int) -> float:
    """Return the user plus system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def new_namespace(cluster: ClusterHandle, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", name)
    wait_for(
        lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
        timeout=60,
        message=f"ServiceAccount default in namespace {name}",
    )
    return name


def bench_request(namespace: str, name: str, image: str = BENCH_IMAGE) -> dict[str, Any]:
    """Build a fine-tuning request for the stand-in: one epoch and no GPU, so it runs on the CPU node."""
    return fine_tuning_request(
        namespace, name, image=image,
        trainer={"image": image, "gpus": 0, "hyperparameters": {"epochs": 1}},
    )


# -- floor --------------------------------------------------------------------------------------


async def measure_floor(kube: Kube, cluster: ClusterHandle, environment: dict[str, str], samples: int) -> dict[str, Any]:
    """Time Job creations and status patches as the operator sends them, with no operator running."""
    namespace = new_namespace(cluster, "bench-floor")
    try:
        request = bench_request(namespace, "floor")
        created = await kube.request("POST", kube.custom_path(namespace, PLURAL), body=request)
        plan = jobs.build_job_plan(created | {"kind": names.FINE_TUNING_REQUEST.kind}, base_model(namespace),
                                   load_settings(environment), attempt=1)

        job_seconds = []
        for index in range(samples):
            job = copy.deepcopy(plan.job)
            job["metadata"]["name"] = f"floor-{index}"
            job["metadata"].pop("ownerReferences", None)
            job["spec"]["suspend"] = True
            started = time.perf_counter()
            await kube.request("POST", kube.job_path(namespace), body=job)
            job_seconds.append(time.perf_counter() - started)

        patch_seconds = []
        status_path = kube.custom_path(namespace, PLURAL, "floor", "status")
        version = created["metadata"]["resourceVersion"]
        for index in range(samples):
            patch = {
                "metadata": {"resourceVersion": version},
                "status": {
                    "requestStatus": "IN_PROGRESS",
                    "process": {"progressStatus": {"status": "RUNNING", "progressPercentage": index % 100,
                                                   "progressStateInfo": "TRAINING"}, "step": index},
                },
            }
            started = time.perf_counter()
            updated = await kube.merge_patch(status_path, patch)
            patch_seconds.append(time.perf_counter() - started)
            version = updated["metadata"]["resourceVersion"]
    finally:
        # Gone before the operator starts, so that none of its calls go to the floor's objects.
        cluster.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=120s", check=False, timeout=150)
    return {"job_create_seconds": results.summarize(job_seconds), "status_patch_seconds": results.summarize(patch_seconds)}


# -- scenarios ----------------------------------------------------------------------------------


@dataclass
class Tracker:
    """Arrival times of the events that mark each request's progress, keyed by request uid."""

    created: dict[str, float] = field(default_factory=dict)
    create_call_seconds: dict[str, float] = field(default_factory=dict)
    job_seen: dict[str, float] = field(default_factory=dict)
    job_complete: dict[str, float] = field(default_factory=dict)
    finished: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    throttled: int = 0
    timed_out: int = 0

    def on_job(self, kind: str, job: dict[str, Any], arrived: float) -> None:
        uid = (job["metadata"].get("labels") or {}).get(names.LABEL_REQUEST_UID)
        if not uid:
            return
        self.job_seen.setdefault(uid, arrived)
        conditions = (job.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Complete" and c.get("status") == "True" for c in conditions):
            self.job_complete.setdefault(uid, arrived)

    def on_request(self, kind: str, request: dict[str, Any], arrived: float) -> None:
        status = request.get("status") or {}
        if status.get("requestStatus") != "FINISHED":
            return
        uid = request["metadata"]["uid"]
        process_status = ((status.get("process") or {}).get("progressStatus") or {})
        if process_status.get("status") == "FINISHED":
            self.finished.setdefault(uid, arrived)
        else:
            self.failed.setdefault(uid, process_status.get("resultStateInfo") or "failed")

    def done(self, uids: Iterable[str]) -> bool:
        return all(uid in self.finished or uid in self.failed for uid in uids)

    async def wait(self, uids: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.done(uids) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)


@dataclass
class Clients:
    consumer: Kube
    watcher: Kube


async def create_requests(clients: Clients, tracker: Tracker, namespace: str, names_: list[str], image: str) -> list[str]:
    """Create requests at once as the consumer; return their uids in order."""

    slots = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def create(name: str) -> str:
        async with slots:
            for attempt in range(CREATE_ATTEMPTS):
                started = time.time()
                try:
                    body = await clients.consumer.request("POST", Kube.custom_path(namespace, PLURAL), body=bench_request(namespace, name, image))
                    break
                except ApiError as error:
                    if error.status == 409 and attempt > 0:
                        # An earlier attempt that timed out on the client side did create it.
                        body = await clients.consumer.request("GET", Kube.custom_path(namespace, PLURAL, name))
                        break
                    # kube-apiserver sheds load with 429, and a loaded machine can time out the
                    # connection (status 0); clients are expected to retry both.
                    if error.status not in (0, 429) or attempt == CREATE_ATTEMPTS - 1:
                        raise
                    if error.status == 429:
                        tracker.throttled += 1
                    else:
                        tracker.timed_out += 1
                    await asyncio.sleep(1.0)
            returned = time.time()
        uid = body["metadata"]["uid"]
        tracker.created[uid] = returned
        tracker.create_call_seconds[uid] = returned - started
        return uid

    return list(await asyncio.gather(*(create(name) for name in names_)))


def latencies(tracker: Tracker, uids: list[str]) -> tuple[list[float], list[float]]:
    to_job = [tracker.job_seen[uid] - tracker.created[uid] for uid in uids if uid in tracker.job_seen]
    to_finished = [tracker.finished[uid] - tracker.job_complete[uid] for uid in uids
                   if uid in tracker.finished and uid in tracker.job_complete]
    return to_job, to_finished


async def run_scenario(
    clients: Clients, cluster: ClusterHandle, log: audit.AuditLog, operator_pid: int,
    label: str, count: int, batch: int, timeout: float, image: str = BENCH_IMAGE,
) -> tuple[dict[str, Any], str]:
    """Create ``count`` requests, ``batch`` at a time, and follow each to FINISHED."""
    namespace = new_namespace(cluster, f"bench-{label}")
    prepare_namespace(cluster, namespace, user=CONSUMER)
    tracker = Tracker()
    job_watch = Watcher(clients.watcher, Kube.job_path(namespace), tracker.on_job,
                        label_selector=f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}")
    request_watch = Watcher(clients.watcher, Kube.custom_path(namespace, PLURAL), tracker.on_request)
    for watcher in (job_watch, request_watch):
        watcher.start()
        await asyncio.wait_for(watcher.ready.wait(), 30)

    offset = log.position()
    cpu_before = cpu_seconds(operator_pid)
    uids: list[str] = []
    started = time.time()
    try:
        for first in range(0, count, batch):
            names_ = [f"r{index:04d}" for index in range(first, min(count, first + batch))]
            created = await create_requests(clients, tracker, namespace, names_, image)
            uids += created
            await tracker.wait(created, max(1.0, timeout - (time.time() - started)))
        ended = max([tracker.finished[uid] for uid in uids if uid in tracker.finished], default=time.time())
        await asyncio.sleep(SETTLE_SECONDS)
        cpu = cpu_seconds(operator_pid) - cpu_before
    finally:
        for watcher in (job_watch, request_watch):
            await watcher.stop()

    to_job, to_finished = latencies(tracker, uids)
    summary: dict[str, Any] = {
        "trainer_image": image,
        "requests": count,
        "created_at_once": batch,
        "finished": len([uid for uid in uids if uid in tracker.finished]),
        "failed": len([uid for uid in uids if uid in tracker.failed]),
        "failure_examples": sorted(set(tracker.failed.values()))[:3],
        "create_calls_throttled": tracker.throttled,
        "create_calls_timed_out": tracker.timed_out,
        "create_call_seconds": results.summarize(tracker.create_call_seconds[uid] for uid in uids),
        "create_to_job_seconds": results.summarize(to_job),
        "job_complete_to_finished_seconds": results.summarize(to_finished),
        "wall_seconds": round(ended - started, 3),
        "requests_per_second": round(len([u for u in uids if u in tracker.finished]) / (ended - started), 3),
        "operator_cpu_seconds_per_request": round(cpu / count, 4),
        "operator_cpu_share_of_one_core": round(cpu / (ended - started + SETTLE_SECONDS), 3),
    }
    if log.available:
        summary["api_calls_per_request"] = audit.per_request(log.calls_since(offset), count)
    return summary, namespace


async def delete_requests(cluster: ClusterHandle, log: audit.AuditLog, namespace: str, count: int) -> dict[str, Any] | None:
    """Delete a scenario's requests (the operator's finalizer removes their Jobs) and count its calls."""
    offset = log.position()
    started = time.time()
    result = await asyncio.to_thread(
        cluster.kubectl, "delete", PLURAL, "--all", "-n", namespace, "--wait=true", "--timeout=300s", check=False, timeout=330,
    )
    seconds = time.time() - started
    await asyncio.sleep(SETTLE_SECONDS)
    summary: dict[str, Any] = {"seconds": round(seconds, 3), "completed": result.returncode == 0}
    if log.available:
        summary["api_calls_per_request"] = audit.per_request(log.calls_since(offset), count)
    return summary


async def run_scenarios(cluster: ClusterHandle, operator: OperatorProcess, sizes: Sizes, floor: dict[str, Any]) -> dict[str, Any]:
    log = audit.AuditLog(cluster.local.audit_log_path, OPERATOR_USER)
    clients = Clients(consumer=await connect(cluster.user_kubeconfig(CONSUMER), connections=64),
                      watcher=await connect(cluster.kubeconfig, connections=4))
    pid = operator.process.pid
    memory: dict[str, Any] = {"idle": resident_memory(pid)}
    scenarios: dict[str, Any] = {}
    namespaces: list[str] = []
    try:
        single, namespace = await run_scenario(clients, cluster, log, pid, "single", sizes.single_runs, 1, sizes.burst_timeout_seconds)
        single["note"] = f"{sizes.single_runs} requests created one after another, each after the previous FINISHED"
        scenarios["single"] = single
        namespaces.append(namespace)

        bursts = [(size, BENCH_IMAGE, f"burst_{size}") for size in sizes.bursts]
        bursts += [(size, MINIMAL_IMAGE, f"burst_{size}_minimal") for size in sizes.minimal_bursts]
        for index, (size, image, label) in enumerate(bursts):
            try:
                burst, namespace = await run_scenario(clients, cluster, log, pid, label.replace("_", "-"), size, size,
                                                      sizes.burst_timeout_seconds, image)
            except ApiError as error:
                # Keep the figures of the other scenarios; this one reports what stopped it.
                scenarios[label] = {"trainer_image": image, "requests": size, "error": str(error)}
                continue
            scenarios[label] = burst
            namespaces.append(namespace)
            memory[f"after_{label}_finished"] = resident_memory(pid)
            if index == 0:
                burst["deletion"] = await delete_requests(cluster, log, namespace, size)
    finally:
        await clients.consumer.close()
        await clients.watcher.close()

    for scenario in scenarios.values():
        if "error" in scenario:
            continue
        for key, floor_key in (("create_to_job_seconds", "job_create_seconds"),
                               ("job_complete_to_finished_seconds", "status_patch_seconds"),
                               ("create_call_seconds", "job_create_seconds")):
            scenario[key] = results.with_ratio(scenario[key], floor[floor_key])
    return {"scenarios": scenarios, "memory_bytes": memory, "namespaces": namespaces}


def remove_namespaces(cluster: ClusterHandle, namespaces: list[str]) -> None:
    for namespace in namespaces:
        cluster.kubectl("delete", PLURAL, "--all", "-n", namespace, "--wait=true", "--timeout=300s", check=False, timeout=330)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def run(cluster: ClusterHandle, sizes: Sizes, log_path: Path, profile_path: Path | None = None) -> dict[str, Any]:
    """Measure the floor, start the operator, run every scenario, stop the operator; return the figures.

    With ``profile_path`` the operator runs under cProfile, which writes its statistics there
    when the operator stops. Profiling slows the operator, so its figures are not comparable.
    """
    if not cluster.local.operator_kubeconfig.exists():
        # A cluster started before the operator's identity existed; up() adds it and leaves the rest running.
        cluster.local.up()
    apply_crds(cluster)
    _delete_webhook_configurations(cluster, WEBHOOK_CONFIGURATION)
    environment = bench_environment(cluster)

    async def floor() -> dict[str, Any]:
        kube = await connect(cluster.local.operator_kubeconfig)
        try:
            return await measure_floor(kube, cluster, environment, sizes.floor_samples)
        finally:
            await kube.close()

    floor_figures = asyncio.run(floor())
    log_path.parent.mkdir(parents=True, exist_ok=True)
    operator = OperatorProcess(cluster=cluster, log_path=log_path, environment=environment)
    if profile_path is not None:
        operator.command = [sys.executable, "-m", "cProfile", "-o", str(profile_path), *operator.command]
    operator.start()
    try:
        figures = asyncio.run(run_scenarios(cluster, operator, sizes, floor_figures))
        if not cluster.started_here:
            # Requests carry the operator's finalizer, so they must go while it still runs; a
            # cluster that the benchmark started is purged instead.
            remove_namespaces(cluster, figures["namespaces"])
    finally:
        operator.stop()
        _delete_webhook_configurations(cluster, WEBHOOK_CONFIGURATION)
    figures.pop("namespaces")

    return {
        "cluster": {
            "state_dir": str(cluster.local.state_dir),
            "apiserver": cluster.local.server,
            "audit_log": str(cluster.local.audit_log_path) if cluster.local.audit_log_path.exists() else None,
            "started_here": cluster.started_here,
        },
        "operator_log": str(log_path),
        "operator_profile": str(profile_path) if profile_path else None,
        "operator_settings": {key: value for key, value in environment.items() if key.startswith("AIML_")},
        "floor": floor_figures,
        **figures,
    }
