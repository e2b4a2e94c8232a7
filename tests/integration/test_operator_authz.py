"""The operator against the local cluster: authorization and admission."""

from __future__ import annotations

import json

import pytest

from tests.conftest import wait_for
from tests.integration.operator_harness import (  # noqa: F401  (fixtures)
    FINETUNE_RULES,
    GROUP,
    REQUESTER_RULES,
    apply,
    base_model,
    condition,
    crds,
    events_for,
    fine_tuning_request,
    grant,
    list_jobs,
    operator,
    pause,
    prepare_namespace,
    request_status,
    training_request,
    wait_request_status,
)

pytestmark = pytest.mark.cluster
PLURAL = "mlfinetuningrequests"


def test_unauthorized_then_authorized(cluster, namespace, operator):
    prepare_namespace(cluster, namespace, finetune=False)
    apply(cluster, fine_tuning_request(namespace, "denied"), user="alice")

    def denied():
        status = request_status(cluster, PLURAL, "denied", namespace)
        return status if condition(status, "Authorized").get("status") == "False" else None

    status = wait_for(denied, timeout=60, message="Authorized=False")
    message = condition(status, "Authorized")["message"]
    assert "user 'alice' may not finetune mlmodels.aiml.mns.io/minilm" in message
    assert status["requestStatus"] == "NOT_STARTED"
    assert condition(status, "Ready")["status"] == "False"
    pause(3)
    assert list_jobs(cluster, namespace) == []
    warnings = [event for event in events_for(cluster, namespace, "denied") if event["type"] == "Warning"]
    assert warnings and warnings[0]["reason"] == "Forbidden"

    grant(cluster, namespace, "alice", FINETUNE_RULES, name="alice-finetune")
    final = wait_request_status(cluster, PLURAL, "denied", namespace, "FINISHED", timeout=120)
    assert condition(final, "Authorized")["status"] == "True"
    assert condition(final, "Succeeded")["status"] == "True"
    assert len(list_jobs(cluster, namespace)) == 1


def test_consumer_impersonation_allowed(cluster, namespace, operator):
    # carol may create requests and impersonate the rApp's ServiceAccount, but not fine-tune;
    # the ServiceAccount may fine-tune, so a request acting for it runs.
    prepare_namespace(cluster, namespace, user="carol", finetune=False)
    cluster.kubectl("create", "serviceaccount", "energy-rapp", "-n", namespace)
    grant(
        cluster, namespace, "carol",
        [{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"], "resourceNames": ["energy-rapp"]}],
        name="carol-impersonate",
    )
    grant(
        cluster, namespace, "energy-rapp",
        FINETUNE_RULES + [{"apiGroups": [""], "resources": ["configmaps", "persistentvolumeclaims"], "verbs": ["get"]}],
        name="energy-rapp",
        subject={"kind": "ServiceAccount", "name": "energy-rapp", "namespace": namespace},
    )

    body = fine_tuning_request(namespace, "on-behalf", consumer={"serviceAccount": {"namespace": namespace, "name": "energy-rapp"}})
    apply(cluster, body, user="carol")
    final = wait_request_status(cluster, PLURAL, "on-behalf", namespace, "FINISHED", timeout=120)
    assert condition(final, "Succeeded")["status"] == "True"
    assert condition(final, "Authorized")["status"] == "True"


def test_consumer_without_rights_is_denied(cluster, namespace, operator):
    # carol may impersonate the ServiceAccount, which may not fine-tune: the consumer's rights count.
    prepare_namespace(cluster, namespace, user="carol", finetune=True)
    cluster.kubectl("create", "serviceaccount", "weak-rapp", "-n", namespace)
    grant(
        cluster, namespace, "carol",
        [{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"], "resourceNames": ["weak-rapp"]}],
        name="carol-impersonate",
    )
    body = fine_tuning_request(namespace, "weak", consumer={"serviceAccount": {"namespace": namespace, "name": "weak-rapp"}})
    apply(cluster, body, user="carol")

    def denied():
        status = request_status(cluster, PLURAL, "weak", namespace)
        return status if condition(status, "Authorized").get("status") == "False" else None

    status = wait_for(denied, timeout=60, message="Authorized=False for the consumer")
    assert f"system:serviceaccount:{namespace}:weak-rapp" in condition(status, "Authorized")["message"]
    assert list_jobs(cluster, namespace) == []


def test_consumer_impersonation_rejected(cluster, namespace, operator):
    prepare_namespace(cluster, namespace, user="bob")
    body = fine_tuning_request(namespace, "forged", consumer={"user": "carol"})
    result = apply(cluster, body, user="bob", check=False)
    assert result.returncode != 0
    assert "spec.consumer" in result.stderr
    assert "impersonate" in result.stderr


def test_identity_annotations_cannot_be_forged_or_edited(cluster, namespace, operator):
    prepare_namespace(cluster, namespace)
    body = fine_tuning_request(namespace, "forged-identity")
    body["metadata"]["annotations"] = {f"{GROUP}/requester-username": "system:admin", f"{GROUP}/requester-groups": "system:masters"}
    created = json.loads(apply(cluster, body, user="alice").stdout)
    assert created["metadata"]["annotations"][f"{GROUP}/requester-username"] == "alice"
    assert "system:masters" not in created["metadata"]["annotations"][f"{GROUP}/requester-groups"]

    result = cluster.kubectl(
        "annotate", "--overwrite", PLURAL, "forged-identity", "-n", namespace, f"{GROUP}/requester-username=bob",
        user="alice", check=False,
    )
    assert result.returncode != 0
    assert "only the operator may change them" in result.stderr


def test_admission_rejects_bad_requests(cluster, namespace, operator):
    prepare_namespace(cluster, namespace)
    other = f"{namespace[:50]}-m"
    cluster.kubectl("create", "namespace", other)
    try:
        apply(cluster, base_model(other, name="claimed", artifact="pvc://weights/minilm"))
        grant(cluster, other, "alice", [{"apiGroups": [GROUP], "resources": ["mlmodels"], "verbs": ["get"]}], name="alice-view")
        cases = {
            "image": (fine_tuning_request(namespace, "bad-image", image="evil.example/miner:1"), "allowed images: aiml.mns.io/standin-trainer:test"),
            "dotdot": (
                fine_tuning_request(namespace, "bad-path", output={"uri": "pvc://models-out/../escape"}),
                "'..'",
            ),
            "claim": (
                fine_tuning_request(namespace, "bad-claim", mLModelRef={"name": "claimed", "namespace": other}),
                "cannot mount",
            ),
            "scope": (
                fine_tuning_request(namespace, "bad-scope", aIMLInferenceName="MOBILITY"),
                "outside the inferenceScope",
            ),
            "missing model": (
                fine_tuning_request(namespace, "no-model", mLModelRef={"name": "absent"}),
                "not found",
            ),
        }
        for case, (body, expected) in cases.items():
            result = apply(cluster, body, user="alice", check=False)
            assert result.returncode != 0, f"{case}: accepted"
            assert expected in result.stderr, f"{case}: {result.stderr}"
    finally:
        cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)


def test_unreadable_model_reveals_nothing(cluster, namespace, operator):
    # bob may create requests here but may not read the models of the other namespace;
    # alice may, so she gets the detailed messages.
    prepare_namespace(cluster, namespace, user="bob")
    grant(cluster, namespace, "alice", REQUESTER_RULES, name="alice-requester")
    other = f"{namespace[:50]}-m"
    cluster.kubectl("create", "namespace", other)
    try:
        apply(cluster, base_model(other))
        grant(cluster, other, "alice", [{"apiGroups": [GROUP], "resources": ["mlmodels"], "verbs": ["get"]}], name="alice-view")
        requests = {
            "existing": fine_tuning_request(namespace, "probe-existing", aIMLInferenceName="MOBILITY", mLModelRef={"name": "minilm", "namespace": other}),
            "missing": fine_tuning_request(namespace, "probe-missing", mLModelRef={"name": "absent", "namespace": other}),
        }

        messages = {}
        for case, body in requests.items():
            result = apply(cluster, body, user="bob", check=False)
            assert result.returncode != 0, f"{case}: accepted"
            assert "spec.mLModelRef: you may not read MLModel" in result.stderr, f"{case}: {result.stderr}"
            messages[case] = result.stderr.replace("absent", "minilm").replace("probe-missing", "probe-existing")
        assert messages["existing"] == messages["missing"]
        assert "inferenceScope" not in messages["existing"]
        assert "not found" not in messages["existing"]

        detailed = {"existing": "outside the inferenceScope", "missing": "not found"}
        for case, body in requests.items():
            result = apply(cluster, body, user="alice", check=False)
            assert result.returncode != 0, f"{case}: accepted"
            assert detailed[case] in result.stderr, f"{case}: {result.stderr}"
            assert "you may not read" not in result.stderr
    finally:
        cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)


def test_output_model_of_other_request_is_protected(cluster, namespace, operator):
    prepare_namespace(cluster, namespace)
    apply(cluster, fine_tuning_request(namespace, "owner"), user="alice")
    wait_request_status(cluster, PLURAL, "owner", namespace, "FINISHED", timeout=120)
    body = fine_tuning_request(namespace, "intruder", output={"uri": "pvc://models-out/intruder", "modelName": "owner-model"})
    result = apply(cluster, body, user="alice", check=False)
    assert result.returncode != 0
    assert "already exists and was produced by MLFineTuningRequest" in result.stderr


def test_shared_output_uri_rejected(cluster, namespace, operator):
    prepare_namespace(cluster, namespace)
    apply(cluster, training_request(namespace, "first", output={"uri": "pvc://models-out/shared"}), user="alice")

    result = apply(cluster, fine_tuning_request(namespace, "second", output={"uri": "pvc://models-out/shared/"}), user="alice", check=False)
    assert result.returncode != 0
    assert "spec.output.uri" in result.stderr
    assert f"MLTrainingRequest {namespace}/first" in result.stderr
    assert "pick another path" in result.stderr

    apply(cluster, fine_tuning_request(namespace, "third"), user="alice")
    result = cluster.kubectl(
        "patch", PLURAL, "third", "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": {"output": {"uri": "pvc://models-out/shared"}}}), user="alice", check=False,
    )
    assert result.returncode != 0
    assert f"MLTrainingRequest {namespace}/first" in result.stderr


def test_denial_fails_after_grace_period(cluster, namespace, operator):
    # A short grace period; a new spec generation after the failure checks the consumer again.
    operator.extra_env["AIML_AUTHORIZATION_GRACE_SECONDS"] = "6"
    operator.restart()
    prepare_namespace(cluster, namespace, finetune=False)
    apply(cluster, fine_tuning_request(namespace, "never-bound"), user="alice")

    def waiting():
        status = request_status(cluster, PLURAL, "never-bound", namespace)
        progress = (status.get("process") or {}).get("progressStatus") or {}
        return status if progress.get("progressStateInfo") == "WAITING_FOR_AUTHORIZATION" else None

    waiting_status = wait_for(waiting, timeout=60, message="WAITING_FOR_AUTHORIZATION")
    assert waiting_status["requestStatus"] == "NOT_STARTED"

    final = wait_request_status(cluster, PLURAL, "never-bound", namespace, "FINISHED", timeout=60)
    progress = final["process"]["progressStatus"]
    assert progress["status"] == "FAILED"
    assert progress["resultStateInfo"].startswith("Forbidden: user 'alice' may not finetune")
    assert "6s authorization grace period" in progress["resultStateInfo"]
    assert condition(final, "Failed")["status"] == "True"
    assert condition(final, "Failed")["reason"] == "Forbidden"
    assert condition(final, "Authorized")["status"] == "False"
    assert condition(final, "Authorized")["reason"] == "Forbidden"
    assert final["process"]["endTime"]
    assert list_jobs(cluster, namespace) == []
    warnings = [event for event in events_for(cluster, namespace, "never-bound") if event["type"] == "Warning"]
    assert any(event["reason"] == "Forbidden" and event["message"].startswith("FAILED: ") for event in warnings), warnings

    # The failure is terminal: a RoleBinding alone does not restart the request.
    grant(cluster, namespace, "alice", FINETUNE_RULES, name="alice-finetune")
    pause(4)
    unchanged = request_status(cluster, PLURAL, "never-bound", namespace)
    assert unchanged["process"]["progressStatus"]["status"] == "FAILED"
    assert list_jobs(cluster, namespace) == []

    cluster.kubectl(
        "patch", PLURAL, "never-bound", "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": {"trainer": {"hyperparameters": {"epochs": 1}}}}), user="alice",
    )

    def succeeded():
        status = request_status(cluster, PLURAL, "never-bound", namespace)
        return status if condition(status, "Succeeded").get("status") == "True" else None

    recovered = wait_for(succeeded, timeout=120, message="Succeeded after the spec change")
    assert recovered["requestStatus"] == "FINISHED"
    assert recovered["process"]["progressStatus"]["status"] == "FINISHED"
    assert condition(recovered, "Authorized")["status"] == "True"
    assert condition(recovered, "Failed")["status"] == "False"
    assert len(list_jobs(cluster, namespace)) == 1
