"""The Triton multi-item-scoring attention against the PyTorch reference: forward outputs and input gradients
over random jagged layouts (hypothesis), the cached-history inference path, and the dispatcher's checks.

Without a GPU these run in Triton's CPU interpreter (tests/conftest.py sets TRITON_INTERPRET=1) at small
shapes with 16 × 16 tiles, so lengths of 0–40 cross tile edges, the diagonal and the history's end; with a
GPU the same tests run compiled, and the ``gpu`` tests add serving-sized shapes in bf16.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import Kernel, cached_candidate_attention, jagged_attention

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# fp32 dots are IEEE on both paths; fp16/bf16 round q·k, the probabilities and the output
TOLERANCE = {torch.float32: 2e-5, torch.float16: 1e-2, torch.bfloat16: 3e-2}
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def offsets_of(lengths: list[int]) -> torch.Tensor:
    return torch.tensor([0, *torch.tensor(lengths, dtype=torch.long).cumsum(0).tolist()], device=DEVICE)


def inputs(
    total: int, heads: int, dim: int, dtype: torch.dtype, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return tuple(  # type: ignore[return-value]
        torch.randn(total, heads, dim, generator=g).to(DEVICE, dtype).requires_grad_() for _ in range(3)
    )


def compare(
    lengths: list[int], cands: list[int], heads: int, dim: int, dtype: torch.dtype, seed: int
) -> None:
    offsets, n_cand = offsets_of(lengths), torch.tensor(cands, device=DEVICE)
    q, k, v = inputs(sum(lengths), heads, dim, dtype, seed)
    got = jagged_attention(q, k, v, offsets, n_cand, kernel=Kernel.TRITON)
    want = jagged_attention(q, k, v, offsets, n_cand, kernel=Kernel.PYTORCH)
    tol = TOLERANCE[dtype]
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), want.float(), atol=tol, rtol=tol)
    if got.numel() == 0:
        return
    upstream = torch.randn(got.shape, generator=torch.Generator().manual_seed(seed + 1)).to(DEVICE, dtype)
    g_got = torch.autograd.grad(got, (q, k, v), upstream)
    g_want = torch.autograd.grad(want, (q, k, v), upstream)
    for name, a, b in zip("qkv", g_got, g_want, strict=True):
        torch.testing.assert_close(
            a.float(), b.float(), atol=4 * tol, rtol=4 * tol, msg=lambda m, n=name: f"d{n}: {m}"
        )


@st.composite
def layouts(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    lengths = draw(st.lists(st.integers(0, 40), min_size=1, max_size=4))
    cands = [draw(st.sampled_from(sorted({0, 1, n // 2, n}))) if n else 0 for n in lengths]
    return lengths, cands


@settings(max_examples=25, deadline=None)
@given(layouts(), st.integers(1, 2), st.sampled_from([8, 16, 24, 32]), st.integers(0, 2**16))
def test_forward_and_gradients_match_reference_fp32(
    layout: tuple[list[int], list[int]], heads: int, dim: int, seed: int
) -> None:
    compare(*layout, heads, dim, torch.float32, seed)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    ("lengths", "cands"),
    [([0, 1, 1], [0, 0, 1]), ([17, 33], [16, 1]), ([40, 5, 23], [8, 5, 0]), ([16, 32], [0, 16])],
)
def test_half_precision_matches_reference(lengths: list[int], cands: list[int], dtype: torch.dtype) -> None:
    compare(lengths, cands, 2, 32, dtype, seed=len(lengths))


def test_many_packed_members() -> None:
    g = torch.Generator().manual_seed(5)
    lengths = torch.randint(0, 12, (24,), generator=g).tolist()
    cands = [int(torch.randint(0, n + 1, (1,), generator=g)) for n in lengths]
    compare(lengths, cands, 2, 16, torch.float32, seed=5)


@settings(max_examples=15, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 40), st.integers(0, 20)), min_size=1, max_size=4),
    st.sampled_from([torch.float32, torch.bfloat16]),
    st.integers(0, 2**16),
)
def test_cached_history_path_matches_the_full_pass(
    members: list[tuple[int, int]], dtype: torch.dtype, seed: int
) -> None:
    """Candidates scored against cached history K/V equal the candidate rows of the full jagged pass."""
    hist, cand = [h for h, _ in members], [c for _, c in members]
    H, D = 2, 16
    q, k, v = (t.detach() for t in inputs(sum(hist) + sum(cand), H, D, dtype, seed))
    full_offsets = offsets_of([h + c for h, c in members])
    is_cand = torch.zeros(q.shape[0], dtype=torch.bool, device=DEVICE)
    for b, (h, c) in enumerate(members):
        start = int(full_offsets[b])
        is_cand[start + h : start + h + c] = True
    want = jagged_attention(q, k, v, full_offsets, torch.tensor(cand, device=DEVICE))[is_cand]
    args = (q[is_cand], k[is_cand], v[is_cand], offsets_of(cand), k[~is_cand], v[~is_cand], offsets_of(hist))
    tol = TOLERANCE[dtype]
    with torch.no_grad():
        for kernel in (Kernel.TRITON, Kernel.PYTORCH):
            got = cached_candidate_attention(*args, kernel=kernel)
            torch.testing.assert_close(got.float(), want.float(), atol=tol, rtol=tol)


def test_cached_path_refuses_autograd() -> None:
    q = torch.randn(3, 1, 16, device=DEVICE, requires_grad=True)
    kh = torch.randn(4, 1, 16, device=DEVICE)
    offsets = torch.tensor([0, 3], device=DEVICE)
    with pytest.raises(NotImplementedError, match="inference"):
        cached_candidate_attention(
            q, q, q, offsets, kh, kh, torch.tensor([0, 4], device=DEVICE), kernel=Kernel.TRITON
        )


def test_triton_path_checks_dtypes_and_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    offsets, n_cand = torch.tensor([0, 4]), torch.tensor([1])
    q = torch.randn(4, 1, 16)
    with pytest.raises(TypeError, match="one dtype"):
        jagged_attention(q, q.half(), q, offsets, n_cand, kernel=Kernel.TRITON)
    with pytest.raises(TypeError, match="fp32, fp16 or bf16"):
        jagged_attention(q.double(), q.double(), q.double(), offsets, n_cand, kernel=Kernel.TRITON)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="CUDA"):  # no silent fallback to the reference on CPU
        jagged_attention(q, q, q, offsets, n_cand, kernel=Kernel.TRITON)


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_serving_sized_batch_on_gpu(dtype: torch.dtype) -> None:
    compare([1024 + 64, 300, 2048 + 512, 1], [64, 0, 512, 1], 2, 32, dtype, seed=11)


@gpu
@pytest.mark.gpu
def test_head_dim_128_on_gpu() -> None:
    compare([700, 129], [100, 129], 4, 128, torch.bfloat16, seed=12)


@pytest.mark.parametrize(("block_m", "block_n"), [(32, 16), (16, 64)])
def test_explicit_tiles_of_unequal_sizes(block_m: int, block_n: int) -> None:
    """Query and key tiles of different sizes (the autotuner's configs are like this) size the two grids."""
    from kernels.pytorch.pt_jagged_attention import pt_jagged_attention
    from kernels.triton.triton_jagged_attention import BlockConfig, triton_jagged_attention

    cfg = BlockConfig(block_m, block_n, 4, 2)
    lengths, cands = [70, 9, 33], [20, 9, 1]
    offsets, n_cand = offsets_of(lengths), torch.tensor(cands, device=DEVICE)
    q, k, v = inputs(sum(lengths), 2, 16, torch.float32, seed=3)
    got = triton_jagged_attention(q, k, v, offsets, n_cand, fwd_config=cfg, bwd_config=cfg)
    want = pt_jagged_attention(q, k, v, offsets, n_cand)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-5)
    for a, b in zip(
        torch.autograd.grad(got.sum(), (q, k, v)), torch.autograd.grad(want.sum(), (q, k, v)), strict=True
    ):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_reference_stays_fp32_under_autocast() -> None:
    """Inside a bf16 autocast region (GPU training) the reference keeps its fp32 math and buffers."""
    q = torch.randn(30, 2, 16, device=DEVICE)
    offsets, n_cand = torch.tensor([0, 12, 30], device=DEVICE), torch.tensor([3, 5], device=DEVICE)
    with torch.autocast(DEVICE, dtype=torch.bfloat16):
        out = jagged_attention(q, q, q, offsets, n_cand, kernel=Kernel.PYTORCH)
    torch.testing.assert_close(out, jagged_attention(q, q, q, offsets, n_cand), atol=0, rtol=0)
