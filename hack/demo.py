"""The main job: fine-tune a real pre-trained model through the operator, end to end.

Brings up the local cluster, or uses a kube context named with --kube-context, and installs
the Helm chart. It registers all-MiniLM-L6-v2 as a pre-trained MLModel and creates two
consumers: alice may fine-tune the model, bob may not. Each applies one MLFineTuningRequest.
The demo shows bob's request refused and alice's running with live progress, and prints the
final report.
Exits 0 only when alice's request finished with every performance requirement met and bob's
was refused.

Usage: python hack/demo.py [--kube-context NAME] [--timeout SECONDS] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.cluster.localcluster import LocalCluster  # noqa: E402

CHART = REPO_ROOT / "helm" / "aiml-training-operator"
RELEASE = "aiml-training-operator"
OPERATOR_NAMESPACE = "aiml-system"
MODEL_NAMESPACE = "aiml-models"
CONSUMER_NAMESPACE = "aiml-demo"
MODEL_NAME = "all-minilm-l6-v2"
DATA_CONFIGMAP = "topics-data"
OUTPUT_CLAIM = "models"
AUTHORIZED = "alice"
UNAUTHORIZED = "bob"
CONSUMER_GROUP = "rapp-developers"


class DemoError(RuntimeError):
    """A demo step failed; the message names the step and the cause."""


@dataclass
class Kubectl:
    """kubectl and helm bound to one cluster, acting as the admin or as a named consumer."""

    kubectl_binary: str
    helm_binary: str
    kubeconfig: Path | None
    context: str | None
    user_kubeconfigs: dict[str, Path] = field(default_factory=dict)

    def _target(self, user: str | None) -> list[str]:
        if user and user in self.user_kubeconfigs:
            return [f"--kubeconfig={self.user_kubeconfigs[user]}"]
        target = []
        if self.kubeconfig:
            target.append(f"--kubeconfig={self.kubeconfig}")
        if self.context:
            target.append(f"--context={self.context}")
        if user:
            # Without a client certificate for the consumer, act as it by impersonation.
            target += [f"--as={user}", f"--as-group={CONSUMER_GROUP}"]
        return target

    def run(self, *args: str, user: str | None = None, input: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.kubectl_binary, *self._target(user), *args],
            input=input, capture_output=True, text=True, timeout=120,
        )
        if check and result.returncode != 0:
            raise DemoError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def apply(self, manifest: dict, user: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("apply", "-f", "-", user=user, input=json.dumps(manifest), check=check)

    def get(self, kind: str, name: str, namespace: str) -> dict | None:
        result = self.run("get", kind, name, "-n", namespace, "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        target = []
        if self.kubeconfig:
            target.append(f"--kubeconfig={self.kubeconfig}")
        if self.context:
            target.append(f"--kube-context={self.context}")
        result = subprocess.run([self.helm_binary, *target, *args], capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise DemoError(f"helm {' '.join(args)} failed: {result.stderr.strip()}")
        return result


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def connect(kube_context: str | None) -> tuple[Kubectl, LocalCluster | None]:
    """Bring up the local cluster, or bind to the kube context the user named explicitly."""
    local = LocalCluster()
    if kube_context is None:
        say("starting the local cluster (make cluster-up)")
        local.up()
        users = {name: local.user_kubeconfig(name) for name in (AUTHORIZED, UNAUTHORIZED)}
        return Kubectl(local.binary("kubectl"), local.binary("helm"), local.kubeconfig, None, users), local
    say(f"using kube context {kube_context}")
    kubeconfig = Path(os.environ["KUBECONFIG"]) if os.environ.get("KUBECONFIG") else None
    return Kubectl(local.binary("kubectl"), local.binary("helm"), kubeconfig, kube_context), None


def adopt_crds(kube: Kubectl) -> None:
    """Mark CRDs applied earlier without Helm (e.g. by kubectl) as owned by the release.

    Helm refuses to install over objects that another tool created; these labels and
    annotations are Helm's documented way to adopt them.
    """
    for path in sorted((REPO_ROOT / "crds").glob("*.yaml")):
        name = path.name.removesuffix(".yaml")
        if kube.get("customresourcedefinition", name, "default") is None:
            continue
        kube.run("label", "--overwrite", "customresourcedefinition", name, "app.kubernetes.io/managed-by=Helm")
        kube.run("annotate", "--overwrite", "customresourcedefinition", name,
                 f"meta.helm.sh/release-name={RELEASE}", f"meta.helm.sh/release-namespace={OPERATOR_NAMESPACE}")


def local_cluster_values(local: LocalCluster) -> list[str]:
    """Ports of the operator Pod for one local cluster.

    Pods of the local cluster share the host's network, so two clusters on one machine (the
    demo's and the tests') would both bind the same webhook port, and one cluster's API server
    would call the other cluster's operator. Each cluster gets ports derived from its own base.
    """
    webhook_port = local.ports.base + 20
    status_port = local.ports.base + 21
    return [
        f"webhook.port={webhook_port}",
        f"webhook.url=https://127.0.0.1:{webhook_port}",
        f"statusEndpoint.port={status_port}",
        f"statusEndpoint.url=http://127.0.0.1:{status_port}",
    ]


def install_chart(kube: Kubectl, local_cluster: LocalCluster | None, extra_values: list[str] | None = None) -> None:
    say(f"installing the Helm chart {CHART.name} as release {RELEASE} in {OPERATOR_NAMESPACE}")
    adopt_crds(kube)
    args = ["upgrade", "--install", RELEASE, str(CHART), "--namespace", OPERATOR_NAMESPACE, "--create-namespace",
            "--wait", "--timeout", "5m",
            # CRDs that were applied before with kubectl have fields owned by another manager.
            "--force-conflicts"]
    values = list(extra_values or [])
    if local_cluster is not None:
        args += ["--values", str(REPO_ROOT / "hack" / "demo-values-local.yaml")]
        values = local_cluster_values(local_cluster) + values
    for value in values:
        args += ["--set", value]
    kube.helm(*args)


def wait_for_webhook(kube: Kubectl, timeout: float = 120) -> None:
    """Wait until the admission webhook responds, probing with a server-side dry run."""
    request = request_manifest("webhook-probe")
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        result = kube.run("create", "--dry-run=server", "-f", "-", input=json.dumps(request), check=False)
        if result.returncode == 0:
            return
        last = result.stderr.strip()
        time.sleep(1)
    raise DemoError(f"the admission webhook did not respond within {timeout:.0f}s: {last}")


def ensure_namespace(kube: Kubectl, namespace: str, timeout: float = 120) -> None:
    """Create a namespace, first waiting out an earlier deletion of it that is still running."""
    deadline = time.monotonic() + timeout
    while True:
        existing = kube.get("namespace", namespace, "default")
        if existing is None or existing["status"].get("phase") != "Terminating":
            break
        if time.monotonic() > deadline:
            raise DemoError(f"namespace {namespace} is still terminating after {timeout:.0f}s")
        time.sleep(1)
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})


def prepare_namespaces_and_model(kube: Kubectl) -> None:
    for namespace in (MODEL_NAMESPACE, CONSUMER_NAMESPACE):
        ensure_namespace(kube, namespace)

    say(f"registering the pre-trained model {MODEL_NAMESPACE}/{MODEL_NAME} (all-MiniLM-L6-v2)")
    model = yaml.safe_load((REPO_ROOT / "examples" / "pretrained-model.yaml").read_text())
    model["metadata"]["namespace"] = MODEL_NAMESPACE
    kube.apply(model)

    say(f"loading the training data (examples/data/chatterbot/topics.csv) into ConfigMap {DATA_CONFIGMAP}")
    csv = (REPO_ROOT / "examples" / "data" / "chatterbot" / "topics.csv").read_text()
    kube.apply({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": DATA_CONFIGMAP, "namespace": CONSUMER_NAMESPACE},
        "data": {"topics.csv": csv},
    })
    kube.apply({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": OUTPUT_CLAIM, "namespace": CONSUMER_NAMESPACE},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    })


def grant_consumers(kube: Kubectl) -> None:
    """Both consumers may create requests and read data in aiml-demo and see the model catalogue.

    Only alice may fine-tune the model. Bob can read the MLModel (aiml-viewer), so admission
    accepts his request, and the operator's SubjectAccessReview for "finetune" refuses it.
    """
    say(f"granting {AUTHORIZED} and {UNAUTHORIZED} aiml-requester and view in {CONSUMER_NAMESPACE}; "
        f"only {AUTHORIZED} gets aiml-finetuner on the model, {UNAUTHORIZED} gets aiml-viewer")
    for user in (AUTHORIZED, UNAUTHORIZED):
        for role in ("aiml-requester", "view"):
            kube.apply(role_binding(f"{user}-{role}", CONSUMER_NAMESPACE, role, user))
    kube.apply(role_binding(f"{AUTHORIZED}-aiml-finetuner", MODEL_NAMESPACE, "aiml-finetuner", AUTHORIZED))
    kube.apply(role_binding(f"{UNAUTHORIZED}-aiml-viewer", MODEL_NAMESPACE, "aiml-viewer", UNAUTHORIZED))


def role_binding(name: str, namespace: str, cluster_role: str, user: str) -> dict:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }


def request_manifest(name: str) -> dict:
    """Return the example MLFineTuningRequest, pointed at the demo's model, data and output."""
    request = yaml.safe_load((REPO_ROOT / "examples" / "finetuning-request.yaml").read_text())
    request["metadata"] = {"name": name, "namespace": CONSUMER_NAMESPACE}
    spec = request["spec"]
    spec["mLModelRef"] = {"name": MODEL_NAME, "namespace": MODEL_NAMESPACE}
    spec["candidateTrainingDataSource"] = [f"configmap://{DATA_CONFIGMAP}/topics.csv"]
    spec["output"] = {"uri": f"pvc://{OUTPUT_CLAIM}/{name}", "modelName": f"{name}-model"}
    # One GPU, so that the Pod lands on a GPU node; the trainer uses CUDA when the node has it.
    spec["trainer"]["gpus"] = 1
    return request


def describe(request: dict) -> str:
    status = request.get("status") or {}
    process = status.get("process") or {}
    progress = process.get("progressStatus") or {}
    parts = [status.get("requestStatus", "NOT_STARTED")]
    if progress:
        parts.append(f"{progress.get('status', '?')} {progress.get('progressPercentage', 0)}%")
        if progress.get("progressStateInfo"):
            parts.append(progress["progressStateInfo"])
    if process.get("epoch") is not None and process.get("totalEpochs"):
        parts.append(f"epoch {process['epoch']}/{process['totalEpochs']}")
    if process.get("loss") is not None:
        parts.append(f"loss {process['loss']:.3f}")
    for metric, value in (process.get("interimMetrics") or {}).items():
        parts.append(f"{metric} {value:.3f}")
    if progress.get("resultStateInfo"):
        parts.append(f"({progress['resultStateInfo']})")
    return " | ".join(parts)


def condition(request: dict, kind: str) -> dict | None:
    return next((c for c in (request.get("status") or {}).get("conditions", []) if c["type"] == kind), None)


def is_refused(request: dict) -> bool:
    authorized = condition(request, "Authorized")
    return authorized is not None and authorized["status"] == "False"


def is_done(request: dict) -> bool:
    status = request.get("status") or {}
    failed = ((status.get("process") or {}).get("progressStatus") or {}).get("status") == "FAILED"
    return status.get("requestStatus") in ("FINISHED", "CANCELLED") or failed


def milestone(request: dict) -> tuple:
    """Return what must change before the demo prints a request again: state, step, epoch, tens of percent."""
    status = request.get("status") or {}
    process = status.get("process") or {}
    progress = process.get("progressStatus") or {}
    return (
        status.get("requestStatus"),
        progress.get("status"),
        progress.get("progressStateInfo"),
        progress.get("resultStateInfo"),
        process.get("epoch"),
        (progress.get("progressPercentage") or 0) // 10,
    )


def follow(kube: Kubectl, names: list[str], timeout: float) -> dict[str, dict]:
    """Print each request's state at every milestone until all are done or refused."""
    deadline = time.monotonic() + timeout
    last_milestone: dict[str, tuple] = {}
    last_line: dict[str, str] = {}
    latest: dict[str, dict] = {}
    while time.monotonic() < deadline:
        for name in names:
            request = kube.get("mlfinetuningrequests", name, CONSUMER_NAMESPACE)
            if request is None:
                continue
            latest[name] = request
            last_line[name] = describe(request)
            if milestone(request) != last_milestone.get(name):
                print(f"    [{name}] {last_line[name]}", flush=True)
                last_milestone[name] = milestone(request)
        if len(latest) == len(names) and all(is_done(r) or is_refused(r) for r in latest.values()):
            return latest
        time.sleep(1)
    raise DemoError(f"requests did not finish within {timeout:.0f}s: " + "; ".join(
        f"{name}: {line}" for name, line in last_line.items()))


def print_report(kube: Kubectl, request: dict) -> None:
    status = request["status"]
    report = status.get("report") or {}
    name = request["metadata"]["name"]
    print()
    print(f"Final report of MLFineTuningRequest {CONSUMER_NAMESPACE}/{name}")
    print(f"  requestStatus               {status.get('requestStatus')}")
    print(f"  aIMLInferenceName           {request['spec']['aIMLInferenceName']}")
    print(f"  pre-trained model           {MODEL_NAMESPACE}/{MODEL_NAME} (all-MiniLM-L6-v2)")
    trainable, total = report.get("trainableParameters"), report.get("totalParameters")
    if trainable is not None and total:
        print(f"  trainable parameters        {trainable:,} of {total:,} ({100 * trainable / total:.2f}%)")
    print(f"  device, precision           {report.get('device')}, {report.get('precision')}")
    print(f"  duration                    {report.get('durationSeconds', 0):.1f}s ({report.get('stopReason')})")
    print(f"  dataRatioTrainingAndValidation {report.get('dataRatioTrainingAndValidation')}% training")
    print("  modelPerformanceValidation:")
    for entry in report.get("modelPerformanceValidation", []):
        verdict = "met" if entry.get("requirementMet") else "NOT met"
        print(f"    {entry['performanceMetric']:<10} {entry['performanceScore']:.3f} "
              f"(required {entry.get('requiredScore')}: {verdict})")
    print(f"  modelConfidenceIndication   {report.get('modelConfidenceIndication')}")
    print(f"  adapter                     {report.get('artifactUri')} ({report.get('artifactFormat')})")
    generated = report.get("mLModelGeneratedRef") or {}
    print(f"  mLModelGeneratedRef         {generated.get('namespace')}/{generated.get('name')}")
    if generated:
        model = kube.get("mlmodels", generated["name"], generated.get("namespace", CONSUMER_NAMESPACE))
        if model:
            spec = model["spec"]
            base = spec.get("sourceTrainedMLModelRef") or {}
            print(f"    artifact                  {spec['artifact']['uri']} ({spec['artifact']['format']})")
            print(f"    sourceTrainedMLModelRef   {base.get('namespace')}/{base.get('name')}")


def verdict(requests: dict[str, dict], authorized: str, refused: str) -> list[str]:
    """Return what went wrong; empty when the demo succeeded."""
    problems = []
    good = requests.get(authorized)
    if good is None or (good.get("status") or {}).get("requestStatus") != "FINISHED":
        problems.append(f"{authorized}'s request did not finish: {describe(good or {})}")
    else:
        entries = (good["status"].get("report") or {}).get("modelPerformanceValidation", [])
        if not entries or not all(e.get("requirementMet") for e in entries):
            problems.append(f"{authorized}'s model misses a performance requirement: {entries}")
    bad = requests.get(refused)
    if bad is None or not is_refused(bad):
        problems.append(f"{refused}'s request was not refused: {describe(bad or {})}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kube-context", help="use this existing kube context instead of the local cluster")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for the requests (default 900)")
    parser.add_argument("--keep", action="store_true", help="keep the demo's requests for inspection")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.monotonic()

    try:
        kube, local = connect(args.kube_context)
        install_chart(kube, local)
        prepare_namespaces_and_model(kube)
        wait_for_webhook(kube)
        grant_consumers(kube)

        names = {AUTHORIZED: "topic-classifier", UNAUTHORIZED: "topic-classifier-bob"}
        for user, name in names.items():
            kube.run("delete", "mlfinetuningrequests", name, "-n", CONSUMER_NAMESPACE, "--ignore-not-found",
                     "--wait=true", check=False)
        for user, name in names.items():
            say(f"{user} applies MLFineTuningRequest {CONSUMER_NAMESPACE}/{name}")
            kube.apply(request_manifest(name), user=user)

        say("following the requests (status written by the operator from the trainer's progress events)")
        requests = follow(kube, list(names.values()), args.timeout)
        by_user = {user: requests[name] for user, name in names.items()}

        refusal = condition(by_user[UNAUTHORIZED], "Authorized")
        if refusal:
            print(f"\n{UNAUTHORIZED}'s request was refused: {refusal.get('reason')}: {refusal.get('message')}")
        print_report(kube, by_user[AUTHORIZED])
        problems = verdict(by_user, AUTHORIZED, UNAUTHORIZED)
    except DemoError as error:
        print(f"\ndemo failed: {error}", file=sys.stderr)
        return 1

    print(f"\ndemo took {time.monotonic() - started:.0f}s")
    if problems:
        for problem in problems:
            print(f"demo failed: {problem}", file=sys.stderr)
        return 1
    print("demo succeeded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
