"""helm upgrade brings new CRD schemas, so new status fields persist instead of being pruned.

Helm installs the files of a chart's crds/ folder once and never upgrades them. The chart
therefore renders the CRDs as templates. This test installs a previous chart version whose
CRD lacks a status field, shows the API server pruning that field, upgrades to the current
chart and shows the field persisting.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.cluster.localcluster import REPO_ROOT
from tests.conftest import wait_for

pytestmark = pytest.mark.cluster

CHART = REPO_ROOT / "helm" / "aiml-training-operator"
RELEASE = "aiml-training-operator"
RELEASE_NAMESPACE = "aiml-system"
CRD_NAME = "mlfinetuningrequests.aiml.mns.io"
# Chart values that keep the release inert: no operator Pod and no webhooks that would act on
# other tests' requests.
INERT_VALUES = ["operator.replicas=0", "webhook.enabled=false"]


def previous_chart(tmp_path: Path) -> Path:
    """Copy the chart as version 0.0.9, whose MLFineTuningRequest CRD lacks report.stopReason."""
    old = tmp_path / "aiml-training-operator"
    shutil.copytree(CHART, old, symlinks=False)
    chart = yaml.safe_load((old / "Chart.yaml").read_text())
    chart["version"] = "0.0.9"
    (old / "Chart.yaml").write_text(yaml.safe_dump(chart))

    crd_path = old / "files" / "crds" / f"{CRD_NAME}.yaml"
    crd = yaml.safe_load(crd_path.read_text())
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    del status["properties"]["report"]["properties"]["stopReason"]
    crd_path.write_text(yaml.safe_dump(crd))
    return old


def helm(cluster, *args: str) -> str:
    result = subprocess.run([cluster.local.binary("helm"), f"--kubeconfig={cluster.kubeconfig}", *args],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"helm {' '.join(args)} failed: {result.stderr}"
    return result.stdout


def adopt_crds(cluster) -> None:
    """Mark CRDs that other tests applied with kubectl as owned by the release."""
    for path in (REPO_ROOT / "crds").glob("*.yaml"):
        name = path.name.removesuffix(".yaml")
        if cluster.kubectl("get", "crd", name, check=False).returncode != 0:
            continue
        cluster.kubectl("label", "--overwrite", "crd", name, "app.kubernetes.io/managed-by=Helm")
        cluster.kubectl("annotate", "--overwrite", "crd", name,
                        f"meta.helm.sh/release-name={RELEASE}", f"meta.helm.sh/release-namespace={RELEASE_NAMESPACE}")


def request_manifest(namespace: str) -> dict:
    request = yaml.safe_load((REPO_ROOT / "examples" / "finetuning-request.yaml").read_text())
    request["metadata"] = {"name": "crd-upgrade", "namespace": namespace}
    return request


def write_stop_reason(cluster, namespace: str) -> dict:
    """Patch status.report.stopReason and return the stored status as read back."""
    patch = {"status": {"requestStatus": "FINISHED", "report": {"stopReason": "REQUIREMENTS_MET"}}}
    cluster.kubectl("patch", "mlfinetuningrequest", "crd-upgrade", "-n", namespace, "--subresource=status",
                    "--type=merge", "-p", json.dumps(patch))
    stored = cluster.kubectl_json("get", "mlfinetuningrequest", "crd-upgrade", "-n", namespace)
    return stored.get("status") or {}


def served_schema_has_stop_reason(cluster) -> bool:
    crd = cluster.kubectl_json("get", "crd", CRD_NAME)
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    return "stopReason" in status["properties"]["report"]["properties"]


@pytest.fixture
def release(cluster):
    yield
    releases = helm(cluster, "list", "--namespace", RELEASE_NAMESPACE, "--short").split()
    if RELEASE in releases:
        helm(cluster, "uninstall", RELEASE, "--namespace", RELEASE_NAMESPACE, "--wait")
    # Leave the current CRDs in place for the tests that follow.
    cluster.kubectl("apply", "-f", str(REPO_ROOT / "crds"))


def test_upgrade_adds_status_field(cluster, namespace, tmp_path, release):
    values = [arg for value in INERT_VALUES for arg in ("--set", value)]
    adopt_crds(cluster)

    helm(cluster, "upgrade", "--install", RELEASE, str(previous_chart(tmp_path)), "--namespace", RELEASE_NAMESPACE,
         "--create-namespace", "--wait", "--force-conflicts", *values)
    assert not served_schema_has_stop_reason(cluster)

    cluster.kubectl("apply", "-f", "-", input=json.dumps(request_manifest(namespace)))
    pruned = write_stop_reason(cluster, namespace)
    assert pruned.get("requestStatus") == "FINISHED"
    assert "stopReason" not in (pruned.get("report") or {}), "the old schema should prune the undeclared field"

    helm(cluster, "upgrade", RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE, "--wait", "--force-conflicts",
         *values)
    wait_for(lambda: served_schema_has_stop_reason(cluster), timeout=30, message="the upgraded CRD schema")

    kept = write_stop_reason(cluster, namespace)
    assert kept["report"]["stopReason"] == "REQUIREMENTS_MET"
    crd = cluster.kubectl_json("get", "crd", CRD_NAME)
    assert crd["metadata"]["labels"]["helm.sh/chart"] == "aiml-training-operator-0.1.0"
