"""InfoNCE against hand-computed values on a 2-member batch (the arithmetic is written out below)."""

from __future__ import annotations

import math

import torch

from training.retrieval.loss import info_nce

TAU = 0.5
# Unit vectors so cosine = dot product:
MEMBER = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # m0, m1
POSITIVE = torch.tensor([[1.0, 0.0], [0.6, 0.8]])  # p0, p1
NEGATIVES = torch.tensor([[[0.0, 1.0]], [[0.8, 0.6]]])  # n0 (m0's), n1 (m1's); K = 1


def _ce(label_logit: float, logits: list[float]) -> float:
    return -label_logit + math.log(sum(math.exp(x) for x in logits))


def test_shared_negatives_hand_computed() -> None:
    # m0 · [p0, p1, n0, n1] = [1, 0.6, 0, 0.8]  → / τ = [2, 1.2, 0, 1.6], label p0
    # m1 · [p0, p1, n0, n1] = [0, 0.8, 1, 0.6]  → / τ = [0, 1.6, 2, 1.2], label p1
    expected = (_ce(2.0, [2.0, 1.2, 0.0, 1.6]) + _ce(1.6, [0.0, 1.6, 2.0, 1.2])) / 2
    got = info_nce(MEMBER, POSITIVE, NEGATIVES, TAU)
    assert math.isclose(got.item(), expected, rel_tol=1e-6)
    assert math.isclose(expected, 1.013143, abs_tol=1e-5)  # the number itself, so a shared bug cannot hide


def test_own_negatives_only_hand_computed() -> None:
    # m0 sees [p0, p1, n0] = [2, 1.2, 0]; m1 sees [p0, p1, n1] = [0, 1.6, 1.2]
    expected = (_ce(2.0, [2.0, 1.2, 0.0]) + _ce(1.6, [0.0, 1.6, 1.2])) / 2
    got = info_nce(MEMBER, POSITIVE, NEGATIVES, TAU, share_negatives=False)
    assert math.isclose(got.item(), expected, rel_tol=1e-6)


def test_in_batch_only() -> None:
    expected = (_ce(2.0, [2.0, 1.2]) + _ce(1.6, [0.0, 1.6])) / 2
    assert math.isclose(info_nce(MEMBER, POSITIVE, None, TAU).item(), expected, rel_tol=1e-6)


def test_missing_negative_is_masked_for_everyone() -> None:
    mask = torch.tensor([[True], [False]])  # m1 had no negative: its slot must not count anywhere
    expected = (_ce(2.0, [2.0, 1.2, 0.0]) + _ce(1.6, [0.0, 1.6, 2.0])) / 2
    got = info_nce(MEMBER, POSITIVE, NEGATIVES, TAU, negative_mask=mask)
    assert math.isclose(got.item(), expected, rel_tol=1e-6)


def test_same_post_as_own_positive_is_not_a_negative() -> None:
    # n1 is the same post as p0 (id 10): for m0 it is a false negative and is dropped; m1 keeps it.
    ids = torch.tensor([[10, 11], [12, 10]])
    expected = (_ce(2.0, [2.0, 1.2, 0.0]) + _ce(1.6, [0.0, 1.6, 2.0, 1.2])) / 2
    got = info_nce(MEMBER, POSITIVE, NEGATIVES, TAU, post_ids=ids)
    assert math.isclose(got.item(), expected, rel_tol=1e-6)


def test_gradient_pulls_member_towards_positive() -> None:
    member = MEMBER.clone().requires_grad_(True)
    info_nce(member, POSITIVE, NEGATIVES, TAU).backward()
    assert member.grad is not None
    # descending the loss must raise m0 · p0 (p0 = e0): the gradient's e0 component is negative
    assert member.grad[0, 0] < 0
