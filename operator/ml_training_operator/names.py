"""Names the operator reads and writes in the cluster: API coordinates, labels, annotations.

Kept in one place because the webhook, the handlers, the Job builder and the status
endpoint must agree on them byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "aiml.mns.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str


TRAINING_REQUEST = Kind("MLTrainingRequest", "mltrainingrequests")
FINE_TUNING_REQUEST = Kind("MLFineTuningRequest", "mlfinetuningrequests")
ML_MODEL = Kind("MLModel", "mlmodels")
REQUEST_KINDS = (TRAINING_REQUEST, FINE_TUNING_REQUEST)


def request_kind(kind_or_plural: str) -> Kind:
    """Return the request kind for a kind name or plural; raise KeyError for anything else."""
    for candidate in REQUEST_KINDS:
        if kind_or_plural in (candidate.kind, candidate.plural):
            return candidate
    raise KeyError(f"not a request kind: {kind_or_plural!r}")


# Identity of the requester, written by the mutating webhook on create. The API server's
# admission userInfo is the only source, so a client cannot forge them.
ANNOTATION_REQUESTER_USERNAME = f"{GROUP}/requester-username"
ANNOTATION_REQUESTER_GROUPS = f"{GROUP}/requester-groups"
ANNOTATION_REQUESTER_UID = f"{GROUP}/requester-uid"
REQUESTER_ANNOTATIONS = (ANNOTATION_REQUESTER_USERNAME, ANNOTATION_REQUESTER_GROUPS, ANNOTATION_REQUESTER_UID)

# Labels on every Job, Pod and ConfigMap that belongs to a request.
LABEL_REQUEST_UID = f"{GROUP}/request-uid"
LABEL_REQUEST_KIND = f"{GROUP}/request-kind"
LABEL_REQUEST_NAME = f"{GROUP}/request-name"
LABEL_ATTEMPT = f"{GROUP}/attempt"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
MANAGED_BY = "aiml-operator"

LABEL_KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"
# Set by the Job controller on the Pods it creates (Kubernetes 1.27 and later).
LABEL_JOB_NAME = "batch.kubernetes.io/job-name"

# Prefix of the annotations where Kopf keeps its handler progress and diff base.
KOPF_STORAGE_PREFIX = GROUP
FINALIZER = f"{GROUP}/cleanup"

TRAINER_CONTAINER = "trainer"


def progress_audience(namespace: str, plural: str, name: str) -> str:
    """Return the token audience that binds a trainer's progress token to one request."""
    return f"{GROUP}/progress/{namespace}/{plural}/{name}"


def progress_path(namespace: str, plural: str, name: str) -> str:
    """Return the URL path of a request's progress endpoint."""
    return f"/{VERSION}/namespaces/{namespace}/{plural}/{name}/progress"
