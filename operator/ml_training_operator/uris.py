"""Parsing and checking of the URIs that name data, outputs and model artifacts.

Requests may name only objects of their own namespace: ``pvc://<claim>/<path>`` and
``configmap://<name>/<key>``. Models may also live in the trainer image
(``image:///<absolute path>``) or in a Python package installed there
(``python-package://<module>[/<subpath>]``). Every check that a path stays inside its
volume happens here, so the webhook and the Job builder cannot disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DATA_SCHEMES = ("pvc", "configmap")
OUTPUT_SCHEMES = ("pvc",)
MODEL_SCHEMES = ("pvc", "image", "python-package")

# RFC 1123 label rules for PVC names, and ConfigMap names and keys as the API server checks them.
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class InvalidUriError(ValueError):
    """Raised for a URI outside the accepted schemes or with an unsafe path."""


@dataclass(frozen=True)
class ParsedUri:
    """A URI split into scheme, source object (claim, ConfigMap, module) and path inside it."""

    scheme: str
    source: str
    path: str

    def pod_path(self, root: str) -> str:
        """Return the path in the Pod when ``source`` is mounted at ``<root>/<scheme>/<source>``."""
        base = f"{root}/{self.scheme}/{self.source}"
        return f"{base}/{self.path}" if self.path else base


def _check_relative_path(uri: str, path: str) -> None:
    if path.startswith("/"):
        raise InvalidUriError(f"{uri!r}: the path inside the volume must be relative, without a leading '/'")
    segments = path.split("/")
    if ".." in segments:
        raise InvalidUriError(f"{uri!r}: a '..' segment is not allowed; name a path inside the volume")
    if "\\" in path or "\x00" in path:
        raise InvalidUriError(f"{uri!r}: backslashes and NUL characters are not allowed in the path")


def parse_uri(uri: str, schemes: tuple[str, ...] = DATA_SCHEMES + MODEL_SCHEMES) -> ParsedUri:
    """Split and check a URI; raise InvalidUriError saying what is accepted."""
    scheme, separator, rest = uri.partition("://")
    if not separator or scheme not in schemes:
        accepted = ", ".join(f"{name}://" for name in schemes)
        raise InvalidUriError(f"{uri!r}: unsupported URI; accepted schemes are {accepted}")

    if scheme == "image":
        if not rest.startswith("/"):
            raise InvalidUriError(f"{uri!r}: image:// needs an absolute path, e.g. image:///models/base")
        if ".." in rest.split("/"):
            raise InvalidUriError(f"{uri!r}: a '..' segment is not allowed")
        return ParsedUri(scheme, "", rest)

    source, _, path = rest.partition("/")
    if scheme == "python-package":
        if not _MODULE.match(source):
            raise InvalidUriError(f"{uri!r}: {source!r} is not a Python module name")
        _check_relative_path(uri, path)
        return ParsedUri(scheme, source, path)

    if not _DNS_SUBDOMAIN.match(source):
        raise InvalidUriError(f"{uri!r}: {source!r} is not a valid object name (lower case RFC 1123)")
    _check_relative_path(uri, path)
    if scheme == "configmap":
        if not path or "/" in path or not _CONFIGMAP_KEY.match(path):
            raise InvalidUriError(f"{uri!r}: expected configmap://<name>/<key> with a single valid key")
    return ParsedUri(scheme, source, path.rstrip("/"))
