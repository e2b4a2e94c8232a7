"""API clients from kubeconfigs, and watches that record when each object change arrived.

Object timestamps (creationTimestamp, condition lastTransitionTime) have one-second
resolution, too coarse for latencies of tens of milliseconds. So the benchmark takes the
arrival time of each watch event at one watcher, on one clock: both ends of a latency pass
through the same watch, and its delivery delay largely cancels out.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config
from ml_training_operator.kube import Kube

WATCH_TIMEOUT_SECONDS = 3600


async def connect(kubeconfig: Path, connections: int = 32) -> Kube:
    """Return the operator's JSON client for a kubeconfig, with up to ``connections`` parallel connections."""
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    configuration.connection_pool_maxsize = connections
    return Kube(client.ApiClient(configuration))


class Watcher:
    """Watch one collection and pass each event, with its arrival time, to a callback."""

    def __init__(self, kube: Kube, path: str, on_event: Callable[[str, dict[str, Any], float], None], label_selector: str = "") -> None:
        self.kube = kube
        self.path = path
        self.on_event = on_event
        self.label_selector = label_selector
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        query = {"labelSelector": self.label_selector} if self.label_selector else {}
        listing = await self.kube.request("GET", self.path, query=query)
        now = time.time()
        for item in listing.get("items") or []:
            self.on_event("EXISTING", item, now)
        version = listing["metadata"]["resourceVersion"]
        self.ready.set()
        while True:
            version = await self._stream(version, query)

    async def _stream(self, version: str, query: dict[str, str]) -> str:
        """Follow the watch until the server ends it; return the last resourceVersion seen."""
        params = {**query, "watch": "true", "resourceVersion": version, "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(WATCH_TIMEOUT_SECONDS)}
        response = await self.kube.api_client.call_api(
            self.path, "GET", query_params=params, header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"], _preload_content=False, _request_timeout=None,
        )
        buffer = b""
        try:
            async for chunk in response.content.iter_any():
                arrived = time.time()
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        raise RuntimeError(f"watch of {self.path} failed: {obj.get('message')}")
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
                    if event.get("type") != "BOOKMARK":
                        self.on_event(event["type"], obj, arrived)
        except aiohttp.ClientPayloadError:
            pass
        finally:
            response.release()
        return version
