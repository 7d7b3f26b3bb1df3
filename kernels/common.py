"""What every op in ``kernels/`` shares: the choice of implementation."""

from __future__ import annotations

import enum


class Kernel(enum.StrEnum):
    """Which implementation a public op dispatches to. PYTORCH is the reference (plain torch, fp32 math);
    TRITON is the fused kernel (GPU, or the CPU interpreter under ``TRITON_INTERPRET=1``)."""

    PYTORCH = "pytorch"
    TRITON = "triton"
