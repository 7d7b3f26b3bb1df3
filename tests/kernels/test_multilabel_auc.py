"""kernels.multilabel_auc against sklearn's roc_auc_score, column by column (ties, one-class columns, half
precision, bad inputs)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from kernels import Kernel, multilabel_auc


def sklearn_auc(scores: np.ndarray, labels: np.ndarray) -> list[float]:
    out = []
    for j in range(scores.shape[1]):
        y = labels[:, j]
        out.append(float(roc_auc_score(y, scores[:, j])) if 0 < y.sum() < len(y) else math.nan)
    return out


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # the Triton kernel: compiled, or interpreted on CPU
KERNELS = [Kernel.PYTORCH, Kernel.TRITON]
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def assert_matches_sklearn(
    scores: torch.Tensor, labels: torch.Tensor, kernel: Kernel = Kernel.PYTORCH
) -> None:
    device = DEVICE if kernel == Kernel.TRITON else "cpu"
    got = multilabel_auc(scores.to(device), labels.to(device), kernel=kernel).cpu()
    assert got.shape == (scores.shape[1],)
    assert got.dtype == torch.float64
    want = sklearn_auc(scores.double().numpy(), labels.numpy())
    np.testing.assert_allclose(got.numpy(), np.array(want), rtol=0, atol=1e-12, equal_nan=True)


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 60),
    t=st.integers(1, 5),
    levels=st.integers(1, 6),  # few distinct scores → many ties
    p=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**31 - 1),
    kernel=st.sampled_from(KERNELS),
    dtype=st.sampled_from([torch.float32, torch.int64, torch.float64]),
)
def test_matches_sklearn_on_tie_heavy_scores(
    n: int, t: int, levels: int, p: float, seed: int, kernel: Kernel, dtype: torch.dtype
) -> None:
    g = torch.Generator().manual_seed(seed)
    scores = (torch.randint(0, levels, (n, t), generator=g) - levels // 2).to(dtype)  # negatives and ±0 too
    labels = (torch.rand(n, t, generator=g) < p).to(torch.int64)
    assert_matches_sklearn(scores, labels, kernel)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 300), levels=st.integers(1, 400), seed=st.integers(0, 2**31 - 1))
def test_triton_chunks_agree_with_the_reference(n: int, levels: int, seed: int) -> None:
    """Small chunks (16) put tie groups across chunk edges, the case the kernel's binary search handles."""
    from kernels.triton.triton_multilabel_auc import triton_multilabel_auc

    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, levels, (n, 3), generator=g).float() * 0.5
    labels = (torch.rand(n, 3, generator=g) < 0.3).to(torch.int64)
    got = triton_multilabel_auc(scores.to(DEVICE), labels.to(DEVICE), block=16).cpu()
    want = multilabel_auc(scores, labels)
    torch.testing.assert_close(got, want, atol=0, rtol=0, equal_nan=True)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("n", [1, 2, 3, 1000])
def test_matches_sklearn_on_continuous_scores(n: int, kernel: Kernel) -> None:
    g = torch.Generator().manual_seed(n)
    scores = torch.randn(n, 4, generator=g)
    labels = (torch.rand(n, 4, generator=g) < torch.tensor([0.05, 0.3, 0.5, 0.9])).float()
    assert_matches_sklearn(scores, labels, kernel)


def test_single_class_columns_are_nan_and_others_unaffected() -> None:
    scores = torch.tensor([[0.1, 0.1, 0.9], [0.4, 0.2, 0.8], [0.35, 0.3, 0.1], [0.8, 0.4, 0.5]])
    labels = torch.tensor([[0, 0, 1], [0, 0, 1], [1, 0, 1], [1, 0, 0]], dtype=torch.bool)
    got = multilabel_auc(scores, labels)
    assert got.isnan().tolist() == [False, True, False]
    assert got[0].item() == pytest.approx(roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]))  # 0.75
    # N=1 and N=0: no column has both classes
    assert multilabel_auc(torch.tensor([[0.3, 0.7]]), torch.tensor([[1, 0]])).isnan().all()
    assert multilabel_auc(torch.zeros(0, 3), torch.zeros(0, 3)).isnan().all()
    assert multilabel_auc(torch.zeros(5, 0), torch.zeros(5, 0)).shape == (0,)


def test_ties_get_half_credit() -> None:
    # every positive tied with every negative → 0.5; perfect and reversed orders → 1 and 0
    labels = torch.tensor([0, 1, 0, 1])
    assert multilabel_auc(torch.ones(4), labels).item() == 0.5
    assert multilabel_auc(torch.tensor([0.0, 1.0, 0.0, 1.0]), labels).item() == 1.0
    assert multilabel_auc(torch.tensor([1.0, 0.0, 1.0, 0.0]), labels).item() == 0.0


def test_one_dimensional_inputs_are_one_task() -> None:
    scores, labels = torch.tensor([0.2, 0.9, 0.4]), torch.tensor([0, 1, 1])
    got = multilabel_auc(scores, labels)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(roc_auc_score(labels.numpy(), scores.numpy()))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_scores_match_sklearn_on_the_same_values(dtype: torch.dtype, kernel: Kernel) -> None:
    g = torch.Generator().manual_seed(7)
    scores = torch.randn(3000, 3, generator=g).to(dtype)  # bf16: 8 mantissa bits → plenty of ties
    labels = (torch.rand(3000, 3, generator=g) < 0.2).to(torch.int32)
    assert_matches_sklearn(scores, labels, kernel)


def test_large_n_is_exact_and_sane() -> None:
    n = 2_000_000
    g = torch.Generator().manual_seed(0)
    labels = torch.rand(n, 2, generator=g) < 0.5
    noise = torch.randn(n, 2, generator=g)
    scores = torch.stack([labels[:, 0] + noise[:, 0], noise[:, 1]], dim=1)  # signal vs none
    got = multilabel_auc(scores, labels)
    # d' = 1 → AUC = Φ(1/√2) ≈ 0.7602; random scores → 0.5
    assert got[0].item() == pytest.approx(0.7602, abs=2e-3)
    assert got[1].item() == pytest.approx(0.5, abs=2e-3)
    # integer-valued scores: ties everywhere, rank sums far past float32's exact range
    ints = torch.randint(0, 50, (n, 1), generator=g).float()
    want = roc_auc_score(labels[:, :1].numpy().ravel(), ints.numpy().ravel())
    assert multilabel_auc(ints, labels[:, :1]).item() == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        (torch.rand(4, 2, 1), torch.ones(4, 2, 1), "must be 2-D"),
        (torch.rand(4, 2), torch.ones(4, 3), "same shape"),
        (torch.rand(4), torch.ones(4, 1), "same shape|must be 2-D"),
        (torch.rand(4, 2), torch.full((4, 2), 2.0), "binary"),
        (torch.rand(4, 2), torch.full((4, 2), 0.5), "binary"),
        (torch.tensor([[0.1], [float("nan")]]), torch.tensor([[0], [1]]), "finite"),
    ],
)
def test_bad_inputs_raise(scores: torch.Tensor, labels: torch.Tensor, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        multilabel_auc(scores, labels)


def test_triton_is_not_silently_replaced_by_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            multilabel_auc(torch.rand(4, 2), torch.ones(4, 2), kernel=Kernel.TRITON)
    with pytest.raises(ValueError, match="not a valid Kernel"):
        multilabel_auc(torch.rand(4, 2), torch.ones(4, 2), kernel="cuda")  # type: ignore[arg-type]


@gpu
@pytest.mark.gpu
def test_six_tasks_by_a_million_on_gpu() -> None:
    g = torch.Generator().manual_seed(1)
    labels = torch.rand(1_000_000, 6, generator=g) < 0.1
    scores = (torch.randn(1_000_000, 6, generator=g) + labels).to(torch.bfloat16)  # continuous + many ties
    got = multilabel_auc(scores.cuda(), labels.cuda(), kernel=Kernel.TRITON).cpu()
    want = multilabel_auc(scores, labels)
    torch.testing.assert_close(got, want, atol=0, rtol=0)
