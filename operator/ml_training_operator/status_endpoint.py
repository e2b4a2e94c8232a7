"""HTTP endpoint that receives the trainers' progress events, plus health and metrics.

Trainer Pods have no API-server credentials. Each one carries a projected ServiceAccount
token whose audience names its request (``aiml.mns.io/progress/<ns>/<plural>/<name>``).
The endpoint checks that token with a TokenReview. It accepts the event only if the
token's Pod belongs to the request's current Job. Accepted events are coalesced and
written to the request's status at most once per patch interval, so a fast trainer
cannot flood the API server.

Routes: ``POST /v1alpha1/namespaces/<ns>/<plural>/<name>/progress``, ``GET /healthz``,
``GET /readyz``, ``GET /metrics``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from . import metrics, names, progress, protocol
from .kube import ApiError, Kube

logger = logging.getLogger(__name__)

# A verified token is trusted for this long before it is reviewed again. Shorter than the
# token's own lifetime, and short enough that a deleted Pod's token stops working soon.
TOKEN_CACHE_SECONDS = 30.0
MAX_BODY_BYTES = 64 * 1024
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"

RequestKey = tuple[str, str, str]


class Rejection(Exception):
    """A progress POST that is not accepted: HTTP status, metric label and message."""

    def __init__(self, status: int, label: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.label = label
        self.message = message


def bearer_token(header: str | None) -> str:
    if not header or not header.startswith("Bearer "):
        raise Rejection(401, "missing_token", "missing Authorization: Bearer <token> header")
    token = header[len("Bearer "):].strip()
    if not token:
        raise Rejection(401, "missing_token", "empty bearer token")
    return token


def token_pod(review: dict[str, Any], audience: str, namespace: str) -> tuple[str, str]:
    """Check a TokenReview result and return the (name, uid) of the Pod the token is bound to."""
    status = review.get("status") or {}
    if not status.get("authenticated"):
        raise Rejection(401, "unauthenticated", f"token rejected: {status.get('error') or 'not authenticated'}")
    if audience not in (status.get("audiences") or []):
        raise Rejection(401, "wrong_audience", f"token is not valid for audience {audience}")
    user = status.get("user") or {}
    if not str(user.get("username", "")).startswith(f"system:serviceaccount:{namespace}:"):
        raise Rejection(403, "wrong_namespace", f"token does not belong to a ServiceAccount of namespace {namespace}")
    extra = user.get("extra") or {}
    pod_name = (extra.get(POD_NAME_EXTRA) or [None])[0]
    pod_uid = (extra.get(POD_UID_EXTRA) or [None])[0]
    if not pod_name or not pod_uid:
        raise Rejection(403, "not_pod_bound", "token is not bound to a Pod")
    return pod_name, pod_uid


def pod_belongs_to_job(pod: dict[str, Any] | None, pod_uid: str, job_name: str | None) -> bool:
    """Tell whether a Pod is the token's Pod and was created by the named Job."""
    if pod is None or job_name is None:
        return False
    metadata = pod.get("metadata") or {}
    if metadata.get("uid") != pod_uid:
        return False
    if (metadata.get("labels") or {}).get(names.LABEL_JOB_NAME) == job_name:
        return True
    return any(
        owner.get("kind") == "Job" and owner.get("name") == job_name and owner.get("controller")
        for owner in metadata.get("ownerReferences") or []
    )


@dataclass
class ProgressBuffer:
    """Events accepted since the last status patch, per request."""

    pending: dict[RequestKey, list[protocol.ProgressEvent]] = field(default_factory=dict)

    def add(self, key: RequestKey, event: protocol.ProgressEvent) -> None:
        self.pending.setdefault(key, []).append(event)

    def drain(self) -> dict[RequestKey, protocol.ProgressEvent]:
        drained = {key: merged for key, events in self.pending.items() if (merged := progress.merge_events(events))}
        self.pending = {}
        return drained


class StatusEndpoint:
    """The aiohttp application and the background task that writes coalesced progress."""

    def __init__(self, kube: Kube, patch_interval: float, on_progress: Callable[[RequestKey], None] | None = None) -> None:
        self.kube = kube
        self.patch_interval = patch_interval
        self.buffer = ProgressBuffer()
        self.ready = False
        self.on_progress = on_progress
        self._verified_tokens: dict[str, tuple[float, RequestKey, str, str]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None

    def application(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.add_routes(
            [
                web.post("/v1alpha1/namespaces/{namespace}/{plural}/{name}/progress", self.handle_progress),
                web.get("/healthz", self.handle_health),
                web.get("/readyz", self.handle_ready),
                web.get("/metrics", self.handle_metrics),
            ]
        )
        return app

    async def start(self, address: str, port: int) -> None:
        self._runner = web.AppRunner(self.application(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, address, port).start()
        self._flusher = asyncio.create_task(self._flush_forever())
        logger.info(f"status endpoint listening on {address}:{port}")

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    async def handle_health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def handle_ready(self, request: web.Request) -> web.Response:
        if not self.ready:
            return web.Response(status=503, text="starting\n")
        return web.Response(text="ready\n")

    async def handle_metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), content_type="text/plain", charset="utf-8")

    async def handle_progress(self, request: web.Request) -> web.Response:
        namespace = request.match_info["namespace"]
        plural = request.match_info["plural"]
        name = request.match_info["name"]
        try:
            key = await self.verify(namespace, plural, name, request.headers.get("Authorization"))
            event = await self._parse_event(request, namespace, name)
        except Rejection as rejection:
            metrics.PROGRESS_EVENTS.labels(rejection.label).inc()
            logger.warning(
                f"rejected progress for {namespace}/{plural}/{name}: {rejection.message}",
                extra={"object": {"namespace": namespace, "name": name, "plural": plural}, "decision": "reject-progress", "reason": rejection.label},
            )
            return web.json_response({"error": rejection.message}, status=rejection.status)
        self.buffer.add(key, event)
        metrics.PROGRESS_EVENTS.labels("accepted").inc()
        return web.json_response({"accepted": True}, status=202)

    async def _parse_event(self, request: web.Request, namespace: str, name: str) -> protocol.ProgressEvent:
        try:
            event = protocol.ProgressEvent.model_validate_json(await request.read())
        except ValidationError as error:
            raise Rejection(400, "invalid_event", f"invalid progress event: {error.errors()[0]['msg']}") from error
        if event.request is not None and (event.request.namespace, event.request.name) != (namespace, name):
            raise Rejection(400, "request_mismatch", "the event names another request than the URL")
        return event

    async def verify(self, namespace: str, plural: str, name: str, authorization: str | None) -> RequestKey:
        """Authenticate a POST and return the request it may report for; raise Rejection otherwise."""
        try:
            kind = names.request_kind(plural)
        except KeyError:
            raise Rejection(404, "unknown_kind", f"{plural} is not a request kind") from None
        if kind.plural != plural:
            raise Rejection(404, "unknown_kind", f"use the plural {kind.plural} in the URL")
        key: RequestKey = (plural, namespace, name)
        token = bearer_token(authorization)
        digest = hashlib.sha256(token.encode()).hexdigest()

        cached = self._verified_tokens.get(digest)
        if cached is not None and cached[0] > time.monotonic() and cached[1] == key:
            pod_name, pod_uid = cached[2], cached[3]
        else:
            audience = names.progress_audience(namespace, plural, name)
            review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token, "audiences": [audience]}}
            try:
                result = await self.kube.create_review(review)
            except ApiError as error:
                raise Rejection(503, "review_failed", f"TokenReview failed: {error.message}") from error
            pod_name, pod_uid = token_pod(result, audience, namespace)

        try:
            request_object = await self.kube.get_or_none(self.kube.custom_path(namespace, plural, name))
            pod = await self.kube.get_or_none(self.kube.core_path(namespace, "pods", pod_name))
        except ApiError as error:
            raise Rejection(503, "lookup_failed", f"reading the request or Pod failed: {error.message}") from error
        if request_object is None:
            raise Rejection(404, "request_not_found", f"{kind.kind} {namespace}/{name} not found")
        job_ref = (((request_object.get("status") or {}).get("process") or {}).get("jobRef") or {}).get("name")
        if not pod_belongs_to_job(pod, pod_uid, job_ref):
            raise Rejection(403, "wrong_job", f"Pod {pod_name} does not belong to the current Job {job_ref} of {namespace}/{name}")

        self._verified_tokens[digest] = (time.monotonic() + TOKEN_CACHE_SECONDS, key, pod_name, pod_uid)
        return key

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.patch_interval)
            for key, event in self.buffer.drain().items():
                try:
                    await self.write_progress(key, event)
                except ApiError as error:
                    logger.warning(
                        f"writing progress of {key[1]}/{key[2]} failed: {error}",
                        extra={"object": {"namespace": key[1], "name": key[2], "plural": key[0]}, "decision": "progress-write-failed"},
                    )

    async def write_progress(self, key: RequestKey, event: protocol.ProgressEvent) -> None:
        """Patch one coalesced event into ``status.process`` unless the request has moved on."""
        plural, namespace, name = key
        for _ in range(3):
            current = await self.kube.get_or_none(self.kube.custom_path(namespace, plural, name))
            if current is None:
                return
            status = current.get("status") or {}
            if status.get("requestStatus") != "IN_PROGRESS":
                # A late event must not turn a finished, suspended or cancelled request back to running.
                return
            patch = progress.apply_progress_event(status, event)
            body = {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]}, "status": {"process": patch}}
            try:
                await self.kube.merge_patch(self.kube.custom_path(namespace, plural, name, "status"), body)
            except ApiError as error:
                if error.status == 409:
                    continue
                raise
            if self.on_progress is not None:
                self.on_progress(key)
            return
