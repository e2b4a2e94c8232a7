"""Command line entry point of the trainer image: ``aiml-trainer run --config <path>``."""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aiml-trainer", description="Train or fine-tune a model as a TrainerConfig describes.")
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run one training or fine-tuning job")
    run_parser.add_argument("--config", type=pathlib.Path, default=pathlib.Path("/etc/aiml/config.json"), help="path of the TrainerConfig JSON document")
    arguments = parser.parse_args(argv)

    # stdout carries only progress events (JSON lines); logs go to stderr.
    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("AIML_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    _quiet_libraries()

    from .runner import run

    return run(arguments.config)


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:
        return
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


if __name__ == "__main__":
    sys.exit(main())
