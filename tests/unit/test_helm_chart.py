"""The Helm chart renders the objects a platform team expects, for default and custom values."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.cluster.localcluster import REPO_ROOT, LocalCluster

CHART = REPO_ROOT / "helm" / "aiml-training-operator"


@pytest.fixture(scope="module")
def helm() -> str:
    return LocalCluster().binary("helm")


def render(helm: str, *values: str) -> list[dict]:
    args = [helm, "template", "aiml-training-operator", str(CHART), "--namespace", "aiml-system"]
    for value in values:
        args += ["--set", value]
    result = subprocess.run(args, capture_output=True, text=True, check=True)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(objects: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def env_of(deployment: dict) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {item["name"]: item.get("value") for item in container["env"]}


def test_lint_clean(helm):
    result = subprocess.run([helm, "lint", str(CHART), "--strict"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_crds_come_from_generated_folder(helm):
    crds = find(render(helm), "CustomResourceDefinition")
    rendered = {c["metadata"]["name"]: c for c in crds}
    generated = {p.name.removesuffix(".yaml"): yaml.safe_load(p.read_text()) for p in (REPO_ROOT / "crds").glob("*.yaml")}

    assert set(rendered) == set(generated)
    assert len(rendered) == 3
    for name, crd in rendered.items():
        assert crd["spec"] == generated[name]["spec"]
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_default_deployment(helm):
    objects = render(helm)
    deployment = find(objects, "Deployment")[0]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]

    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "Recreate"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"

    env = env_of(deployment)
    assert env["AIML_GPU_RESOURCE_NAME"] == "nvidia.com/gpu"
    assert env["AIML_WEBHOOK_MODE"] == "service"
    assert env["AIML_WEBHOOK_SERVICE_NAMESPACE"] == "aiml-system"
    assert env["AIML_PROGRESS_ENDPOINT_URL"] == "http://aiml-training-operator.aiml-system.svc:8080"
    assert env["AIML_WEBHOOK_CONFIGURATION_NAME"] == ""
    assert env["AIML_AUTHORIZATION_GRACE_SECONDS"] == "300"
    assert "AIML_DEFAULT_QUEUE_NAME" not in env


def test_default_webhooks_use_generated_certificate(helm):
    objects = render(helm)
    secret = find(objects, "Secret")[0]
    assert set(secret["data"]) == {"ca.crt", "tls.crt", "tls.key"}

    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        configuration = find(objects, kind)[0]
        assert len(configuration["webhooks"]) == 2
        for webhook in configuration["webhooks"]:
            assert webhook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
            assert webhook["clientConfig"]["service"]["name"] == "aiml-training-operator"
            assert webhook["failurePolicy"] == "Fail"
            assert webhook["sideEffects"] == "None"

    mutating = find(objects, "MutatingWebhookConfiguration")[0]
    assert [w["clientConfig"]["service"]["path"] for w in mutating["webhooks"]] == [
        "/record-requester-mltrainingrequests",
        "/record-requester-mlfinetuningrequests",
    ]
    assert all(w["rules"][0]["operations"] == ["CREATE"] for w in mutating["webhooks"])


def test_cert_manager_values(helm):
    objects = render(helm, "webhook.certManager.enabled=true")

    assert not find(objects, "Secret")
    certificate = find(objects, "Certificate")[0]
    assert certificate["spec"]["secretName"] == "aiml-training-operator-webhook-tls"
    assert "aiml-training-operator.aiml-system.svc" in certificate["spec"]["dnsNames"]
    assert find(objects, "Issuer")[0]["spec"] == {"selfSigned": {}}
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        configuration = find(objects, kind)[0]
        assert configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
            "aiml-system/aiml-training-operator-webhook"
        )
        assert all("caBundle" not in w["clientConfig"] for w in configuration["webhooks"])


def test_kueue_gpu_and_tolerations_values(helm):
    objects = render(
        helm,
        "kueue.enabled=true",
        "kueue.defaultQueueName=team-a",
        "trainer.gpuResourceName=amd.com/gpu",
        "trainer.tolerations[0].key=dedicated",
        "trainer.tolerations[0].operator=Equal",
        "trainer.tolerations[0].value=ml",
        "trainer.tolerations[0].effect=NoSchedule",
        "trainer.nodeSelector.pool=gpu-a100",
    )
    env = env_of(find(objects, "Deployment")[0])

    assert env["AIML_DEFAULT_QUEUE_NAME"] == "team-a"
    assert env["AIML_GPU_RESOURCE_NAME"] == "amd.com/gpu"
    assert json.loads(env["AIML_DEFAULT_TOLERATIONS"]) == [
        {"effect": "NoSchedule", "key": "dedicated", "operator": "Equal", "value": "ml"}
    ]
    assert json.loads(env["AIML_DEFAULT_NODE_SELECTOR"]) == {"pool": "gpu-a100"}


def test_webhook_url_mode(helm):
    objects = render(helm, "webhook.url=https://127.0.0.1:9443")
    validating = find(objects, "ValidatingWebhookConfiguration")[0]
    urls = [w["clientConfig"]["url"] for w in validating["webhooks"]]
    assert urls == ["https://127.0.0.1:9443/check-mltrainingrequests", "https://127.0.0.1:9443/check-mlfinetuningrequests"]
    assert all("service" not in w["clientConfig"] for w in validating["webhooks"])


def test_consumer_roles_grant_custom_verbs(helm):
    roles = {r["metadata"]["name"]: r for r in find(render(helm), "ClusterRole")}

    assert "finetune" in roles["aiml-finetuner"]["rules"][0]["verbs"]
    assert "retrain" in roles["aiml-retrainer"]["rules"][0]["verbs"]
    assert roles["aiml-requester"]["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert roles["aiml-viewer"]["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"


def test_operator_role_least_privilege(helm):
    role = find(render(helm), "ClusterRole", "aiml-training-operator")[0]
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}

    assert ("batch", "jobs", "create") in granted
    assert ("authorization.k8s.io", "subjectaccessreviews", "create") in granted
    assert ("authentication.k8s.io", "tokenreviews", "create") in granted
    assert not any(verb in ("*", "escalate", "bind", "impersonate") for _, _, verb in granted)
    assert not any(resource in ("secrets", "*") for _, resource, _ in granted)
    assert not any(resource == "mlmodels" and verb == "delete" for _, resource, verb in granted)


def test_schema_rejects_bad_values(helm):
    for value in ("operator.replicas=2", "trainer.pullPolicy=Sometimes", "webhook.url=http://insecure", "operator.authorizationGraceSeconds=-1"):
        result = subprocess.run(
            [helm, "template", "aiml", str(CHART), "--set", value], capture_output=True, text=True
        )
        assert result.returncode != 0, value
        assert "values don't meet the specifications" in result.stderr or "schema" in result.stderr.lower(), result.stderr


def test_argocd_health_check_shipped():
    script = (CHART / "files" / "argocd-health.lua").read_text()
    assert 'hs.status = "Degraded"' in script
    assert "observedGeneration" in script


def test_authorization_grace_value(helm):
    deployment = find(render(helm, "operator.authorizationGraceSeconds=45"), "Deployment")[0]
    assert env_of(deployment)["AIML_AUTHORIZATION_GRACE_SECONDS"] == "45"


def test_trainer_images_required(helm):
    for value in ("trainer.images=null", "trainer.images={}"):
        result = subprocess.run(
            [helm, "template", "aiml-training-operator", str(CHART), "--set", value], capture_output=True, text=True
        )
        assert result.returncode != 0, value
        assert "trainer" in result.stderr, result.stderr
        assert "images" in result.stderr, result.stderr


def test_operator_may_list_events(helm):
    role = find(render(helm), "ClusterRole", "aiml-training-operator")[0]
    event_rules = [rule for rule in role["rules"] if "events" in rule["resources"]]
    assert event_rules
    assert "list" in event_rules[0]["verbs"]
