"""Local volume provisioner: one host directory per PersistentVolumeClaim.

For every claim without a volume the provisioner creates a hostPath PersistentVolume at
``<state dir>/volumes/pvc/<namespace>/<claim>`` whose claimRef names the claim, and the
PersistentVolume controller binds the two. Only then can the scheduler place Pods that use
the claim. The volumes use the Retain policy because the controller has no deleter for
hostPath; the provisioner itself deletes a Released volume and its directory.
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path
from typing import Any

from kubernetes.client.rest import ApiException

from tests.cluster.node_agent.kube import Kube, list_and_watch

Obj = dict[str, Any]
log = logging.getLogger("node_agent.provisioner")

PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
PROVISIONER_NAME = "node-agent.aiml.mns.io/local"


def claim_directory(state_dir: Path, namespace: str, claim: str) -> Path:
    return state_dir / "volumes" / "pvc" / namespace / claim


def volume_for_claim(pvc: Obj, directory: Path) -> Obj:
    """Build the PersistentVolume that satisfies ``pvc`` from ``directory``."""
    metadata, spec = pvc["metadata"], pvc.get("spec") or {}
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
    volume: Obj = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": f"pvc-{metadata['uid']}",
            "annotations": {PROVISIONED_BY: PROVISIONER_NAME},
            "labels": {"aiml.mns.io/claim-namespace": metadata["namespace"]},
        },
        "spec": {
            "capacity": {"storage": storage},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "hostPath": {"path": str(directory), "type": "DirectoryOrCreate"},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": metadata["namespace"],
                "name": metadata["name"],
                "uid": metadata["uid"],
            },
        },
    }
    if spec.get("storageClassName"):
        volume["spec"]["storageClassName"] = spec["storageClassName"]
    return volume


def needs_volume(pvc: Obj) -> bool:
    spec = pvc.get("spec") or {}
    return not spec.get("volumeName") and not pvc["metadata"].get("deletionTimestamp") and not spec.get("dataSource")


class Provisioner:
    """Watches claims and creates volumes; watches volumes and deletes Released ones."""

    def __init__(self, kube: Kube, state_dir: Path, stop: threading.Event) -> None:
        self.kube = kube
        self.state_dir = state_dir
        self.stop = stop

    def start(self) -> None:
        threading.Thread(target=self._watch_claims, name="provisioner-claims", daemon=True).start()
        threading.Thread(target=self._watch_volumes, name="provisioner-volumes", daemon=True).start()

    def _watch_claims(self) -> None:
        self._forever(self.kube.core.list_persistent_volume_claim_for_all_namespaces, self._on_claim)

    def _watch_volumes(self) -> None:
        self._forever(self.kube.core.list_persistent_volume, self._on_volume)

    def _forever(self, list_call, handle) -> None:
        while not self.stop.is_set():
            try:
                for kind, obj in list_and_watch(list_call, self.stop.is_set):
                    if kind == "RESYNC":
                        for item in obj["items"]:
                            handle(item)
                    elif kind != "DELETED":
                        handle(obj)
            except Exception as error:  # noqa: BLE001 - keep watching after connection errors
                log.warning("watch failed, restarting", extra={"resource": list_call.__name__, "error": repr(error)})
                self.stop.wait(2)

    def _on_claim(self, pvc: Obj) -> None:
        if not needs_volume(pvc):
            return
        metadata = pvc["metadata"]
        directory = claim_directory(self.state_dir, metadata["namespace"], metadata["name"])
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o777)
        try:
            self.kube.core.create_persistent_volume(volume_for_claim(pvc, directory))
        except ApiException as error:
            if error.status == 409:
                return
            log.warning("volume creation failed", extra={"claim": f"{metadata['namespace']}/{metadata['name']}", "error": f"{error.status} {error.reason}"})
            return
        log.info("volume provisioned", extra={"claim": f"{metadata['namespace']}/{metadata['name']}",
                                              "event": "ProvisioningSucceeded", "path": str(directory)})

    def _on_volume(self, pv: Obj) -> None:
        annotations = pv["metadata"].get("annotations") or {}
        phase = (pv.get("status") or {}).get("phase")
        if annotations.get(PROVISIONED_BY) != PROVISIONER_NAME or phase not in ("Released", "Failed"):
            return
        path = Path(pv["spec"]["hostPath"]["path"])
        try:
            self.kube.core.delete_persistent_volume(pv["metadata"]["name"])
        except ApiException as error:
            if error.status != 404:
                log.warning("volume deletion failed", extra={"volume": pv["metadata"]["name"], "error": f"{error.status} {error.reason}"})
                return
        if path.is_relative_to(self.state_dir) and not self._claim_recreated(pv["spec"].get("claimRef") or {}):
            shutil.rmtree(path, ignore_errors=True)
        log.info("released volume deleted", extra={"volume": pv["metadata"]["name"], "event": "VolumeDeleted", "path": str(path)})

    def _claim_recreated(self, claim_ref: Obj) -> bool:
        """Tell whether a new claim with the same name now uses the directory of a released one."""
        try:
            pvc = self.kube.core.read_namespaced_persistent_volume_claim(claim_ref.get("name", ""), claim_ref.get("namespace", ""))
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return pvc.metadata.uid != claim_ref.get("uid")
