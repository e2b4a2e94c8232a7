"""Admission webhooks for both request kinds: record the requester, reject what needs a lookup.

The CRD schema rejects what it can on its own (types, enums, CEL rules). These webhooks add
what needs the API server or the operator's settings:

- mutating, on create: the requester's identity from the admission request's userInfo goes
  into the ``aiml.mns.io/requester-*`` annotations, overwriting whatever the client sent,
  so the operator's SubjectAccessReviews judge the real requester;
- validating, on create and update: only the operator may change those annotations;
  ``spec.consumer`` needs the requester's permission to impersonate it; the requester (or
  that consumer) may read the base MLModel, before anything about it is revealed; the model
  exists and covers ``aIMLInferenceName``; the output does not overwrite another request's
  MLModel; no other request of the namespace writes to the same ``spec.output.uri``;
  the trainer image is allowed; every URI has an accepted scheme and stays inside
  its volume.

The checks are pure functions; the Kopf handlers at the end only gather their inputs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import kopf

from . import authz, names, runtime
from .api.locations import UriFieldError, parse_artifact_uri, parse_data_source, parse_output_uri
from .kube import ApiError
from .settings import Settings, WebhookMode


def requester_annotation_patch(userinfo: Mapping[str, Any]) -> dict[str, str]:
    """Return the requester annotations for an admission request's userInfo."""
    return authz.requester_annotations(userinfo)


def identity_annotation_problem(
    old_annotations: Mapping[str, str] | None,
    new_annotations: Mapping[str, str] | None,
    username: str,
    operator_usernames: Collection[str],
) -> str | None:
    """Return why an update may not change the requester annotations, or None when it may."""
    old_annotations = old_annotations or {}
    new_annotations = new_annotations or {}
    changed = [key for key in names.REQUESTER_ANNOTATIONS if old_annotations.get(key) != new_annotations.get(key)]
    if not changed or username in operator_usernames:
        return None
    return (
        f"metadata.annotations: {', '.join(changed)} record who created the request and only the operator may change them; "
        "remove the change from your update"
    )


def image_problem(spec: Mapping[str, Any], settings: Settings) -> str | None:
    image = (spec.get("trainer") or {}).get("image")
    if image is None or image in settings.trainer_images:
        return None
    return f"spec.trainer.image: {image!r} is not an allowed trainer image; allowed images: {', '.join(settings.trainer_images)}"


def uri_problems(spec: Mapping[str, Any]) -> list[str]:
    """Check every data source and the output URI; return one message per invalid URI."""
    problems = []
    for index, uri in enumerate(spec.get("candidateTrainingDataSource") or []):
        try:
            parse_data_source(uri, field=f"spec.candidateTrainingDataSource[{index}]")
        except UriFieldError as error:
            problems.append(str(error))
    output_uri = (spec.get("output") or {}).get("uri")
    if output_uri is not None:
        try:
            parse_output_uri(output_uri)
        except UriFieldError as error:
            problems.append(str(error))
    return problems


def base_model_problems(kind: str, spec: Mapping[str, Any], namespace: str, model: Mapping[str, Any] | None) -> list[str]:
    """Check the MLModel that ``spec.mLModelRef`` names against the request."""
    reference = spec.get("mLModelRef") or {}
    if not reference.get("name"):
        return []
    model_namespace = reference.get("namespace") or namespace
    where = f"{model_namespace}/{reference['name']}"
    if model is None:
        return [f"spec.mLModelRef: MLModel {where} not found; create it first or reference an existing model"]

    problems = []
    model_spec = model.get("spec") or {}
    scope = list(model_spec.get("inferenceScope") or [])
    inference = spec.get("aIMLInferenceName")
    fine_tuning = kind == names.FINE_TUNING_REQUEST.kind
    if (fine_tuning or scope) and inference not in scope:
        problems.append(
            f"spec.aIMLInferenceName: {inference!r} is outside the inferenceScope of MLModel {where}; "
            f"accepted: {', '.join(scope) if scope else 'none (the model lists no inferenceScope)'}"
        )
    artifact_uri = (model_spec.get("artifact") or {}).get("uri")
    if artifact_uri:
        try:
            parsed = parse_artifact_uri(artifact_uri, field=f"MLModel {where} spec.artifact.uri")
        except UriFieldError as error:
            problems.append(str(error))
        else:
            if parsed.scheme == "pvc" and model_namespace != namespace:
                problems.append(
                    f"spec.mLModelRef: MLModel {where} keeps its artifact on a PersistentVolumeClaim of namespace "
                    f"{model_namespace!r}, which a Job in {namespace!r} cannot mount; copy the model into this namespace "
                    "or use a model shipped in the trainer image"
                )
    return problems


def output_model_name(name: str, spec: Mapping[str, Any]) -> str:
    return (spec.get("output") or {}).get("modelName") or f"{name}-model"


def output_model_problem(kind: str, name: str, namespace: str, spec: Mapping[str, Any], existing: Mapping[str, Any] | None) -> str | None:
    """Reject an output MLModel name that another request (or a person) already uses."""
    if existing is None:
        return None
    recorded = (existing.get("spec") or {}).get("trainingRequestRef") or {}
    if recorded == {"kind": kind, "name": name, "namespace": namespace}:
        return None
    owner = f"{recorded.get('kind')} {recorded.get('namespace')}/{recorded.get('name')}" if recorded else "no request"
    model_name = output_model_name(name, spec)
    return (
        f"spec.output.modelName: MLModel {namespace}/{model_name} already exists and was produced by {owner}; "
        "choose another spec.output.modelName"
    )


def _output_location(uri: str | None) -> tuple[str, str] | None:
    """Return the claim and the normalized path an output URI names; None for an invalid URI."""
    if not uri:
        return None
    try:
        parsed = parse_output_uri(uri)
    except UriFieldError:
        return None
    segments = [segment for segment in parsed.path.split("/") if segment not in ("", ".")]
    return parsed.source, "/".join(segments)


def output_uri_problem(
    kind: str, name: str, namespace: str, spec: Mapping[str, Any], others: Iterable[tuple[str, Mapping[str, Any]]]
) -> str | None:
    """Reject an output URI that another request of the namespace already writes to.

    ``others`` contains (kind, body) of the namespace's requests of both kinds. Two requests
    writing one folder overwrite each other's model, so the URIs are compared as the path
    they resolve to, not as text.
    """
    location = _output_location((spec.get("output") or {}).get("uri"))
    if location is None:
        return None
    for other_kind, other in others:
        other_name = (other.get("metadata") or {}).get("name")
        if other_kind == kind and other_name == name:
            continue
        if _output_location(((other.get("spec") or {}).get("output") or {}).get("uri")) == location:
            return (
                f"spec.output.uri: {spec['output']['uri']!r} is already the output of {other_kind} {namespace}/{other_name}, "
                "and two requests writing one folder overwrite each other's model; pick another path"
            )
    return None


def _identity(userinfo: Mapping[str, Any]) -> authz.Identity:
    return authz.Identity(str(userinfo.get("username", "")), tuple(userinfo.get("groups") or ()), userinfo.get("uid") or None)


async def _impersonation_problems(consumer: Mapping[str, Any] | None, userinfo: Mapping[str, Any]) -> list[str]:
    checks = authz.impersonation_checks(_identity(userinfo), consumer)
    if not checks:
        return []
    kube = runtime.context().kube
    results = [await kube.create_review(check.to_review()) for check in checks]
    decision = authz.decide(checks, results)
    if decision.allowed:
        return []
    return [f"spec.consumer: {denial}; ask for impersonate permission or remove spec.consumer" for denial in decision.denials]


def unreadable_model_problem(namespace: str, name: str) -> str:
    """Return the rejection for a base MLModel the requester may not read.

    The text is the same whether or not the model exists, so it reveals neither the model
    nor its inferenceScope.
    """
    return (
        f"spec.mLModelRef: you may not read MLModel {namespace}/{name}; "
        "ask its owner for the aiml-finetuner or aiml-viewer role in that namespace"
    )


async def _allowed(checks: list[authz.AccessCheck]) -> bool:
    kube = runtime.context().kube
    results = [await kube.create_review(check.to_review()) for check in checks]
    return authz.decide(checks, results).allowed


async def _may_read_model(userinfo: Mapping[str, Any], consumer: Mapping[str, Any] | None, namespace: str, name: str) -> bool:
    """Tell whether the requester, or a ``spec.consumer`` it may impersonate, may ``get`` the MLModel.

    A requester allowed to impersonate the consumer can read whatever the consumer can, so
    details the consumer may read are no secret to the requester.
    """
    requester = _identity(userinfo)
    if await _allowed([authz.model_read_check(requester, namespace, name)]):
        return True
    if not consumer or not await _allowed(authz.impersonation_checks(requester, consumer)):
        return False
    return await _allowed([authz.model_read_check(authz.consumer_identity(requester, consumer), namespace, name)])


async def _namespace_requests(namespace: str) -> list[tuple[str, dict[str, Any]]]:
    # NOTE: two requests created at the same moment may both pass this check, because the
    # webhook reads the list before either of them is stored.
    kube = runtime.context().kube
    requests = []
    for kind in names.REQUEST_KINDS:
        for item in await kube.list_items(kube.custom_path(namespace, kind.plural), ""):
            requests.append((kind.kind, item))
    return requests


async def validate_request(
    kind: str,
    body: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    operation: str,
    userinfo: Mapping[str, Any],
) -> list[str]:
    """Run every admission check and return the problems; an empty list admits the request."""
    ctx = runtime.context()
    metadata = body.get("metadata") or {}
    namespace, name = metadata.get("namespace", ""), metadata.get("name", "")
    spec = body.get("spec") or {}
    problems: list[str] = []

    if operation == "UPDATE":
        problem = identity_annotation_problem(
            (old or {}).get("metadata", {}).get("annotations"), metadata.get("annotations"),
            str(userinfo.get("username", "")), runtime.operator_usernames(),
        )
        if problem:
            problems.append(problem)
        if metadata.get("deletionTimestamp") or (old or {}).get("spec") == spec:
            # Metadata-only updates (finalizers, Kopf's bookkeeping) need no spec checks.
            return problems

    image = image_problem(spec, ctx.settings)
    if image:
        problems.append(image)
    problems += uri_problems(spec)

    old_spec = (old or {}).get("spec") or {}
    if operation == "CREATE" or old_spec.get("consumer") != spec.get("consumer"):
        problems += await _impersonation_problems(spec.get("consumer"), userinfo)

    reference = spec.get("mLModelRef") or {}
    if reference.get("name"):
        model_namespace = reference.get("namespace") or namespace
        if await _may_read_model(userinfo, spec.get("consumer"), model_namespace, reference["name"]):
            model = await ctx.kube.get_or_none(ctx.kube.custom_path(model_namespace, names.ML_MODEL.plural, reference["name"]))
            problems += base_model_problems(kind, spec, namespace, model)
        else:
            problems.append(unreadable_model_problem(model_namespace, reference["name"]))

    if operation == "CREATE" or old_spec.get("output") != spec.get("output"):
        problem = output_uri_problem(kind, name, namespace, spec, await _namespace_requests(namespace))
        if problem:
            problems.append(problem)

    model_name = output_model_name(name, spec)
    existing = await ctx.kube.get_or_none(ctx.kube.custom_path(namespace, names.ML_MODEL.plural, model_name))
    problem = output_model_problem(kind, name, namespace, spec, existing)
    if problem:
        problems.append(problem)
    return problems


# Kopf handlers. Each request kind gets its own webhook ids, so the generated webhook
# configuration names stay unique.

def _register(kind: names.Kind) -> None:
    @kopf.on.mutate(names.GROUP, names.VERSION, kind.plural, id=f"record-requester-{kind.plural}", operations=["CREATE"])
    def record_requester(userinfo: Mapping[str, Any], patch: kopf.Patch, logger: Any, **_: Any) -> None:
        annotations = requester_annotation_patch(userinfo)
        patch.setdefault("metadata", {}).setdefault("annotations", {}).update(annotations)
        logger.info(f"recorded requester {annotations[names.ANNOTATION_REQUESTER_USERNAME]}", extra={"decision": "record-requester"})

    @kopf.on.validate(names.GROUP, names.VERSION, kind.plural, id=f"check-{kind.plural}", operations=["CREATE", "UPDATE"])
    async def check_request(
        body: kopf.Body, old: kopf.Body | None, operation: str, userinfo: Mapping[str, Any], logger: Any, **_: Any
    ) -> None:
        try:
            problems = await validate_request(kind.kind, body, old, operation, userinfo)
        except ApiError as error:
            logger.warning(f"admission lookup failed: {error}", extra={"decision": "admission-error"})
            raise kopf.AdmissionError(f"the operator could not check the request, retry: {error.message}", code=503) from error
        if problems:
            logger.info(f"rejected {operation}: {'; '.join(problems)}", extra={"decision": "reject", "operation": operation})
            raise kopf.AdmissionError("; ".join(problems), code=422)


for _kind in names.REQUEST_KINDS:
    _register(_kind)


class LocalWebhookServer(kopf.WebhookServer):
    """Kopf's webhook server with its self-signed certificate built by ``cryptography``.

    Kopf builds self-signed certificates with ``certbuilder``, which is not installed;
    ``cryptography`` is, so this class only replaces that step.
    """

    @staticmethod
    def build_certificate(hostnames: Collection[str], password: str | None = None) -> tuple[bytes, bytes]:
        return build_self_signed_certificate(list(hostnames), password)


class ServiceWebhookServer(kopf.WebhookServer):
    """Kopf's webhook server, registered by Service reference instead of URL (in-cluster)."""

    def __init__(self, *, service_name: str, service_namespace: str, service_port: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = {"name": service_name, "namespace": service_namespace, "port": service_port}

    async def __call__(self, fn: Any) -> AsyncIterator[Any]:
        async for client_config in super().__call__(fn):
            service_config: dict[str, Any] = {"service": {**self.service, "path": self.path or "/"}}
            if client_config.get("caBundle"):
                service_config["caBundle"] = client_config["caBundle"]
            yield service_config

    @staticmethod
    def build_certificate(hostnames: Collection[str], password: str | None = None) -> tuple[bytes, bytes]:
        return build_self_signed_certificate(list(hostnames), password)


def build_self_signed_certificate(hostnames: list[str], password: str | None = None) -> tuple[bytes, bytes]:
    """Build a self-signed CA certificate for the given DNS names and IP addresses (PEM cert, PEM key)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    alternative_names: list[x509.GeneralName] = []
    dns_names = []
    for hostname in dict.fromkeys(hostnames):
        try:
            address = ipaddress.ip_address(hostname)
        except ValueError:
            dns_names.append(hostname)
            alternative_names.append(x509.DNSName(hostname))
            continue
        if not address.is_unspecified:
            alternative_names.append(x509.IPAddress(address))
    common_name = dns_names[0] if dns_names else str(hostnames[0])
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    encryption = (
        serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def webhook_server(settings: Settings) -> kopf.WebhookServer | None:
    """Build the webhook server the settings select; None when webhooks are off."""
    common: dict[str, Any] = {
        "addr": settings.webhook_listen_address,
        "port": settings.webhook_port,
        "certfile": settings.webhook_cert_file,
        "pkeyfile": settings.webhook_key_file,
        "cafile": settings.webhook_ca_file,
    }
    if settings.webhook_mode is WebhookMode.LOCAL:
        return LocalWebhookServer(host=settings.webhook_host, **common)
    if settings.webhook_mode is WebhookMode.SERVICE:
        assert settings.webhook_service_name and settings.webhook_service_namespace
        return ServiceWebhookServer(
            service_name=settings.webhook_service_name,
            service_namespace=settings.webhook_service_namespace,
            service_port=settings.webhook_service_port,
            extra_sans=[
                f"{settings.webhook_service_name}.{settings.webhook_service_namespace}.svc",
                f"{settings.webhook_service_name}.{settings.webhook_service_namespace}.svc.cluster.local",
            ],
            **common,
        )
    return None
