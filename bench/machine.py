"""Description of the machine a benchmark ran on: CPU model, cores, memory, accelerators."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _gpu() -> str:
    try:
        import torch
    except ImportError:
        return "none (PyTorch not installed)"
    if torch.cuda.is_available():
        return ", ".join(torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count()))
    return "none"


def describe(include_gpu: bool = True) -> dict[str, Any]:
    """Return the CPU model, usable cores, total memory, load average and GPUs of this machine."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    machine: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cores": usable,
        "memory_bytes": _memory_bytes(),
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
    if include_gpu:
        machine["gpu"] = _gpu()
    return machine
