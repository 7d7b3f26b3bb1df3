"""The reference jagged attention against a naive per-sequence softmax with the mask written out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import jagged_attention


def naive(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: list[int], cands: list[int]
) -> torch.Tensor:
    out = torch.zeros_like(q, dtype=torch.float64)
    start = 0
    for length, n_cand in zip(lengths, cands, strict=True):
        n_hist = length - n_cand
        for i in range(length):
            keys = list(range(i + 1)) if i < n_hist else [*range(n_hist), i]
            qi = q[start + i].double()  # (H, D)
            ks, vs = (
                k[start + torch.tensor(keys)].double(),
                v[start + torch.tensor(keys)].double(),
            )  # (K, H, D)
            w = torch.einsum("hd,khd->hk", qi, ks) / math.sqrt(q.shape[-1])
            out[start + i] = torch.einsum("hk,khd->hd", w.softmax(-1), vs)
        start += length
    return out


@st.composite
def jagged(draw: st.DrawFn) -> tuple[list[int], list[int], int, int]:
    lengths = draw(st.lists(st.integers(0, 9), min_size=1, max_size=4))
    cands = [draw(st.integers(0, n)) for n in lengths]
    return lengths, cands, draw(st.integers(1, 3)), draw(st.sampled_from([1, 4, 8]))


@settings(max_examples=40, deadline=None)
@given(jagged())
def test_matches_naive_mask(case: tuple[list[int], list[int], int, int]) -> None:
    lengths, cands, heads, dim = case
    T = sum(lengths)
    g = torch.Generator().manual_seed(T * 31 + heads)
    q, k, v = (torch.randn(T, heads, dim, generator=g) for _ in range(3))
    offsets = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
    got = jagged_attention(q, k, v, offsets, torch.tensor(cands))
    torch.testing.assert_close(got.double(), naive(q, k, v, lengths, cands), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_returns_input_dtype(dtype: torch.dtype) -> None:
    q = torch.randn(10, 2, 8).to(dtype)
    out = jagged_attention(q, q, q, torch.tensor([0, 6, 10]), torch.tensor([2, 0]))
    assert out.dtype == dtype
    ref = jagged_attention(q.float(), q.float(), q.float(), torch.tensor([0, 6, 10]), torch.tensor([2, 0]))
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)


def test_backward_matches_naive() -> None:
    q, k, v = (torch.randn(7, 1, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    offsets, cands = torch.tensor([0, 3, 7]), torch.tensor([1, 2])
    jagged_attention(q, k, v, offsets, cands).sum().backward()
    grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    naive(q, k, v, [3, 4], [1, 2]).sum().backward()
    for got, want in zip(grads, (q.grad, k.grad, v.grad), strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)  # the reference computes in fp32


def test_candidates_do_not_see_each_other() -> None:
    q = torch.randn(8, 2, 4)
    offsets, cands = torch.tensor([0, 8]), torch.tensor([3])
    base = jagged_attention(q, q, q, offsets, cands)
    changed = q.clone()
    changed[6] += 5.0  # the second of three candidates
    out = jagged_attention(changed, changed, changed, offsets, cands)
    torch.testing.assert_close(out[:6], base[:6])  # history and the first candidate
    torch.testing.assert_close(out[7], base[7])  # the third candidate
    assert not torch.allclose(out[6], base[6])


@pytest.mark.parametrize(
    ("offsets", "cands", "message"),
    [
        ([0, 3, 5], [4, 0], "num_candidates"),
        ([0, 3, 4], [0, 0], "seq_offsets must run from 0"),
        ([0, 4, 3, 5], [0, 0, 0], "non-decreasing"),
    ],
)
def test_bad_layout_raises(offsets: list[int], cands: list[int], message: str) -> None:
    q = torch.randn(5, 1, 2)
    with pytest.raises(ValueError, match=message):
        jagged_attention(q, q, q, torch.tensor(offsets), torch.tensor(cands))


def test_empty_batch() -> None:
    q = torch.zeros(0, 2, 4)
    assert jagged_attention(q, q, q, torch.tensor([0]), torch.zeros(0, dtype=torch.long)).shape == (0, 2, 4)


def test_length_groups_match_one_padded_group() -> None:
    from kernels.pytorch.pt_jagged_attention import pt_jagged_attention

    g = torch.Generator().manual_seed(3)
    lengths = torch.randint(0, 30, (21,), generator=g)
    cands = torch.minimum(torch.randint(0, 6, (21,), generator=g), lengths)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    q, k, v = (torch.randn(int(offsets[-1]), 2, 8, generator=g) for _ in range(3))
    grouped = pt_jagged_attention(q, k, v, offsets, cands, group_size=4)
    single = pt_jagged_attention(q, k, v, offsets, cands, group_size=64)
    torch.testing.assert_close(grouped, single, atol=1e-6, rtol=1e-5)
    assert torch.isfinite(grouped).all()
