"""Kubernetes API access of the node agent: typed client calls reduced to wire-form dicts.

Everything else in the agent works on dictionaries in their JSON form (camelCase), the
same shape the watch stream delivers, so this module is the only one that deals with the
generated client models.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlparse

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines

from tests.cluster.node_agent.env import config_map_values, decode_secret_data

Obj = dict[str, Any]
log = logging.getLogger("node_agent.kube")

WATCH_TIMEOUT_SECONDS = 240


class Kube:
    """The node agent's API client: reads, status writes, token requests, watches."""

    def __init__(self, kubeconfig: str) -> None:
        configuration = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        configuration.connection_pool_maxsize = 32
        self.configuration = configuration
        self.api_client = client.ApiClient(configuration)
        self.core = client.CoreV1Api(self.api_client)
        self.coordination = client.CoordinationV1Api(self.api_client)
        self.version = client.VersionApi(self.api_client)

    @property
    def server(self) -> tuple[str, int]:
        """Return the API server's host and port, for the Pods' KUBERNETES_SERVICE_* variables."""
        url = urlparse(self.configuration.host)
        return url.hostname or "127.0.0.1", url.port or 443

    def to_dict(self, model: Any) -> Obj:
        return self.api_client.sanitize_for_serialization(model)

    # -- reads used by Pod volumes and environment ------------------------------------------

    def config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        try:
            return config_map_values(self.to_dict(self.core.read_namespaced_config_map(name, namespace)))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def secret(self, namespace: str, name: str) -> dict[str, str] | None:
        try:
            return decode_secret_data(self.to_dict(self.core.read_namespaced_secret(name, namespace)))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def claim_path(self, namespace: str, claim: str) -> str | None:
        """Return the host path of the PersistentVolume bound to a claim; None while unbound."""
        try:
            pvc = self.core.read_namespaced_persistent_volume_claim(claim, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        if not pvc.spec.volume_name or (pvc.status and pvc.status.phase != "Bound"):
            return None
        pv = self.core.read_persistent_volume(pvc.spec.volume_name)
        if pv.spec.host_path is not None:
            return pv.spec.host_path.path
        if pv.spec.local is not None:
            return pv.spec.local.path
        return None

    def issue_token(self, pod: Obj, audience: str | None, expiration_seconds: int) -> str:
        """Request a ServiceAccount token bound to ``pod`` (TokenRequest API)."""
        metadata = pod["metadata"]
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=[audience] if audience else [],
                expiration_seconds=expiration_seconds,
                bound_object_ref=client.V1BoundObjectReference(
                    api_version="v1", kind="Pod", name=metadata["name"], uid=metadata["uid"]
                ),
            )
        )
        service_account = pod["spec"].get("serviceAccountName") or "default"
        response = self.core.create_namespaced_service_account_token(service_account, metadata["namespace"], request)
        return response.status.token

    # -- writes -----------------------------------------------------------------------------

    def patch_pod_status(self, namespace: str, name: str, status: Obj) -> None:
        self.core.patch_namespaced_pod_status(
            name, namespace, {"status": status}, _content_type="application/merge-patch+json"
        )

    def delete_pod_now(self, namespace: str, name: str, uid: str) -> None:
        """Delete a Pod with grace period 0 and a uid precondition, as the kubelet's final step."""
        options = client.V1DeleteOptions(grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid))
        try:
            self.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0, body=options)
        except ApiException as error:
            if error.status not in (404, 409):
                raise


def list_and_watch(
    list_call: Callable[..., Any],
    stop: Callable[[], bool],
    **kwargs: Any,
) -> Iterator[tuple[str, Obj]]:
    """Yield ("RESYNC", {"items": [...]}) for a full list, then watch events; list again after 410 Gone.

    A watch that ends normally resumes from the last resourceVersion seen. When the server
    returns 410 Gone (the resourceVersion is too old) the loop lists again instead of
    retrying the stale version. ``stop`` is checked between events.
    """
    while not stop():
        response = list_call(_preload_content=False, **kwargs)
        listing = json.loads(response.data)
        resource_version = listing["metadata"]["resourceVersion"]
        yield "RESYNC", {"items": listing.get("items") or []}

        while not stop():
            try:
                stream = list_call(
                    watch=True,
                    resource_version=resource_version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=WATCH_TIMEOUT_SECONDS,
                    _preload_content=False,
                    _request_timeout=(10, WATCH_TIMEOUT_SECONDS + 30),
                    **kwargs,
                )
            except ApiException as error:
                if error.status == 410:
                    break
                raise
            expired = False
            try:
                for line in iter_resp_lines(stream):
                    if not line:
                        continue
                    if stop():
                        return
                    event = json.loads(line)
                    kind, obj = event["type"], event["object"]
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            expired = True
                            break
                        raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                    resource_version = obj["metadata"]["resourceVersion"]
                    if kind != "BOOKMARK":
                        yield kind, obj
            finally:
                stream.release_conn()
            if expired:
                log.info("watch resourceVersion expired, listing again", extra={"resource": list_call.__name__})
                break
