"""Kopf handlers: the glue between cluster events and the reconciler.

Every request gets a daemon that reconciles it, then waits until the next check is due
or something pokes it: a spec change, a change of its Job or Pods, an accepted progress
event. The reconciler reads fresh state on each pass, so the handlers here only decide
when to run it, never what it does. Deleting a request runs a finalizer that removes its
Jobs and ConfigMaps.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import kopf

from . import metrics, names, runtime, webhooks
from .kube import ApiError, Kube
from .reconciler import Context, cleanup, reconcile
from .settings import Settings, load_settings, unknown_variables
from .status_endpoint import StatusEndpoint

# Retry delays after failed reconciliations (seconds); the last one repeats.
ERROR_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)
# Delay after a 409 on a status write: the object changed under us, so read it again soon.
CONFLICT_RETRY_SECONDS = 0.2

_endpoint: StatusEndpoint | None = None


SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def in_cluster_connection(environ: dict[str, str], directory: str = SERVICE_ACCOUNT_DIR) -> kopf.ConnectionInfo | None:
    """Build the in-cluster connection from KUBERNETES_SERVICE_HOST/PORT and the ServiceAccount files.

    Kopf's own service-account login always dials https://kubernetes.default.svc, which needs
    cluster DNS; the kubelet's environment variables name the API server as client-go uses it.
    """
    host = environ.get("KUBERNETES_SERVICE_HOST")
    port = environ.get("KUBERNETES_SERVICE_PORT", "443")
    token_path = os.path.join(directory, "token")
    if not host or not os.path.exists(token_path):
        return None
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    with open(token_path, encoding="utf-8") as file:
        token = file.read().strip()
    namespace_path = os.path.join(directory, "namespace")
    namespace = None
    if os.path.exists(namespace_path):
        with open(namespace_path, encoding="utf-8") as file:
            namespace = file.read().strip()
    ca_path = os.path.join(directory, "ca.crt")
    return kopf.ConnectionInfo(
        server=f"https://{host}:{port}",
        ca_path=ca_path if os.path.exists(ca_path) else None,
        scheme="Bearer",
        token=token,
        default_namespace=namespace,
    )


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """Log in with the Pod's ServiceAccount in a cluster, else with the kubeconfig."""
    return in_cluster_connection(dict(os.environ)) or kopf.login_with_kubeconfig(**kwargs)


def configure_kopf(kopf_settings: kopf.OperatorSettings, settings: Settings) -> None:
    """Apply the operator's settings to Kopf: storage names, webhook server, retries."""
    kopf_settings.persistence.finalizer = names.FINALIZER
    kopf_settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=names.KOPF_STORAGE_PREFIX)
    kopf_settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=names.KOPF_STORAGE_PREFIX, key="last-handled-configuration"
    )
    kopf_settings.posting.level = logging.INFO
    kopf_settings.networking.error_backoffs = [1, 2, 5, 10, 20]
    kopf_settings.watching.connect_timeout = 30
    kopf_settings.watching.server_timeout = 300
    kopf_settings.admission.server = webhooks.webhook_server(settings)
    if kopf_settings.admission.server is not None and settings.webhook_configuration_name:
        kopf_settings.admission.managed = settings.webhook_configuration_name


async def own_usernames(kube: Kube, settings: Settings, logger: Any) -> frozenset[str]:
    """Return the operator's own username (from a SelfSubjectReview) plus the configured ones."""
    usernames = set(settings.operator_usernames)
    try:
        review = await kube.create_review({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    except ApiError as error:
        logger.warning(f"SelfSubjectReview failed, only AIML_OPERATOR_USERNAMES may change requester annotations: {error}")
    else:
        username = ((review.get("status") or {}).get("userInfo") or {}).get("username")
        if username:
            usernames.add(username)
    return frozenset(usernames)


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, logger: Any, **_: Any) -> None:
    global _endpoint
    operator_settings = load_settings(os.environ)
    for variable in unknown_variables(os.environ):
        logger.warning(f"ignoring unknown setting {variable}; see the AIML_* variables in settings.py")
    configure_kopf(settings, operator_settings)

    kube = await Kube.connect()
    context = Context(kube=kube, settings=operator_settings)
    runtime.set_context(context, await own_usernames(kube, operator_settings, logger))

    _endpoint = StatusEndpoint(kube, operator_settings.progress_patch_interval_seconds, on_progress=_poke_key)
    await _endpoint.start(operator_settings.status_listen_address, operator_settings.status_port)
    _endpoint.ready = True
    logger.info(
        "operator started",
        extra={"namespaces": operator_settings.namespaces or "all", "webhook_mode": operator_settings.webhook_mode.value},
    )


@kopf.on.cleanup()
async def stop(logger: Any, **_: Any) -> None:
    if _endpoint is not None:
        await _endpoint.stop()
    try:
        context = runtime.context()
    except kopf.TemporaryError:
        return
    runtime.set_context(None)
    await context.kube.close()
    logger.info("operator stopped")


def _poke_key(key: tuple[str, str, str]) -> None:
    runtime.context().wakeups.poke(key)


def _poke_owner(body: kopf.Body) -> None:
    """Wake the reconciler of the request that a Job or Pod belongs to."""
    labels = body.get("metadata", {}).get("labels") or {}
    kind_name = labels.get(names.LABEL_REQUEST_KIND)
    uid = labels.get(names.LABEL_REQUEST_UID)
    if not kind_name or not uid:
        return
    try:
        context = runtime.context()
    except kopf.TemporaryError:
        return
    context.wakeups.poke_uid(uid)


async def follow_request(kind: names.Kind, stopped: kopf.DaemonStopped, body: kopf.Body, logger: Any) -> None:
    """Reconcile one request until it is deleted or the operator stops."""
    context = runtime.context()
    namespace, name, uid = body["metadata"]["namespace"], body["metadata"]["name"], body["metadata"]["uid"]
    key = (kind.plural, namespace, name)
    context.wakeups.alias(uid, key)
    failures = 0
    while not stopped:
        try:
            delay = await reconcile(context, kind, namespace, name, logger)
            failures = 0
        except ApiError as error:
            if error.status == 409:
                delay = CONFLICT_RETRY_SECONDS
            else:
                delay = ERROR_BACKOFF_SECONDS[min(failures, len(ERROR_BACKOFF_SECONDS) - 1)]
                failures += 1
                metrics.RECONCILE_ERRORS.labels(kind.kind, error.reason or str(error.status)).inc()
                logger.warning(f"reconcile failed, retrying in {delay:.0f}s: {error}", extra={"decision": "retry"})
        if delay is None:
            return
        await context.wakeups.wait(key, delay)


def _register(kind: names.Kind) -> None:
    resource = (names.GROUP, names.VERSION, kind.plural)

    # A watch event only wakes the request's reconciler, which reads the object afresh and
    # compares spec.cancelRequest, spec.suspendRequest and the generation itself. Kopf's
    # change-detecting handlers (on.create, on.update, on.field) would patch progress and
    # last-handled-configuration annotations on every change, and each such patch bumps the
    # resourceVersion that the reconciler's status writes are conditional on.
    @kopf.on.event(*resource, id="wake")
    def poke_request(name: str, namespace: str, type: str | None, **_: Any) -> None:
        if type == "DELETED":
            return
        try:
            context = runtime.context()
        except kopf.TemporaryError:
            return
        context.wakeups.poke((kind.plural, namespace, name))

    @kopf.daemon(*resource, id="reconcile", cancellation_timeout=5)
    async def reconcile_daemon(stopped: kopf.DaemonStopped, body: kopf.Body, logger: Any, **_: Any) -> None:
        await follow_request(kind, stopped, body, logger)

    @kopf.on.delete(*resource, id="cleanup")
    async def delete_children(body: kopf.Body, logger: Any, **_: Any) -> None:
        context = runtime.context()
        try:
            await cleanup(context, kind, body, logger)
        except ApiError as error:
            if error.temporary:
                raise kopf.TemporaryError(f"cleanup failed, retrying: {error}", delay=5) from error
            raise kopf.PermanentError(f"cleanup failed: {error}") from error
        context.wakeups.forget((kind.plural, body["metadata"]["namespace"], body["metadata"]["name"]))


for _kind in names.REQUEST_KINDS:
    _register(_kind)


@kopf.on.event("batch", "v1", "jobs", labels={names.LABEL_MANAGED_BY: names.MANAGED_BY})
def job_changed(body: kopf.Body, **_: Any) -> None:
    _poke_owner(body)


@kopf.on.event("", "v1", "pods", labels={names.LABEL_MANAGED_BY: names.MANAGED_BY})
def pod_changed(body: kopf.Body, **_: Any) -> None:
    _poke_owner(body)
