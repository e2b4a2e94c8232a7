"""Command line: ``python -m bench [operator|trainer] [--quick]``; both sections when none is named.

Prints the figures as a table and writes them to ``bench/results/<name>-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from typing import Any

from bench import machine, results
from bench.results import format_bytes, format_seconds

SECTIONS = ("operator", "trainer")


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Benchmarks of the operator and the trainer.")
    parser.add_argument("sections", nargs="*", metavar="SECTION", help="operator and/or trainer; both when none is given")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: fewer requests (3 single, one burst of 20) and 160 rows of trainer data")
    parser.add_argument("--profile", action="store_true",
                        help="run the operator under cProfile and print its top functions (slows the operator)")
    parser.add_argument("--name", help="file name prefix of the JSON results (default: the sections joined by '-')")
    arguments = parser.parse_args(argv)
    unknown = [section for section in arguments.sections if section not in SECTIONS]
    if unknown:
        parser.error(f"unknown section {', '.join(unknown)}; expected operator or trainer")
    return arguments


def latency_row(label: str, summary: dict[str, Any], floor: str = "") -> list[str]:
    ratio = summary.get("ratio_to_floor") or {}
    ratio_text = "-" if ratio.get("median") is None else f"{ratio['median']}x / {ratio['p95']}x"
    return [label, f"{format_seconds(summary['median'])} / {format_seconds(summary['p95'])} (n={summary['n']})",
            floor, ratio_text]


def operator_rows(figures: dict[str, Any]) -> list[list[str]]:
    floor = figures["floor"]
    rows = [
        latency_row("floor: create the operator's Job", floor["job_create_seconds"]),
        latency_row("floor: merge-patch a request status", floor["status_patch_seconds"]),
    ]
    for name, scenario in figures["scenarios"].items():
        prefix = f"{name}: "
        if "error" in scenario:
            rows.append([prefix + "failed", scenario["error"][:100], "", ""])
            continue
        rows.append(latency_row(prefix + "create call (with admission webhooks)", scenario["create_call_seconds"], "Job create"))
        rows.append(latency_row(prefix + "created -> Job exists", scenario["create_to_job_seconds"], "Job create"))
        rows.append(latency_row(prefix + "Job Complete -> FINISHED", scenario["job_complete_to_finished_seconds"], "status patch"))
        rows.append([prefix + "requests per second", f"{scenario['requests_per_second']:.2f} "
                     f"({scenario['finished']} finished, {scenario['failed']} failed, {scenario['wall_seconds']:.1f} s)", "", ""])
        rows.append([prefix + "operator CPU per request", f"{format_seconds(scenario['operator_cpu_seconds_per_request'])} "
                     f"({scenario['operator_cpu_share_of_one_core']:.0%} of one core)", "", ""])
        calls = scenario.get("api_calls_per_request")
        if calls:
            top = ", ".join(f"{key} {value}" for key, value in list(calls["by_call"].items())[:4])
            rows.append([prefix + "operator API calls per request", f"{calls['total']} ({top}, ...)", "", ""])
        deletion = scenario.get("deletion")
        if deletion and deletion.get("api_calls_per_request"):
            rows.append([prefix + "operator API calls per deletion", str(deletion["api_calls_per_request"]["total"]), "", ""])
    for moment, memory in figures["memory_bytes"].items():
        rows.append([f"operator VmRSS {moment.replace('_', ' ')}", format_bytes(memory.get("VmRSS")), "", ""])
    return rows


def trainer_rows(figures: dict[str, Any]) -> list[list[str]]:
    rows = []
    for method, run in figures["methods"].items():
        checkpoint = run["checkpoint_write_seconds"]
        metric = ", ".join(f"{key} {value:.3f}" for key, value in run["validation"].items())
        trainable = run["trainable_parameters"] or 0
        share = 100 * trainable / run["total_parameters"] if run.get("total_parameters") else 0
        rows += [
            [f"{method}: samples per second ({run['device']})", f"{run['samples_per_second']}", "", ""],
            [f"{method}: peak RSS of the trainer", format_bytes(run["peak_rss_bytes"]), "", ""],
            [f"{method}: trainable parameters", f"{trainable:,} ({share:.2f}%)", "", ""],
            [f"{method}: validation after {run['steps']} steps", metric, "", ""],
            [f"{method}: start -> first progress event", format_seconds(run["first_progress_event_seconds"]), "", ""],
            [f"{method}: checkpoint write (median / max)",
             f"{format_seconds(checkpoint['median'])} / {format_seconds(checkpoint['max'])} (n={checkpoint['n']})", "", ""],
        ]
    return rows


def print_table(document: dict[str, Any]) -> None:
    host = document["machine"]
    print(f"\nmachine: {host['cpu_model']}, {host['cores']} cores, {format_bytes(host['memory_bytes'])} memory, "
          f"GPU: {host.get('gpu', 'not checked')}, load average {host['load_average_1m_at_start']} at start")
    rows: list[list[str]] = []
    if "operator" in document:
        rows += operator_rows(document["operator"])
    if "trainer" in document:
        print(f"trainer: {document['trainer']['gpu']}")
        rows += trainer_rows(document["trainer"])
    print(results.render_table(rows, ["figure", "median / p95 or value", "floor", "ratio median / p95"]))


def print_profile(path: str) -> None:
    import pstats

    print(f"\noperator profile {path}, top functions by own time:")
    pstats.Stats(path).sort_stats("tottime").print_stats(25)
    print("top functions by cumulative time:")
    pstats.Stats(path).sort_stats("cumulative").print_stats(40)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    sections = arguments.sections or list(SECTIONS)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    started = time.monotonic()
    document: dict[str, Any] = {
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": arguments.quick,
        "machine": machine.describe(),
    }

    if "operator" in sections:
        from bench import operator_bench
        from tests.cluster.localcluster import REPO_ROOT

        sizes = operator_bench.QUICK_SIZES if arguments.quick else operator_bench.FULL_SIZES
        cluster = operator_bench.open_bench_cluster()
        try:
            # Outside the cluster's state directory, which is deleted when the benchmark started the cluster.
            log_path = REPO_ROOT / ".local" / "bench-logs" / "operator.log"
            profile_path = log_path.with_name("operator.prof") if arguments.profile else None
            document["operator"] = operator_bench.run(cluster, sizes, log_path, profile_path)
        finally:
            operator_bench.close_bench_cluster(cluster)
    if "trainer" in sections:
        from bench import trainer_bench

        document["trainer"] = trainer_bench.run(arguments.quick)

    document["total_seconds"] = round(time.monotonic() - started, 1)
    path = results.write(document, arguments.name or "-".join(sections))
    print_table(document)
    if document.get("operator", {}).get("operator_profile"):
        print_profile(document["operator"]["operator_profile"])
    print(f"\ntotal {document['total_seconds']:.0f} s; results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
