"""A small asynchronous Kubernetes client that speaks plain JSON dictionaries.

The operator's pure modules take and return plain dictionaries shaped like the API
objects, so this client sends and returns exactly those, instead of the generated model
classes of ``kubernetes_asyncio``. Authentication, TLS and kubeconfig handling still come
from ``kubernetes_asyncio``. Every failure is an ``ApiError`` with the HTTP status and
the API server's message, so callers can tell 404 (gone), 409 (exists or conflict) and
403 (forbidden, e.g. by a ResourceQuota) apart.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config

from . import names

MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    """Failed API call: HTTP status (0 when the server could not be reached), reason and message."""

    def __init__(self, status: int, reason: str, message: str, method: str = "", path: str = "") -> None:
        super().__init__(f"{method} {path}: {status} {reason}: {message}".strip())
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def temporary(self) -> bool:
        """Tell whether a retry may succeed without a change (server errors, throttling, no connection)."""
        return self.status in (0, 408, 429) or self.status >= 500


def _status_message(text: str) -> tuple[str, str]:
    try:
        status = json.loads(text)
    except json.JSONDecodeError:
        return "", text[:500]
    if not isinstance(status, dict):
        return "", text[:500]
    return str(status.get("reason") or ""), str(status.get("message") or text[:500])


class Kube:
    """JSON calls against the API server, with paths spelled as in the API reference."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client

    @classmethod
    async def connect(cls) -> Kube:
        """Connect with the in-cluster ServiceAccount, else with ``$KUBECONFIG`` or ``~/.kube/config``."""
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
            config.load_incluster_config()
        else:
            await config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
        return cls(client.ApiClient())

    async def close(self) -> None:
        await self.api_client.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            response = await self.api_client.call_api(
                path,
                method,
                query_params=dict(query or {}),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=30,
            )
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
            raise ApiError(0, type(error).__name__, str(error) or "connection failed", method, path) from error
        try:
            text = await response.text()
        finally:
            response.release()
        if not 200 <= response.status < 300:
            reason, message = _status_message(text)
            raise ApiError(response.status, reason or response.reason or "", message, method, path)
        return json.loads(text) if text else {}

    # Paths of the objects the operator touches.

    @staticmethod
    def custom_path(namespace: str, plural: str, name: str | None = None, subresource: str | None = None) -> str:
        path = f"/apis/{names.GROUP}/{names.VERSION}/namespaces/{namespace}/{plural}"
        if name:
            path += f"/{name}"
        if subresource:
            path += f"/{subresource}"
        return path

    @staticmethod
    def core_path(namespace: str, resource: str, name: str | None = None) -> str:
        path = f"/api/v1/namespaces/{namespace}/{resource}"
        return f"{path}/{name}" if name else path

    @staticmethod
    def job_path(namespace: str, name: str | None = None) -> str:
        path = f"/apis/batch/v1/namespaces/{namespace}/jobs"
        return f"{path}/{name}" if name else path

    async def get_or_none(self, path: str) -> dict[str, Any] | None:
        try:
            return await self.request("GET", path)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def create_or_get(self, collection_path: str, body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create an object; on 409 return the existing one. The flag is True when this call created it."""
        try:
            return await self.request("POST", collection_path, body=dict(body)), True
        except ApiError as error:
            if error.status != 409:
                raise
        existing = await self.get_or_none(f"{collection_path}/{body['metadata']['name']}")
        if existing is None:
            raise ApiError(409, "Conflict", f"{body['metadata']['name']} exists but could not be read back", "POST", collection_path)
        return existing, False

    async def delete_if_exists(self, path: str, propagation: str = "Background") -> bool:
        """Delete an object; return False when it was already gone."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        try:
            await self.request("DELETE", path, body=body)
        except ApiError as error:
            if error.status == 404:
                return False
            raise
        return True

    async def merge_patch(self, path: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("PATCH", path, body=dict(patch), content_type=MERGE_PATCH)

    async def list_items(self, path: str, label_selector: str, field_selector: str = "") -> list[dict[str, Any]]:
        query = {"labelSelector": label_selector}
        if field_selector:
            query["fieldSelector"] = field_selector
        result = await self.request("GET", path, query=query)
        return list(result.get("items") or [])

    async def create_review(self, review: Mapping[str, Any]) -> dict[str, Any]:
        """Send a SubjectAccessReview, TokenReview or SelfSubjectReview and return it with its status."""
        group_version = review["apiVersion"]
        plural = review["kind"].lower() + "s"
        return await self.request("POST", f"/apis/{group_version}/{plural}", body=dict(review))
