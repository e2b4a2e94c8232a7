"""URIs in the API (data sources, output, model artifacts): typed parsing and CEL patterns.

``ml_training_operator.uris`` owns the rules for what a URI may name. This module applies
them to API fields, so that each error names the field it came from, and it holds the
regular expressions the CRD's CEL rules use. Those expressions accept a subset of what
``uris.parse_uri`` accepts (a unit test checks both on the same table of URIs), so any
URI that the API server stores also parses in the operator.
"""

from __future__ import annotations

from ..uris import DATA_SCHEMES, MODEL_SCHEMES, OUTPUT_SCHEMES, InvalidUriError, ParsedUri, parse_uri

# Characters of a path segment in a volume, as uris.parse_uri allows them: no '/', no
# backslash, no NUL. A segment must not be '..'; other dot-only segments are allowed.
_SEGMENT_CHAR = r"[^/\\\x00]"
_NON_DOT_CHAR = r"[^/.\\\x00]"
_NAMED_SEGMENT = rf"({_SEGMENT_CHAR}*{_NON_DOT_CHAR}{_SEGMENT_CHAR}*|[.]|[.]{{3,}})"
_ANY_SEGMENT = rf"({_SEGMENT_CHAR}*{_NON_DOT_CHAR}{_SEGMENT_CHAR}*|[.]?|[.]{{3,}})"
# A relative path: no leading '/', so its first segment is not empty.
_RELATIVE_PATH = rf"{_NAMED_SEGMENT}(/{_ANY_SEGMENT})*"

_OBJECT_NAME = r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?"
_CONFIGMAP_KEY = r"([-._a-zA-Z0-9]*[-_a-zA-Z0-9][-._a-zA-Z0-9]*|[.]|[.]{3,})"
_MODULE = r"[A-Za-z_][A-Za-z0-9_]*([.][A-Za-z_][A-Za-z0-9_]*)*"
_IMAGE_SEGMENT = r"([^/]*[^/.][^/]*|[.]?|[.]{3,})"

_PVC = rf"pvc://{_OBJECT_NAME}(/({_RELATIVE_PATH})?)?"
# NOTE: the pattern does not cap a key at 253 characters as uris.parse_uri does; the
# API server rejects such keys in ConfigMaps, so no such object can exist anyway.
_CONFIGMAP = rf"configmap://{_OBJECT_NAME}/{_CONFIGMAP_KEY}"
_IMAGE = rf"image://(/{_IMAGE_SEGMENT})+"
_PYTHON_PACKAGE = rf"python-package://{_MODULE}(/({_RELATIVE_PATH})?)?"

DATA_SOURCE_PATTERN = rf"^({_PVC}|{_CONFIGMAP})$"
OUTPUT_URI_PATTERN = rf"^{_PVC}$"
ARTIFACT_URI_PATTERN = rf"^({_PVC}|{_IMAGE}|{_PYTHON_PACKAGE})$"

DATA_SOURCE_FORMS = "pvc://<claimName>/<path> or configmap://<configMapName>/<key>"
OUTPUT_URI_FORMS = "pvc://<claimName>/<path>"
ARTIFACT_URI_FORMS = "pvc://<claimName>/<path>, image:///<absolute path> or python-package://<module>[/<subpath>]"


class UriFieldError(InvalidUriError):
    """Raised for an invalid URI in an API field; the message names the field and the accepted forms."""


def _parse(uri: str, schemes: tuple[str, ...], field: str, forms: str) -> ParsedUri:
    try:
        return parse_uri(uri, schemes)
    except InvalidUriError as error:
        raise UriFieldError(f"{field}: {error} (expected {forms})") from error


def parse_data_source(uri: str, field: str = "spec.candidateTrainingDataSource") -> ParsedUri:
    """Parse one ``candidateTrainingDataSource`` entry (a PVC path or a ConfigMap key)."""
    return _parse(uri, DATA_SCHEMES, field, DATA_SOURCE_FORMS)


def parse_output_uri(uri: str, field: str = "spec.output.uri") -> ParsedUri:
    """Parse the ``output.uri`` of a request (a PVC path)."""
    return _parse(uri, OUTPUT_SCHEMES, field, OUTPUT_URI_FORMS)


def parse_artifact_uri(uri: str, field: str = "spec.artifact.uri") -> ParsedUri:
    """Parse an MLModel's ``artifact.uri`` (a PVC path, a path in the trainer image, or a Python package)."""
    return _parse(uri, MODEL_SCHEMES, field, ARTIFACT_URI_FORMS)
