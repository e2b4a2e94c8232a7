"""The operator against the local cluster: the happy path of both request kinds."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.conftest import wait_for
from tests.integration.operator_harness import (  # noqa: F401  (fixtures)
    apply,
    condition,
    crds,
    events_for,
    fine_tuning_request,
    get,
    list_jobs,
    operator,
    prepare_namespace,
    request_status,
    training_request,
    wait_request_status,
)

pytestmark = pytest.mark.cluster


def job_of(cluster, namespace, plural, name):
    status = request_status(cluster, plural, name, namespace)
    job_name = ((status.get("process") or {}).get("jobRef") or {}).get("name")
    return get(cluster, "job", job_name, namespace) if job_name else None


def check_job_spec(job, request, namespace, plural):
    """Check the fields of the Job the operator built for ``request``."""
    metadata = job["metadata"]
    assert len(metadata["name"]) <= 63
    assert metadata["labels"]["aiml.mns.io/request-uid"] == request["metadata"]["uid"]
    assert metadata["ownerReferences"][0]["uid"] == request["metadata"]["uid"]
    assert metadata["ownerReferences"][0]["controller"] is True
    spec = job["spec"]
    assert spec["backoffLimit"] == request["spec"].get("terminationConditions", {}).get("backoffLimit", 2)
    assert spec["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [78]
    assert spec["podFailurePolicy"]["rules"][0]["action"] == "FailJob"
    pod_spec = spec["template"]["spec"]
    assert pod_spec["automountServiceAccountToken"] is False
    assert pod_spec["restartPolicy"] == "Never"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod_spec["tolerations"]
    container = pod_spec["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["image"] == request["spec"]["trainer"]["image"]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    volumes = {volume["name"]: volume for volume in pod_spec["volumes"]}
    audience = volumes["progress-token"]["projected"]["sources"][0]["serviceAccountToken"]["audience"]
    assert audience == f"aiml.mns.io/progress/{namespace}/{plural}/{request['metadata']['name']}"
    assert volumes["scratch"]["emptyDir"] == {}


def run_happy_path(cluster, operator, namespace, body, plural):
    created = json.loads(apply(cluster, body, user="alice").stdout)
    name = created["metadata"]["name"]
    assert created["metadata"]["annotations"]["aiml.mns.io/requester-username"] == "alice"

    job = wait_for(lambda: job_of(cluster, namespace, plural, name), timeout=60, message="the trainer Job")
    check_job_spec(job, created, namespace, plural)
    config_map = get(cluster, "configmap", job["metadata"]["name"] + "-config", namespace)
    assert config_map is not None
    config = json.loads(config_map["data"]["config.json"])
    assert config["request"]["name"] == name
    assert config["output"]["path"] == f"/output/pvc/models-out/{name}"

    pod = wait_for(
        lambda: next(iter(json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l", f"batch.kubernetes.io/job-name={job['metadata']['name']}", "-o", "json").stdout)["items"]), None),
        timeout=60,
        message="the trainer Pod",
    )
    assert wait_for(lambda: (get(cluster, "pod", pod["metadata"]["name"], namespace) or {}).get("spec", {}).get("nodeName"), timeout=60, message="Pod scheduled") == "gpu-node-1"

    percentages = []

    def progressing():
        status = request_status(cluster, plural, name, namespace)
        percentage = ((status.get("process") or {}).get("progressStatus") or {}).get("progressPercentage")
        if status.get("requestStatus") == "IN_PROGRESS" and percentage:
            percentages.append(percentage)
        return len(set(percentages)) >= 2 or status.get("requestStatus") == "FINISHED"

    wait_for(progressing, timeout=90, message="rising progress from the trainer")
    final = wait_request_status(cluster, plural, name, namespace, "FINISHED", timeout=120)
    assert percentages, "no IN_PROGRESS status with a progress percentage was seen"
    assert percentages == sorted(percentages)
    assert final["process"]["progressStatus"]["status"] == "FINISHED"
    assert final["process"]["progressStatus"]["progressPercentage"] == 100
    assert condition(final, "Ready")["status"] == "True"
    assert condition(final, "Succeeded")["status"] == "True"
    assert condition(final, "Authorized").get("status") == "True", final["conditions"]
    assert final["observedGeneration"] == created["metadata"]["generation"]
    report = final["report"]
    validation = report["modelPerformanceValidation"]
    assert validation[0]["performanceMetric"] == body["spec"]["performanceRequirements"][0]["performanceMetric"]
    assert validation[0]["requirementMet"] is True
    assert report["mLModelGeneratedRef"] == {"name": f"{name}-model", "namespace": namespace}
    assert report["trainableParameters"] == 1000

    model = get(cluster, "mlmodel", f"{name}-model", namespace)
    assert model is not None
    assert model["spec"]["trainingRequestRef"] == {"kind": body["kind"], "name": name, "namespace": namespace}
    assert model["spec"]["artifact"]["uri"] == body["spec"]["output"]["uri"]
    assert len(list_jobs(cluster, namespace)) == 1
    reasons = {event["reason"] for event in events_for(cluster, namespace, name)}
    assert "Succeeded" in reasons
    return final, model


def test_fine_tuning_happy_path(cluster, namespace, operator):
    prepare_namespace(cluster, namespace)
    final, model = run_happy_path(cluster, operator, namespace, fine_tuning_request(namespace, "sentiment"), "mlfinetuningrequests")
    assert model["spec"]["sourceTrainedMLModelRef"] == {"name": "minilm", "namespace": namespace}
    assert model["spec"]["mLTrainingType"] == "FINE_TUNING"
    assert model["spec"]["artifact"]["format"] == "PEFT_ADAPTER"
    assert 'aiml_progress_events_total{result="accepted"}' in operator.metrics()
    assert "aiml_jobs_launched_total" in operator.metrics()


def test_training_happy_path(cluster, namespace, operator):
    prepare_namespace(cluster, namespace)
    final, model = run_happy_path(cluster, operator, namespace, training_request(namespace, "load"), "mltrainingrequests")
    assert model["spec"]["mLTrainingType"] == "INITIAL_TRAINING"
    assert "sourceTrainedMLModelRef" not in model["spec"]


def test_progress_with_other_requests_token_rejected(cluster, namespace, operator):
    prepare_namespace(cluster, namespace)
    for name in ("first", "second"):
        apply(cluster, fine_tuning_request(namespace, name, image="aiml.mns.io/standin-trainer:slow"), user="alice")
    first_job = wait_for(lambda: job_of(cluster, namespace, "mlfinetuningrequests", "first"), timeout=60, message="the first Job")
    wait_for(lambda: job_of(cluster, namespace, "mlfinetuningrequests", "second"), timeout=60, message="the second Job")
    selector = f"batch.kubernetes.io/job-name={first_job['metadata']['name']}"
    pod = wait_for(
        lambda: next(iter(json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout)["items"]), None),
        timeout=60,
        message="the first trainer Pod",
    )

    def token(audience_request):
        return cluster.kubectl(
            "create", "token", "default", "-n", namespace,
            "--audience", f"aiml.mns.io/progress/{namespace}/mlfinetuningrequests/{audience_request}",
            "--bound-object-kind", "Pod", "--bound-object-name", pod["metadata"]["name"],
            "--bound-object-uid", pod["metadata"]["uid"],
        ).stdout.strip()

    def post(target, bearer):
        request = urllib.request.Request(
            f"{operator.status_url}/v1alpha1/namespaces/{namespace}/mlfinetuningrequests/{target}/progress",
            data=json.dumps({"phase": "TRAINING", "progressPercentage": 50}).encode(),
            headers={"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    first_token = token("first")
    # The first request's token, sent for the second request: the audience does not match.
    assert post("second", first_token) == 401
    # A token with the second request's audience, but bound to a Pod of the first request's Job.
    assert post("second", token("second")) == 403
    assert post("first", first_token) == 202
    assert post("first", "not-a-token") == 401
    metrics = operator.metrics()
    assert 'aiml_progress_events_total{result="unauthenticated"}' in metrics
    assert 'aiml_progress_events_total{result="wrong_job"}' in metrics
    for name in ("first", "second"):
        cluster.kubectl("patch", "mlfinetuningrequests", name, "-n", namespace, "--type=merge", "-p", '{"spec":{"cancelRequest":true}}')
    for name in ("first", "second"):
        wait_request_status(cluster, "mlfinetuningrequests", name, namespace, "CANCELLED", timeout=90)
