"""Random GR ranker inputs with served shapes (torch only, so the GPU machine can run them)."""

from __future__ import annotations

import torch

from training.ranking.features import CONTEXT_FEATURES, DEVICES
from training.ranking.model import GRConfig, RankerInputs


def request_inputs(
    cfg: GRConfig, history: int, candidates: int, seed: int = 0, members: int = 1
) -> RankerInputs:
    """``members`` members, each with ``history`` past interactions and ``candidates`` posts to score;
    post embeddings ``cfg.item_emb_dim`` wide, ids hashed like real ones, ages sorted oldest first."""
    g = torch.Generator().manual_seed(seed)
    e, em = cfg.item_emb_dim, cfg.member_emb_dim
    h, n = history * members, candidates * members
    return RankerInputs(
        hist_item=torch.randn(h, e, generator=g),
        hist_post_id=torch.randint(1, 1 << 40, (h,), generator=g),
        hist_author_id=torch.randint(1, 1 << 30, (h,), generator=g),
        hist_action=torch.randint(0, 64, (h,), generator=g),
        hist_age_s=torch.sort(
            torch.rand(members, history, generator=g) * 3e7, descending=True
        ).values.reshape(-1),
        hist_offsets=torch.arange(members + 1) * history,
        cand_item=torch.randn(n, e, generator=g),
        cand_post_id=torch.randint(1, 1 << 40, (n,), generator=g),
        cand_author_id=torch.randint(1, 1 << 30, (n,), generator=g),
        cand_device=torch.randint(0, len(DEVICES), (n,), generator=g),
        cand_context=torch.rand(n, len(CONTEXT_FEATURES), generator=g),
        cand_offsets=torch.arange(members + 1) * candidates,
        profile=torch.randint(1, 1 << 40, (members, cfg.profile_fields), generator=g),
        member_emb=torch.randn(members, em, generator=g),
        member_emb_present=torch.ones(members, dtype=torch.bool),
    )
