"""Why a post was ranked where it was: the history post each candidate attended to most, and a short text.

The attention share comes from the GR's LAST transformer block. A forward pre-hook on that block keeps its
input ``x`` (T, d) during the ranking pass; afterwards the block's own ``ln1`` and ``qkv`` give the queries
and keys again (two small matmuls — the model code is not touched, and the ranking pass itself is not slowed
down by materialising attention matrices). For a candidate query the real multi-item mask allows every
history key of its member and the candidate's own key, so the softmax denominator here includes that own key
too; the weights are averaged over heads. With ``action_encoding="interleave"`` a history interaction is two
tokens (item, then its action): both count towards the interaction, so the shares of the two are summed.

torch + numpy only (the schema import is pydantic).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from serving.schemas import Why
from serving.types import MemberOnline, PostTable, ScoreResult
from training.ranking.features import ENGAGED_MASK
from training.ranking.model import Layout


class HistoryAttention(NamedTuple):
    """Per candidate (N rows of the batch, in candidate order)."""

    index: torch.Tensor  # (N,) int64: the member-local history item (0 = oldest kept) attended most; -1 none
    weight: torch.Tensor  # (N,) float32: its share of the candidate's attention, averaged over heads


class BlockInputCapture:
    """Records the input of ``block`` during a forward pass (``with capture.active(): model(inputs)``)."""

    def __init__(self, block: nn.Module) -> None:
        self.block = block
        self.x: torch.Tensor | None = None

    @contextmanager
    def active(self) -> Iterator[BlockInputCapture]:
        """Record while inside the block. Only this thread's passes are recorded: the service may run
        several requests' passes on the shared model at once, each with its own capture."""
        owner = threading.get_ident()

        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            if threading.get_ident() == owner:
                self.x = args[0]

        self.x = None
        handle = self.block.register_forward_pre_hook(hook)
        try:
            yield self
        finally:
            handle.remove()


def history_attention(
    block: nn.Module,
    x: torch.Tensor,
    layout: Layout,
    hist_offsets: torch.Tensor,
    cand_offsets: torch.Tensor,
    per_item: int,
) -> HistoryAttention:
    """The most attended history interaction of every candidate in the last block (see the module doc).

    ``block`` is a :class:`training.ranking.model.Block` (``ln1``, ``qkv``, ``n_heads``), ``x`` (T, d) its
    input, ``layout`` the :func:`training.ranking.model.jagged_layout` of the pass (same offsets, after the
    model's ``max_history`` truncation), ``per_item`` 1 (sum) or 2 (interleave)."""
    T, d = x.shape
    nh = int(block.n_heads)  # type: ignore[arg-type]
    hs = d // nh
    qk = block.qkv(block.ln1(x.float()))[:, : 2 * d].view(T, 2, nh, hs)  # (T, 2, nh, hs): q and k only
    q, k = qk[:, 0], qk[:, 1]
    scale = 1.0 / math.sqrt(hs)
    n = int(cand_offsets[-1])
    index = torch.full((n,), -1, dtype=torch.long, device=x.device)
    weight = torch.zeros(n, dtype=torch.float32, device=x.device)
    hist_len = (hist_offsets[1:] - hist_offsets[:-1]).tolist()
    seq_start = layout.seq_offsets[:-1].tolist()
    bounds = cand_offsets.tolist()
    for b, h in enumerate(hist_len):
        lo, hi = bounds[b], bounds[b + 1]
        if h == 0 or hi == lo:
            continue
        rows = layout.cand_row[lo:hi]
        qc = q[rows]  # (n_b, nh, hs)
        kh = k[seq_start[b] : seq_start[b] + h * per_item]  # (L, nh, hs) history tokens
        s_hist = torch.einsum("nhd,lhd->nhl", qc, kh) * scale  # (n_b, nh, L)
        s_self = (qc * k[rows]).sum(-1) * scale  # (n_b, nh): the candidate's own key
        top = torch.maximum(s_hist.amax(-1), s_self)
        e_hist = torch.exp(s_hist - top.unsqueeze(-1))
        denom = e_hist.sum(-1) + torch.exp(s_self - top)  # (n_b, nh)
        share = (e_hist / denom.unsqueeze(-1)).mean(1)  # (n_b, L) averaged over heads
        if per_item > 1:
            share = share.view(hi - lo, h, per_item).sum(-1)  # item token + its action token
        w, i = share.max(-1)
        index[lo:hi], weight[lo:hi] = i, w
    return HistoryAttention(index, weight)


def why_text(
    member: MemberOnline,
    *,
    topic: str | None = None,
    author_id: int = 0,
    history_post_id: int = -1,
    attention: float | None = None,
) -> Why:
    """A short reason for one served post: the history post it attended to most (``history_post_id`` −1:
    none, e.g. an empty history or no ranker), the topic it shares with the member's top topics and whether
    its author is one of the member's top authors ("you follow this author")."""
    parts: list[str] = []
    post = int(history_post_id) if history_post_id is not None and history_post_id >= 0 else None
    share = None if attention is None or post is None or not math.isfinite(attention) else float(attention)
    if post is not None:
        verb = "engaged with" if _engaged(member, post) else "saw"
        parts.append(
            f"like post {post} you {verb}" + (f" (attention {share:.2f})" if share is not None else "")
        )
    shared_topic = topic if topic and topic in member.top_topics else None
    if shared_topic:
        parts.append(f"topic: {shared_topic}")
    followed = bool(author_id) and bool(np.isin(int(author_id), member.top_author_ids))
    if followed:
        parts.append("you follow this author")
    return Why(
        text="; ".join(parts) if parts else "suggested for your profile",
        history_post_id=post,
        attention=share,
        topic=shared_topic,
        followed_author=followed,
    )


def explain(member: MemberOnline, candidates: PostTable, result: ScoreResult, order: np.ndarray) -> list[Why]:
    """:func:`why_text` for the candidates at ``order`` (e.g. the diversified top k) of one scored member."""
    return [
        why_text(
            member,
            topic=str(candidates.topic[i]) or None,
            author_id=int(candidates.author_id[i]),
            history_post_id=int(result.why_post_id[i]),
            attention=float(result.why_weight[i]),
        )
        for i in np.asarray(order, dtype=np.int64)
    ]


def _engaged(member: MemberOnline, post_id: int) -> bool:
    """Whether the member's newest interaction with ``post_id`` was an engagement (DESIGN.md); without a
    sequence, the engaged history is all there is."""
    if member.sequence_post_ids is not None and member.sequence_actions is not None:
        hits = np.flatnonzero(np.asarray(member.sequence_post_ids) == post_id)
        return bool(hits.size) and bool(int(np.asarray(member.sequence_actions)[hits[-1]]) & ENGAGED_MASK)
    return bool(np.isin(post_id, member.engaged_post_ids))
