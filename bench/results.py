"""Summary statistics, the printed table and the JSON file of a benchmark run."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def summarize(samples: Iterable[float]) -> dict[str, Any]:
    """Return the count, median, 95th percentile (nearest rank), minimum and maximum of samples in seconds."""
    values = sorted(samples)
    if not values:
        return {"n": 0, "median": None, "p95": None, "min": None, "max": None}
    rank = max(1, math.ceil(0.95 * len(values)))
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p95": values[rank - 1],
        "min": values[0],
        "max": values[-1],
    }


def with_ratio(summary: dict[str, Any], floor: dict[str, Any]) -> dict[str, Any]:
    """Add the median and p95 of a latency as multiples of the floor's median."""
    base = floor.get("median")
    ratio = {}
    for key in ("median", "p95"):
        value = summary.get(key)
        ratio[key] = round(value / base, 1) if value is not None and base else None
    return {**summary, "ratio_to_floor": ratio}


def write(document: dict[str, Any], name: str, directory: Path = RESULTS_DIR) -> Path:
    """Write the results as ``<directory>/<name>-<UTC timestamp>.json`` and return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{name}-{stamp}.json"
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    return path


def format_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def format_bytes(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 2**20:.0f} MiB"


def render_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """Render rows as a plain-text table with left-aligned columns."""
    widths = [max(len(str(row[column])) for row in [header, *rows]) for column in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * width for width in widths))
    for row in rows:
        lines.append("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
    return "\n".join(lines)
