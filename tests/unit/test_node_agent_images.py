"""Image table of the node agent: loading, lookup and command line rules."""

from pathlib import Path

import pytest

from tests.cluster.node_agent.image_table import (
    ImageEntry,
    ImageTable,
    UnknownImageError,
    load_image_table,
    normalize_image,
    resolve_argv,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("busybox", "busybox:latest"),
        ("busybox:1.36", "busybox:1.36"),
        ("docker.io/library/busybox:1.36", "busybox:1.36"),
        ("docker.io/bitnami/kubectl", "bitnami/kubectl:latest"),
        ("localhost:5000/app", "localhost:5000/app:latest"),
        ("ghcr.io/x/y@sha256:abc", "ghcr.io/x/y@sha256:abc"),
    ],
)
def test_normalize_image(image: str, expected: str) -> None:
    assert normalize_image(image) == expected


def test_lookup_first_match_wins() -> None:
    table = ImageTable(images=[ImageEntry(image="busybox:1.36", cmd=["first"]), ImageEntry(image="busybox:*", cmd=["second"])])

    assert table.lookup("busybox:1.36").cmd == ["first"]
    assert table.lookup("busybox").cmd == ["second"]
    assert table.lookup("docker.io/library/busybox:1.35").cmd == ["second"]
    assert table.lookup("alpine:3") is None


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        (None, None, ["/entry", "--default"]),
        (["run"], None, ["run"]),
        (None, ["--flag"], ["/entry", "--flag"]),
        (["run"], ["--flag"], ["run", "--flag"]),
    ],
)
def test_resolve_argv_kubernetes_rules(command, args, expected) -> None:
    entry = ImageEntry(image="x:*", entrypoint=["/entry"], cmd=["--default"])

    assert resolve_argv(entry, command, args) == expected


def test_resolve_argv_applies_alias_to_first_word() -> None:
    entry = ImageEntry(image="x:*", entrypoint=["tool"], aliases={"tool": ["/opt/python", "/opt/tool.py"]})

    assert resolve_argv(entry, None, ["run"]) == ["/opt/python", "/opt/tool.py", "run"]
    assert resolve_argv(entry, ["other", "tool"], None) == ["other", "tool"]


def test_load_expands_repo_placeholder(tmp_path: Path) -> None:
    table_file = tmp_path / "images.yaml"
    table_file.write_text(
        "images:\n"
        "  - image: 'a:*'\n"
        "    entrypoint: ['${REPO}/bin/a']\n"
        "    env: {PATH: '${REPO}/bin'}\n"
        "    aliases: {a: ['${REPO}/bin/real-a']}\n"
    )

    entry = load_image_table(table_file, Path("/repo")).lookup("a:1")

    assert entry.entrypoint == ["/repo/bin/a"]
    assert entry.env == {"PATH": "/repo/bin"}
    assert entry.aliases == {"a": ["/repo/bin/real-a"]}


def test_load_rejects_unknown_field(tmp_path: Path) -> None:
    table_file = tmp_path / "images.yaml"
    table_file.write_text("images:\n  - image: 'a:*'\n    command: ['x']\n")

    with pytest.raises(ValueError, match="command"):
        load_image_table(table_file, Path("/repo"))


def test_unknown_image_message_lists_patterns() -> None:
    error = UnknownImageError("nope:1", ["busybox:*", "alpine:*"])

    assert '"nope:1"' in str(error)
    assert "busybox:*, alpine:*" in str(error)


def test_repository_table_maps_project_images() -> None:
    table = load_image_table(REPO_ROOT / "tests" / "cluster" / "images.yaml", REPO_ROOT)
    trainer = table.lookup("ghcr.io/aiml-mns/aiml-trainer:0.1.0")
    operator = table.lookup("ghcr.io/aiml-mns/aiml-operator:latest")
    standin = table.lookup("aiml.mns.io/standin-trainer:test")

    assert resolve_argv(table.lookup("busybox:1.36"), ["sh", "-c", "true"], None) == ["sh", "-c", "true"]
    assert resolve_argv(trainer, ["aiml-trainer", "run"], None) == [f"{REPO_ROOT}/.venv/bin/aiml-trainer", "run"]
    assert resolve_argv(operator, None, None) == [f"{REPO_ROOT}/.venv/bin/aiml-operator"]
    standin_argv = resolve_argv(standin, ["aiml-trainer", "run"], None)
    assert standin_argv[-2:] == [f"{REPO_ROOT}/tests/cluster/standin_trainer.py", "run"]
    assert Path(standin_argv[0]).name.startswith("python")
