"""The product end to end: Helm install, a real fine-tuning request, a refused one, uninstall.

The chart's operator runs as a Pod of the local cluster, the trainer image maps to the real
trainer, and the request fine-tunes all-MiniLM-L6-v2 with LoRA on the chatterbot topics.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from tests.cluster.localcluster import REPO_ROOT

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def load_demo():
    spec = importlib.util.spec_from_file_location("aiml_demo", REPO_ROOT / "hack" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["aiml_demo"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def demo():
    return load_demo()


@pytest.fixture
def installed(cluster, demo):
    users = {name: cluster.user_kubeconfig(name) for name in (demo.AUTHORIZED, demo.UNAUTHORIZED)}
    kube = demo.Kubectl(cluster.local.binary("kubectl"), cluster.local.binary("helm"), cluster.kubeconfig, None, users)
    demo.install_chart(kube, cluster.local)
    yield kube
    # Uninstall even when the test failed, so that no operator outlives this test.
    for namespace in (demo.CONSUMER_NAMESPACE, demo.MODEL_NAMESPACE):
        kube.run("delete", "mlfinetuningrequests", "--all", "-n", namespace, "--wait=true", "--timeout=120s", check=False)
    releases = kube.helm("list", "--namespace", demo.OPERATOR_NAMESPACE, "--short").stdout.split()
    if demo.RELEASE in releases:
        kube.helm("uninstall", demo.RELEASE, "--namespace", demo.OPERATOR_NAMESPACE, "--wait")
    for namespace in (demo.CONSUMER_NAMESPACE, demo.MODEL_NAMESPACE):
        kube.run("delete", "namespace", namespace, "--wait=false", check=False)


def managed_objects(kube, kind: str) -> list[str]:
    result = kube.run("get", kind, "-A", "-l", "app.kubernetes.io/managed-by=aiml-operator", "-o", "json")
    return [f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in json.loads(result.stdout)["items"]]


def test_finetune_through_helm_release(installed, demo):
    kube = installed
    demo.prepare_namespaces_and_model(kube)
    demo.wait_for_webhook(kube)
    demo.grant_consumers(kube)

    names = {demo.AUTHORIZED: "e2e-topic-classifier", demo.UNAUTHORIZED: "e2e-topic-classifier-bob"}
    for user, name in names.items():
        kube.apply(demo.request_manifest(name), user=user)

    requests = demo.follow(kube, list(names.values()), timeout=900)
    good = requests[names[demo.AUTHORIZED]]
    refused = requests[names[demo.UNAUTHORIZED]]

    assert demo.verdict({demo.AUTHORIZED: good, demo.UNAUTHORIZED: refused}, demo.AUTHORIZED, demo.UNAUTHORIZED) == []
    assert good["status"]["requestStatus"] == "FINISHED"
    report = good["status"]["report"]
    assert report["trainableParameters"] < 0.05 * report["totalParameters"]
    assert report["artifactFormat"] == "PEFT_ADAPTER"
    assert all(entry["requirementMet"] for entry in report["modelPerformanceValidation"])
    assert good["metadata"]["annotations"]["aiml.mns.io/requester-username"] == demo.AUTHORIZED

    generated = report["mLModelGeneratedRef"]
    model = kube.get("mlmodels", generated["name"], generated["namespace"])
    assert model["spec"]["sourceTrainedMLModelRef"]["name"] == demo.MODEL_NAME
    assert model["spec"]["artifact"]["format"] == "PEFT_ADAPTER"

    assert demo.condition(refused, "Authorized")["status"] == "False"
    refused_jobs = kube.run("get", "jobs", "-n", demo.CONSUMER_NAMESPACE, "-l",
                            f"aiml.mns.io/request-name={names[demo.UNAUTHORIZED]}", "-o", "name").stdout
    assert refused_jobs.strip() == ""

    for name in names.values():
        kube.run("delete", "mlfinetuningrequests", name, "-n", demo.CONSUMER_NAMESPACE, "--wait=true", "--timeout=120s")
    kube.helm("uninstall", demo.RELEASE, "--namespace", demo.OPERATOR_NAMESPACE, "--wait")

    assert managed_objects(kube, "jobs") == []
    assert managed_objects(kube, "configmaps") == []
    for kind in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
        leftover = kube.run("get", kind, "-o", "name").stdout
        assert "aiml-training-operator" not in leftover, leftover
    crds = kube.run("get", "crd", "-o", "name").stdout
    assert "mlfinetuningrequests.aiml.mns.io" in crds, "CRDs are kept on uninstall so that no user data is lost"
