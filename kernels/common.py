"""What every op in ``kernels/`` shares: the choice of implementation."""

from __future__ import annotations

import enum
import os

import torch


class Kernel(enum.StrEnum):
    """Which implementation a public op dispatches to. PYTORCH is the reference (plain torch, fp32 math);
    TRITON is the fused kernel (GPU, or the CPU interpreter under ``TRITON_INTERPRET=1``)."""

    PYTORCH = "pytorch"
    TRITON = "triton"


TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def triton_interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``, set before import)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def check_triton_inputs(data: tuple[torch.Tensor, ...], index: tuple[torch.Tensor, ...] = ()) -> None:
    """The Triton path's device and dtype checks (the dispatcher's, once per call): every tensor on one
    device, that device CUDA unless the interpreter runs; data in fp32/fp16/bf16 of one dtype; index
    tensors integer. Raises instead of falling back to the reference."""
    if data[0].dtype not in TRITON_DTYPES or any(t.dtype != data[0].dtype for t in data):
        raise TypeError(
            f"Kernel.TRITON takes fp32, fp16 or bf16 inputs of one dtype, got {[t.dtype for t in data]}"
        )
    if any(t.is_floating_point() for t in index):
        raise TypeError("offsets and counts must be integer tensors")
    device = data[0].device
    if any(t.device != device for t in (*data, *index)):
        raise ValueError(
            f"Kernel.TRITON needs every input on one device, got {[str(t.device) for t in (*data, *index)]}"
        )
    if device.type != "cuda" and not triton_interpreting():
        raise RuntimeError(
            f"Kernel.TRITON runs on CUDA tensors (got {device.type}); on CPU set TRITON_INTERPRET=1 before "
            "importing triton (tests), or use Kernel.PYTORCH"
        )


KERNEL_CHOICES = ("auto", *(k.value for k in Kernel))


def resolve_kernel(choice: str | Kernel, device: torch.device) -> Kernel:
    """A model's or an evaluation's kernel setting → the implementation for tensors on ``device``.

    ``"auto"`` is Triton on CUDA and the PyTorch reference elsewhere — the setting models keep, so a GR
    trained on a GPU still serves on a CPU. An explicit ``"triton"`` stays Triton (and the op raises on a
    CPU without the interpreter): nothing is swapped behind an explicit choice."""
    if choice == "auto":
        return Kernel.TRITON if device.type == "cuda" else Kernel.PYTORCH
    try:
        return Kernel(choice)
    except ValueError:
        raise ValueError(f"kernel must be one of {KERNEL_CHOICES}, got {choice!r}") from None
