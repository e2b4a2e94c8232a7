"""Device, numeric precision and seeding.

CUDA is used when PyTorch sees a GPU, with bf16 autocast where the GPU supports it and fp16
(with gradient scaling) otherwise. On a CPU every run uses fp32: a requested FP16 or BF16 falls
back to FP32 and the report states the precision really used, because half-precision
autocast on CPUs without native support is slower and less accurate than fp32.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch
from ml_training_operator.protocol import Precision


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    precision: Precision
    autocast_dtype: torch.dtype | None
    note: str | None = None

    @property
    def device_name(self) -> str:
        if self.device.type == "cuda":
            return f"cuda:{torch.cuda.get_device_name(self.device)}"
        return "cpu"

    def autocast(self) -> torch.autocast:
        return torch.autocast(
            device_type=self.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=self.autocast_dtype is not None,
        )


def select_runtime(requested: Precision) -> Runtime:
    """Pick the device and the precision that can really be used for ``requested``."""
    if not torch.cuda.is_available():
        note = None
        if requested in (Precision.FP16, Precision.BF16):
            note = f"precision {requested.value} was requested but no GPU is available: training on CPU in FP32"
        return Runtime(torch.device("cpu"), Precision.FP32, None, note)

    device = torch.device("cuda")
    if requested is Precision.FP32:
        return Runtime(device, Precision.FP32, None)
    bf16 = torch.cuda.is_bf16_supported()
    if requested is Precision.FP16 or not bf16:
        note = "precision BF16 was requested but this GPU lacks bf16 support: using FP16" if requested is Precision.BF16 else None
        return Runtime(device, Precision.FP16, torch.float16, note)
    return Runtime(device, Precision.BF16, torch.bfloat16)


def seed_everything(seed: int, device: torch.device) -> None:
    """Seed every generator training touches and ask for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if device.type == "cuda":
        # cuBLAS needs this workspace setting before its first call to be deterministic.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
