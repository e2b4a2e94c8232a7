"""Who the consumer of a request is, and what the cluster's RBAC lets it do.

The standard leaves authorization to the deployment, so the operator asks the API server
itself: it builds SubjectAccessReviews for everything the Job would touch on the
consumer's behalf and starts no Job unless every review is allowed. The functions here
are pure (identities, reviews and the decision are plain data); the handlers send the
reviews.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import names
from .uris import parse_uri


@dataclass(frozen=True)
class Identity:
    """An authenticated Kubernetes user as SubjectAccessReview names it."""

    username: str | None
    groups: tuple[str, ...] = ()
    uid: str | None = None

    def describe(self) -> str:
        if self.username:
            return f"user {self.username!r}"
        return f"groups {list(self.groups)!r}"


def service_account_identity(namespace: str, name: str) -> Identity:
    """Return the identity the API server gives a ServiceAccount's tokens."""
    return Identity(
        username=f"system:serviceaccount:{namespace}:{name}",
        groups=("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"),
    )


def requester_identity(annotations: Mapping[str, str] | None) -> Identity | None:
    """Read the requester recorded by the admission webhook; None when it is missing."""
    annotations = annotations or {}
    username = annotations.get(names.ANNOTATION_REQUESTER_USERNAME)
    if not username:
        return None
    groups = tuple(group for group in annotations.get(names.ANNOTATION_REQUESTER_GROUPS, "").split(",") if group)
    return Identity(username=username, groups=groups, uid=annotations.get(names.ANNOTATION_REQUESTER_UID) or None)


def requester_annotations(userinfo: Mapping[str, Any]) -> dict[str, str]:
    """Render an admission request's userInfo as the requester annotations."""
    return {
        names.ANNOTATION_REQUESTER_USERNAME: str(userinfo.get("username", "")),
        names.ANNOTATION_REQUESTER_GROUPS: ",".join(userinfo.get("groups") or []),
        names.ANNOTATION_REQUESTER_UID: str(userinfo.get("uid", "")),
    }


def consumer_identity(requester: Identity, consumer: Mapping[str, Any] | None) -> Identity:
    """Return the identity a request acts for: ``spec.consumer`` when set, else the requester."""
    if not consumer:
        return requester
    service_account = consumer.get("serviceAccount")
    if service_account:
        return service_account_identity(service_account["namespace"], service_account["name"])
    return Identity(username=consumer.get("user") or None, groups=tuple(consumer.get("groups") or ()))


@dataclass(frozen=True)
class AccessCheck:
    """One question for the API server: may ``identity`` do ``verb`` on this resource?"""

    identity: Identity
    verb: str
    resource: str
    name: str | None = None
    namespace: str | None = None
    group: str = ""
    purpose: str = ""

    def describe(self) -> str:
        target = f"{self.resource}/{self.name}" if self.name else self.resource
        if self.group:
            target = f"{self.resource}.{self.group}/{self.name}" if self.name else f"{self.resource}.{self.group}"
        where = f" in namespace {self.namespace!r}" if self.namespace else ""
        return f"{self.identity.describe()} may not {self.verb} {target}{where}"

    def to_review(self) -> dict[str, Any]:
        """Render as an authorization.k8s.io/v1 SubjectAccessReview body."""
        attributes: dict[str, Any] = {"verb": self.verb, "group": self.group, "resource": self.resource}
        if self.name:
            attributes["name"] = self.name
        if self.namespace:
            attributes["namespace"] = self.namespace
        spec: dict[str, Any] = {"resourceAttributes": attributes}
        if self.identity.username:
            spec["user"] = self.identity.username
        if self.identity.groups:
            spec["groups"] = list(self.identity.groups)
        if self.identity.uid:
            spec["uid"] = self.identity.uid
        return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}


def impersonation_checks(requester: Identity, consumer: Mapping[str, Any] | None) -> list[AccessCheck]:
    """List what the requester must be allowed to impersonate for ``spec.consumer``."""
    if not consumer:
        return []
    checks: list[AccessCheck] = []
    service_account = consumer.get("serviceAccount")
    if service_account:
        checks.append(
            AccessCheck(
                requester, "impersonate", "serviceaccounts", service_account["name"], service_account["namespace"],
                purpose="spec.consumer.serviceAccount",
            )
        )
    if consumer.get("user"):
        checks.append(AccessCheck(requester, "impersonate", "users", consumer["user"], purpose="spec.consumer.user"))
    for group in consumer.get("groups") or ():
        checks.append(AccessCheck(requester, "impersonate", "groups", group, purpose="spec.consumer.groups"))
    return checks


def model_read_check(identity: Identity, namespace: str, name: str) -> AccessCheck:
    """Return the ``get`` check that guards what admission may reveal about an MLModel."""
    return AccessCheck(identity, "get", names.ML_MODEL.plural, name, namespace, group=names.GROUP, purpose="spec.mLModelRef")


def model_namespace(spec: Mapping[str, Any], request_namespace: str) -> str:
    reference = spec.get("mLModelRef") or {}
    return reference.get("namespace") or request_namespace


def data_checks(consumer: Identity, uris: Sequence[str], namespace: str, purpose: str) -> list[AccessCheck]:
    """List the ``get`` checks on the PVCs and ConfigMaps that the URIs name."""
    checks = []
    for uri in uris:
        parsed = parse_uri(uri)
        if parsed.scheme == "pvc":
            checks.append(AccessCheck(consumer, "get", "persistentvolumeclaims", parsed.source, namespace, purpose=purpose))
        elif parsed.scheme == "configmap":
            checks.append(AccessCheck(consumer, "get", "configmaps", parsed.source, namespace, purpose=purpose))
    return checks


def required_checks(
    kind: str,
    namespace: str,
    spec: Mapping[str, Any],
    requester: Identity,
    base_model: Mapping[str, Any] | None = None,
) -> list[AccessCheck]:
    """List every access check a request needs before its Job may start.

    The consumer needs ``finetune`` (fine-tuning) or ``retrain`` (re-training) on the
    referenced MLModel, ``get`` on every PVC or ConfigMap that holds data, the output or
    the base model's artifact, and the requester needs ``impersonate`` on ``spec.consumer``.
    """
    consumer_spec = spec.get("consumer")
    consumer = consumer_identity(requester, consumer_spec)
    checks = impersonation_checks(requester, consumer_spec)

    training_type = spec.get("mLTrainingType")
    reference = spec.get("mLModelRef") or {}
    if kind == names.FINE_TUNING_REQUEST.kind or training_type == "FINE_TUNING":
        verb = "finetune"
    elif training_type == "RE_TRAINING":
        verb = "retrain"
    else:
        verb = ""
    if verb and reference.get("name"):
        checks.append(
            AccessCheck(
                consumer, verb, names.ML_MODEL.plural, reference["name"], model_namespace(spec, namespace),
                group=names.GROUP, purpose="spec.mLModelRef",
            )
        )

    checks += data_checks(consumer, spec.get("candidateTrainingDataSource") or [], namespace, "spec.candidateTrainingDataSource")
    output_uri = (spec.get("output") or {}).get("uri")
    if output_uri:
        checks += data_checks(consumer, [output_uri], namespace, "spec.output.uri")
    if base_model is not None:
        artifact_uri = ((base_model.get("spec") or {}).get("artifact") or {}).get("uri")
        model_ns = (base_model.get("metadata") or {}).get("namespace") or namespace
        if artifact_uri:
            checks += data_checks(consumer, [artifact_uri], model_ns, "base model artifact")
    return checks


@dataclass(frozen=True)
class Decision:
    """Outcome of the access checks: allowed, or the reasons why not."""

    allowed: bool
    denials: tuple[str, ...] = field(default=())

    @property
    def message(self) -> str:
        if self.allowed:
            return "the consumer may use every referenced model and data source"
        return "; ".join(self.denials)


def decide(checks: Sequence[AccessCheck], results: Sequence[Mapping[str, Any] | None]) -> Decision:
    """Decide from SubjectAccessReview responses, failing closed.

    ``results`` holds the returned review (or None when it could not be sent) for each
    check, in the same order. Anything but an explicit ``allowed: true`` is a denial.
    """
    if len(results) != len(checks):
        raise ValueError(f"expected {len(checks)} review results, got {len(results)}")
    denials = []
    for check, result in zip(checks, results):
        status = (result or {}).get("status") or {}
        if status.get("allowed") is True and not status.get("denied"):
            continue
        detail = status.get("reason") or status.get("evaluationError") or ("review failed" if result is None else "")
        suffix = f" ({detail})" if detail else ""
        purpose = f" for {check.purpose}" if check.purpose else ""
        denials.append(f"{check.describe()}{purpose}{suffix}")
    return Decision(allowed=not denials, denials=tuple(denials))


def decide_without_identity() -> Decision:
    """Return the decision for a request that carries no requester annotations."""
    return Decision(
        allowed=False,
        denials=(
            f"the requester is unknown: annotation {names.ANNOTATION_REQUESTER_USERNAME} is missing, "
            "so the admission webhook did not see this request; recreate it with the webhook running",
        ),
    )
