"""Image table: how a container image maps to a local command.

No container runtime runs on the development machines, so the node agent cannot pull or
unpack images. Instead each image the tests use is described by an entry in a YAML table
(``tests/cluster/images.yaml``) that plays the role of the image's configuration: its
ENTRYPOINT, CMD and environment. An entry can also rewrite the first word of the final
command line (``aliases``), because a Pod spec names programs by their path inside the
image (``aiml-trainer``, ``/usr/local/bin/aiml-trainer``) while here they live elsewhere.

The final command line follows the Kubernetes rules for ``command`` and ``args``:

- neither set: ``entrypoint + cmd`` of the entry;
- ``command`` only: ``command`` (the entry's ``cmd`` is ignored);
- ``args`` only: ``entrypoint + args``;
- both: ``command + args``.

Then, when the first word of that command line is a key of ``aliases``, it is replaced by
the alias's word list. ``${REPO}`` in any string of the table expands to the repository
root, so the table works from any checkout.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

REPO_PLACEHOLDER = "${REPO}"


class ImageEntry(BaseModel):
    """One image (or a glob of images) and the local command that stands in for it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    image: str = Field(description="exact image reference or fnmatch glob, e.g. busybox:*")
    entrypoint: list[str] = Field(default_factory=list)
    cmd: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    working_dir: str | None = Field(default=None, alias="workingDir")
    aliases: dict[str, list[str]] = Field(default_factory=dict)


class ImageTable(BaseModel):
    """Ordered image entries; the first entry whose pattern matches wins."""

    model_config = ConfigDict(extra="forbid")

    images: list[ImageEntry]

    def lookup(self, image: str) -> ImageEntry | None:
        """Return the first entry matching ``image`` after normalisation, or None."""
        normalized = normalize_image(image)
        for entry in self.images:
            if fnmatch.fnmatchcase(normalized, normalize_image(entry.image)):
                return entry
        return None

    def patterns(self) -> list[str]:
        """Return every image pattern in table order, for error messages."""
        return [entry.image for entry in self.images]


class UnknownImageError(LookupError):
    """The image has no entry in the image table."""

    def __init__(self, image: str, patterns: list[str]) -> None:
        self.image = image
        self.patterns = patterns
        super().__init__(
            f'image "{image}" is not in the node agent image table; mapped images: '
            f"{', '.join(patterns) or '(none)'}. Add an entry to tests/cluster/images.yaml."
        )


def normalize_image(image: str) -> str:
    """Strip the default registry prefixes and add ``:latest`` when no tag or digest is given."""
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/"):
        if image.startswith(prefix):
            image = image[len(prefix):]
            break
    last_segment = image.rsplit("/", 1)[-1]
    if ":" not in last_segment and "@" not in last_segment:
        image += ":latest"
    return image


def expand_repo(value: str, repo_root: Path) -> str:
    return value.replace(REPO_PLACEHOLDER, str(repo_root))


def load_image_table(path: Path, repo_root: Path) -> ImageTable:
    """Read the YAML table at ``path`` and expand ``${REPO}`` to ``repo_root``."""
    raw = yaml.safe_load(path.read_text())
    if isinstance(raw, list):
        raw = {"images": raw}
    table = ImageTable.model_validate(raw)
    for entry in table.images:
        entry.entrypoint = [expand_repo(word, repo_root) for word in entry.entrypoint]
        entry.cmd = [expand_repo(word, repo_root) for word in entry.cmd]
        entry.env = {name: expand_repo(value, repo_root) for name, value in entry.env.items()}
        entry.aliases = {
            name: [expand_repo(word, repo_root) for word in words] for name, words in entry.aliases.items()
        }
        if entry.working_dir is not None:
            entry.working_dir = expand_repo(entry.working_dir, repo_root)
    return table


def resolve_argv(entry: ImageEntry, command: list[str] | None, args: list[str] | None) -> list[str]:
    """Build the host command line for a container from its image entry, command and args."""
    if command:
        argv = list(command) + list(args or [])
    elif args:
        argv = list(entry.entrypoint) + list(args)
    else:
        argv = list(entry.entrypoint) + list(entry.cmd)

    if argv and argv[0] in entry.aliases:
        argv = list(entry.aliases[argv[0]]) + argv[1:]
    return argv
