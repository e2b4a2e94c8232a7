"""Authorization: identities, the SubjectAccessReviews a request needs, decisions that fail closed."""

from __future__ import annotations

import pytest

from ml_training_operator import authz
from tests.unit.operator_fixtures import base_model, fine_tuning_request, training_request

ALICE = authz.Identity("alice", ("rapp-developers",), "u-1")


def allowed():
    return {"status": {"allowed": True}}


def denied(reason=""):
    return {"status": {"allowed": False, "reason": reason}}


def test_requester_from_annotations():
    identity = authz.requester_identity(fine_tuning_request()["metadata"]["annotations"])
    assert identity == authz.Identity("alice", ("rapp-developers", "system:authenticated"), "u-1")


def test_missing_annotations_mean_no_identity():
    assert authz.requester_identity({}) is None
    assert authz.requester_identity(None) is None
    assert authz.requester_identity({"aiml.mns.io/requester-username": ""}) is None


def test_annotations_round_trip():
    annotations = authz.requester_annotations({"username": "bob", "groups": ["g1", "g2"], "uid": "42"})
    assert authz.requester_identity(annotations) == authz.Identity("bob", ("g1", "g2"), "42")


def test_consumer_defaults_to_requester():
    assert authz.consumer_identity(ALICE, None) is ALICE


def test_consumer_service_account():
    identity = authz.consumer_identity(ALICE, {"serviceAccount": {"namespace": "rapps", "name": "energy"}})
    assert identity.username == "system:serviceaccount:rapps:energy"
    assert "system:serviceaccounts:rapps" in identity.groups


def test_fine_tuning_checks():
    request = fine_tuning_request()
    checks = authz.required_checks(request["kind"], "team-a", request["spec"], ALICE, base_model())
    described = [(check.verb, check.group, check.resource, check.name, check.namespace) for check in checks]
    assert described == [
        ("finetune", "aiml.mns.io", "mlmodels", "minilm", "models"),
        ("get", "", "persistentvolumeclaims", "datasets", "team-a"),
        ("get", "", "configmaps", "extra", "team-a"),
        ("get", "", "persistentvolumeclaims", "models-out", "team-a"),
    ]
    assert all(check.identity is ALICE for check in checks)


def test_retraining_checks_retrain_verb_in_request_namespace():
    request = training_request()
    request["spec"]["mLTrainingType"] = "RE_TRAINING"
    request["spec"]["mLModelRef"] = {"name": "old"}
    checks = authz.required_checks(request["kind"], "team-a", request["spec"], ALICE)
    assert (checks[0].verb, checks[0].resource, checks[0].name, checks[0].namespace) == ("retrain", "mlmodels", "old", "team-a")


def test_initial_training_checks_data_only():
    request = training_request()
    checks = authz.required_checks(request["kind"], "team-a", request["spec"], ALICE)
    assert {check.verb for check in checks} == {"get"}


def test_pvc_base_model_needs_get_in_model_namespace():
    model = base_model()
    model["spec"]["artifact"]["uri"] = "pvc://weights/minilm"
    request = fine_tuning_request()
    checks = authz.required_checks(request["kind"], "team-a", request["spec"], ALICE, model)
    assert ("get", "persistentvolumeclaims", "weights", "models") in [(c.verb, c.resource, c.name, c.namespace) for c in checks]


def test_consumer_adds_impersonation_and_acts_as_consumer():
    request = fine_tuning_request()
    request["spec"]["consumer"] = {"serviceAccount": {"namespace": "rapps", "name": "energy"}}
    checks = authz.required_checks(request["kind"], "team-a", request["spec"], ALICE)
    assert (checks[0].identity, checks[0].verb, checks[0].resource, checks[0].name, checks[0].namespace) == (
        ALICE, "impersonate", "serviceaccounts", "energy", "rapps",
    )
    assert checks[1].verb == "finetune"
    assert checks[1].identity.username == "system:serviceaccount:rapps:energy"


def test_user_and_group_impersonation():
    checks = authz.impersonation_checks(ALICE, {"user": "carol", "groups": ["gitops", "ops"]})
    assert [(check.resource, check.name) for check in checks] == [("users", "carol"), ("groups", "gitops"), ("groups", "ops")]


def test_review_body():
    check = authz.AccessCheck(ALICE, "finetune", "mlmodels", "minilm", "models", group="aiml.mns.io")
    assert check.to_review() == {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "resourceAttributes": {"verb": "finetune", "group": "aiml.mns.io", "resource": "mlmodels", "name": "minilm", "namespace": "models"},
            "user": "alice",
            "groups": ["rapp-developers"],
            "uid": "u-1",
        },
    }


def test_decide_all_allowed():
    checks = authz.required_checks("MLFineTuningRequest", "team-a", fine_tuning_request()["spec"], ALICE)
    decision = authz.decide(checks, [allowed() for _ in checks])
    assert decision.allowed


def test_decide_names_each_denial():
    checks = authz.required_checks("MLFineTuningRequest", "team-a", fine_tuning_request()["spec"], ALICE)
    results = [denied("no RBAC rule"), allowed(), denied(), allowed()]
    decision = authz.decide(checks, results)
    assert not decision.allowed
    assert len(decision.denials) == 2
    assert "user 'alice' may not finetune mlmodels.aiml.mns.io/minilm in namespace 'models'" in decision.message
    assert "no RBAC rule" in decision.message
    assert "configmaps/extra" in decision.denials[1]


def test_decide_fails_closed():
    checks = authz.required_checks("MLTrainingRequest", "team-a", training_request()["spec"], ALICE)
    assert not authz.decide(checks, [None] * len(checks)).allowed
    assert not authz.decide(checks, [{"status": {"allowed": True, "denied": True}}] * len(checks)).allowed
    assert not authz.decide(checks, [{}] * len(checks)).allowed


def test_decide_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        authz.decide([authz.AccessCheck(ALICE, "get", "configmaps")], [])


def test_no_identity_is_denied():
    decision = authz.decide_without_identity()
    assert not decision.allowed
    assert "requester-username" in decision.message


def test_model_read_check_review():
    review = authz.model_read_check(ALICE, "models", "minilm").to_review()
    attributes = review["spec"]["resourceAttributes"]
    assert attributes == {"verb": "get", "group": "aiml.mns.io", "resource": "mlmodels", "name": "minilm", "namespace": "models"}
    assert review["spec"]["user"] == "alice"
    assert review["spec"]["groups"] == ["rapp-developers"]
