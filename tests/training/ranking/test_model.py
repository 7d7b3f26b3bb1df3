"""GR ranker invariants: causality, shared-context == per-candidate scoring, candidate independence, bad
input."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from training.ranking.features import CONTEXT_FEATURES
from training.ranking.model import GenerativeRanker, GRConfig, RankerInputs, per_candidate_inputs

E = 16


def make_inputs(hist: list[int], cands: list[int], seed: int = 0, member_dim: int = 0) -> RankerInputs:
    g = torch.Generator().manual_seed(seed)
    B, H, N = len(hist), sum(hist), sum(cands)
    ho = torch.tensor([0, *torch.tensor(hist).cumsum(0).tolist()])
    co = torch.tensor([0, *torch.tensor(cands).cumsum(0).tolist()])
    return RankerInputs(
        hist_item=torch.randn(H, E, generator=g),
        hist_post_id=torch.randint(1, 10**12, (H,), generator=g),
        hist_author_id=torch.randint(0, 50, (H,), generator=g),
        hist_action=torch.randint(0, 64, (H,), generator=g),
        hist_age_s=torch.rand(H, generator=g) * 1e6,
        hist_offsets=ho,
        cand_item=torch.randn(N, E, generator=g),
        cand_post_id=torch.randint(1, 10**12, (N,), generator=g),
        cand_author_id=torch.randint(0, 50, (N,), generator=g),
        cand_device=torch.randint(0, 5, (N,), generator=g),
        cand_context=torch.rand(N, len(CONTEXT_FEATURES), generator=g),
        cand_offsets=co,
        profile=torch.randint(0, 1 << 40, (B, 2), generator=g),
        member_emb=torch.randn(B, member_dim, generator=g),
        member_emb_present=torch.ones(B, dtype=torch.bool),
    )


CONFIGS = [
    GRConfig(item_emb_dim=E, dropout=0.0),
    GRConfig(item_emb_dim=E, dropout=0.0, action_encoding="interleave", fusion="early", head="shared"),
    GRConfig(item_emb_dim=E, dropout=0.0, fusion="none", member_emb_dim=8),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.action_encoding}-{c.fusion}-{c.head}")
def test_shared_context_equals_per_candidate(cfg: GRConfig) -> None:
    torch.manual_seed(0)
    model = GenerativeRanker(cfg).eval()
    x = make_inputs([30, 0, 7], [5, 3, 1], member_dim=cfg.member_emb_dim)
    with torch.no_grad():
        shared, single = model(x), model(per_candidate_inputs(x))
    assert shared.shape == (9, 6)
    torch.testing.assert_close(shared, single, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("encoding", ["sum", "interleave"])
def test_causal_history_never_sees_the_future(encoding: str) -> None:
    torch.manual_seed(0)
    model = GenerativeRanker(GRConfig(item_emb_dim=E, dropout=0.0, action_encoding=encoding)).eval()
    x = make_inputs([12], [2])
    later = replace(x, hist_item=x.hist_item.clone(), hist_action=x.hist_action.clone())
    later.hist_item[8] += 3.0  # perturb the 9th interaction (item and action)
    later.hist_action[8] = (int(x.hist_action[8]) + 1) % 64
    with torch.no_grad():
        a, b = model.encode(x), model.encode(later)
    rows = a.hist_row
    torch.testing.assert_close(a.outputs[rows[:8]], b.outputs[rows[:8]])  # earlier positions unchanged
    assert not torch.allclose(a.outputs[rows[8]], b.outputs[rows[8]])
    assert not torch.allclose(a.outputs[a.cand_row], b.outputs[b.cand_row])  # candidates read it


def test_candidates_do_not_influence_each_other() -> None:
    torch.manual_seed(0)
    model = GenerativeRanker(GRConfig(item_emb_dim=E, dropout=0.0)).eval()
    x = make_inputs([20], [4])
    other = replace(x, cand_item=x.cand_item.clone(), cand_context=x.cand_context.clone())
    other.cand_item[1] += 2.0
    other.cand_context[1] = 0.5
    with torch.no_grad():
        a, b = model(x), model(other)
    keep = torch.tensor([0, 2, 3])
    torch.testing.assert_close(a[keep], b[keep])
    assert not torch.allclose(a[1], b[1])


def test_cold_start_scores_from_context() -> None:
    torch.manual_seed(0)
    model = GenerativeRanker(GRConfig(item_emb_dim=E, dropout=0.0)).eval()
    x = make_inputs([0, 0], [3, 2])
    with torch.no_grad():
        out = model(x)
    assert out.shape == (5, 6)
    assert torch.isfinite(out).all()
    changed = replace(x, cand_context=x.cand_context + 1.0)
    with torch.no_grad():
        assert not torch.allclose(model(changed), out)  # context still moves the score


def test_history_longer_than_max_keeps_the_newest() -> None:
    torch.manual_seed(0)
    model = GenerativeRanker(GRConfig(item_emb_dim=E, dropout=0.0, max_history=8)).eval()
    x = make_inputs([20], [2])
    newest = replace(
        x,
        hist_item=x.hist_item[12:],
        hist_post_id=x.hist_post_id[12:],
        hist_author_id=x.hist_author_id[12:],
        hist_action=x.hist_action[12:],
        hist_age_s=x.hist_age_s[12:],
        hist_offsets=torch.tensor([0, 8]),
    )
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(newest))


def test_nan_context_is_missing_not_poison() -> None:
    torch.manual_seed(0)
    model = GenerativeRanker(GRConfig(item_emb_dim=E, dropout=0.0)).eval()
    x = make_inputs([5], [3])
    ctx = x.cand_context.clone()
    ctx[0, 2] = float("nan")
    with torch.no_grad():
        out = model(replace(x, cand_context=ctx))
        zero = ctx.clone()
        zero[0, 2] = 0.0
        as_zero = model(replace(x, cand_context=zero))
    assert torch.isfinite(out).all()
    assert not torch.allclose(out[0], as_zero[0])  # the missing flag is an input of its own
    torch.testing.assert_close(out[1:], as_zero[1:])


def test_unknown_post_ids_get_a_hashed_row() -> None:
    torch.manual_seed(0)
    model = GenerativeRanker(GRConfig(item_emb_dim=0, dropout=0.0)).eval()
    x = make_inputs([4], [2])
    x = replace(x, hist_item=torch.zeros(4, 0), cand_item=torch.zeros(2, 0))
    other = replace(x, cand_post_id=x.cand_post_id + 1)  # ids never seen before
    with torch.no_grad():
        assert not torch.allclose(model(x), model(other))


def test_loss_is_weighted_and_backpropagates() -> None:
    torch.manual_seed(0)
    model = GenerativeRanker(GRConfig(item_emb_dim=E))
    x = make_inputs([6, 3], [2, 2])
    logits = model(x)
    total, per_task = model.loss(logits, torch.randint(0, 2, (4, 6)).float())
    total.backward()
    assert per_task.shape == (6,)
    assert all(p.grad is not None for p in model.backbone.parameters())


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="multiple of n_heads"):
        GRConfig(d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="task_weights"):
        GRConfig(task_weights=(1.0,))
    with pytest.raises(ValueError, match="unknown GRConfig"):
        GRConfig.from_dict({"d_modle": 3})


def test_backbone_checks_the_jagged_layout_once_for_all_blocks() -> None:
    from training.ranking.model import GRBackbone

    backbone = GRBackbone(GRConfig(d_model=8, n_heads=2, n_layers=2))
    tokens = torch.randn(5, 8)
    assert backbone(tokens, torch.tensor([0, 3, 5]), torch.tensor([1, 0])).shape == (5, 8)
    with pytest.raises(ValueError, match="seq_offsets must run from 0"):
        backbone(tokens, torch.tensor([0, 3, 4]), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="num_candidates"):
        backbone(tokens, torch.tensor([0, 3, 5]), torch.tensor([4, 0]))


@pytest.mark.parametrize("cfg", CONFIGS[:2], ids=lambda c: f"{c.action_encoding}-{c.fusion}-{c.head}")
def test_triton_kernel_gives_the_reference_scores_and_gradients(cfg: GRConfig) -> None:
    """The same weights with kernel='triton' (interpreter on CPU, compiled on a GPU) and 'pytorch': logits and
    every parameter gradient agree within fp32 tolerance."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    x = make_inputs([40, 0, 17, 1], [5, 3, 1, 1]).to(device)
    labels = torch.randint(0, 2, (10, 6), generator=torch.Generator().manual_seed(1)).float().to(device)
    grads, logits = [], []
    for kernel in ("pytorch", "triton"):
        torch.manual_seed(0)
        model = GenerativeRanker(replace(cfg, kernel=kernel)).to(device)
        out = model(x)
        model.loss(out, labels)[0].backward()
        logits.append(out.detach())
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    torch.testing.assert_close(logits[1], logits[0], atol=1e-4, rtol=1e-4)
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-4, rtol=1e-3, msg=name)


def test_kernel_setting() -> None:
    from kernels import Kernel
    from kernels.common import resolve_kernel

    assert resolve_kernel("auto", torch.device("cpu")) == Kernel.PYTORCH
    assert resolve_kernel("auto", torch.device("cuda")) == Kernel.TRITON
    assert resolve_kernel("triton", torch.device("cpu")) == Kernel.TRITON  # explicit: never swapped
    with pytest.raises(ValueError, match="kernel must be one of"):
        GRConfig(kernel="cuda")
