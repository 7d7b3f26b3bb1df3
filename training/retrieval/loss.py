"""InfoNCE over in-batch + per-member easy and hard negatives.

For member i the candidate set is every post embedded in the batch: the B positives (column i is the label;
the other members' positives are the in-batch negatives) and, with ``share_negatives=True`` (the default), the
B×K explicit negatives of ALL members — another member's hard negative is just one more (usually easy)
negative for member i and costs nothing extra, since it is already encoded. With ``share_negatives=False``
member i sees the B positives plus only its own K negatives.

    loss_i = −log( exp(s_ii / τ) / Σ_c exp(s_ic / τ) ),   s = cosine (the inputs are L2-normalised)

Masks: ``negative_mask`` (B, K) marks which explicit negatives exist (members may have fewer hard negatives
than k); ``post_ids`` (B, 1+K) gives each encoded post an identity (positive first) so that a candidate equal
to member i's own positive — the same post drawn as another member's positive or negative — is not counted
against it (a false negative).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(
    member: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor | None,
    temperature: float,
    *,
    negative_mask: torch.Tensor | None = None,
    post_ids: torch.Tensor | None = None,
    share_negatives: bool = True,
) -> torch.Tensor:
    """Mean InfoNCE loss. member, positive: (B, D); negatives: (B, K, D) or None; returns a scalar."""
    assert member.dim() == 2, "member must be (B, D)"
    assert member.shape == positive.shape, "member and positive must both be (B, D)"
    assert temperature > 0, "temperature must be positive"
    b = member.shape[0]
    k = 0 if negatives is None else negatives.shape[1]
    if negatives is not None:
        assert negatives.dim() == 3
        assert negatives.shape[0] == b
        assert negatives.shape[2] == member.shape[1]
    valid_neg = (
        torch.ones(b, k, dtype=torch.bool, device=member.device)
        if negative_mask is None
        else negative_mask.to(torch.bool)
    )  # (B, K)

    logits = member @ positive.T  # (B, B): column j = member j's positive
    invalid = torch.zeros(b, b, dtype=torch.bool, device=member.device)
    if k:
        assert negatives is not None
        if share_negatives:
            neg_logits = member @ negatives.reshape(b * k, -1).T  # (B, B*K)
            neg_invalid = (~valid_neg).reshape(1, b * k).expand(b, b * k)
        else:
            neg_logits = torch.einsum("bd,bkd->bk", member, negatives)  # (B, K)
            neg_invalid = ~valid_neg
        logits = torch.cat([logits, neg_logits], dim=1)
        invalid = torch.cat([invalid, neg_invalid], dim=1)

    if post_ids is not None:
        assert post_ids.shape == (b, 1 + k), "post_ids must be (B, 1+K): the positive, then the negatives"
        own = post_ids[:, :1]  # (B, 1)
        cand = post_ids[:, 0].unsqueeze(0).expand(b, b)  # in-batch positives
        if k:
            negs = post_ids[:, 1:]
            cand = torch.cat([cand, negs.reshape(1, b * k).expand(b, b * k) if share_negatives else negs], 1)
        duplicate = cand == own
        duplicate[:, :b] &= ~torch.eye(b, dtype=torch.bool, device=member.device)  # keep the label itself
        invalid |= duplicate

    logits = (logits / temperature).masked_fill(invalid, float("-inf"))
    labels = torch.arange(b, device=member.device)
    return F.cross_entropy(logits.float(), labels)
