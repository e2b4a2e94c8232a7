"""The operator benchmark's quick path on the shared test cluster, with a handful of requests.

It checks that the benchmark runs end to end and writes complete figures. It sets no
timing thresholds, because speed targets belong to the benchmark and not to tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import operator_bench, results
from tests.conftest import ClusterHandle

pytestmark = pytest.mark.cluster

SIZES = operator_bench.Sizes(single_runs=2, bursts=(3,), minimal_bursts=(3,), floor_samples=3, burst_timeout_seconds=180)
LATENCIES = ("create_call_seconds", "create_to_job_seconds", "job_complete_to_finished_seconds")


def positive(value: object) -> bool:
    return isinstance(value, (int, float)) and value > 0


def test_operator_bench_quick_writes_figures(cluster: ClusterHandle, tmp_path: Path) -> None:
    figures = operator_bench.run(cluster, SIZES, tmp_path / "operator.log")
    path = results.write({"operator": figures}, "smoke", tmp_path)
    document = json.loads(path.read_text())["operator"]

    for key in ("job_create_seconds", "status_patch_seconds"):
        assert positive(document["floor"][key]["median"]), document["floor"]
    assert set(document["scenarios"]) == {"single", "burst_3", "burst_3_minimal"}
    for name, scenario in document["scenarios"].items():
        assert scenario["finished"] == scenario["requests"], (name, scenario)
        assert positive(scenario["requests_per_second"]), (name, scenario)
        assert positive(scenario["operator_cpu_seconds_per_request"]), (name, scenario)
        for key in LATENCIES:
            assert positive(scenario[key]["median"]), (name, key, scenario[key])
            assert positive(scenario[key]["p95"]), (name, key, scenario[key])
            assert positive(scenario[key]["ratio_to_floor"]["median"]), (name, key, scenario[key])
        if cluster.local.audit:
            assert positive(scenario["api_calls_per_request"]["total"]), (name, scenario)
    assert positive(document["memory_bytes"]["idle"]["VmRSS"])
    assert positive(document["memory_bytes"]["after_burst_3_minimal_finished"]["VmRSS"])
