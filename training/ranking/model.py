"""The Generative Recommender (GR) ranker: a member's interactions as a token sequence, a causal transformer
over them, the candidates appended to the same pass, late fusion of per-candidate context and an MMoE head
with six tasks.

Sequence of member b (jagged, no padding)::

    [ item_1 (+ action_1) … item_h (+ action_h) | cand_1 … cand_n ]
      history, oldest → newest, causal             each sees the whole history and itself only

* History tokens: projected post embedding + hashed post-id embedding + recency-rank and age-bucket
  embeddings; the impression's six labels become an action embedding, summed into the item token
  (``action_encoding="sum"``) or given their own token right after it (``"interleave"``, 2h history tokens).
* Candidate tokens: the same item encoding with a "candidate" type instead of an action and one shared
  position, so a candidate's score does not depend on which other candidates share the pass.
* Late fusion (LinkedIn's choice): device, member profile, member embedding and member–author/topic affinities
  are concatenated to the transformer's output at each candidate, never in the attention path, so the
  history's attention stays independent of the request context and can be cached. ``"early"`` adds the
  context to the candidate token instead and ``"none"`` drops it (ablations).
* MMoE (Ma et al. 2018): shared experts, one softmax gate and one tower per task (passive: click, skip,
  long_dwell; active: like, comment, share); ``head="shared"`` is one MLP with six outputs (ablation).

Attention goes through :func:`kernels.jagged_attention` with the multi-item scoring mask.
Imports torch (and numpy, through the shared feature vocabulary) only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from kernels import check_layout, jagged_attention
from kernels.common import KERNEL_CHOICES, resolve_kernel
from training.ranking.features import CONTEXT_FEATURES, DEVICES, N_ACTIONS, TASKS

TOKEN_HISTORY_ITEM, TOKEN_HISTORY_ACTION, TOKEN_CANDIDATE = 0, 1, 2
GOLDEN_INT64 = -7046029254386353131  # 0x9E3779B97F4A7C15 (Fibonacci hashing) as a signed int64
N_AGE_BUCKETS = 32  # log2 buckets of minutes: bucket 31 ≈ 4,000 years, so every real age fits


@dataclass(frozen=True)
class GRConfig:
    d_model: int = 64
    n_heads: int = 2
    n_layers: int = 2
    ffn_mult: int = 4
    dropout: float = 0.1
    max_history: int = 1024  # newest interactions kept per member; older ones are dropped
    item_emb_dim: int = 384  # width of the post embeddings fed in (0: ids only, e.g. MovieLens)
    hash_buckets: int = 1 << 18  # hashed post-id table; collisions are shared, unknown ids still get a row
    author_buckets: int = 1 << 16  # hashed author-id table (row 0: author unknown)
    action_encoding: Literal["sum", "interleave"] = "sum"
    fusion: Literal["late", "early", "none"] = "late"
    head: Literal["mmoe", "shared"] = "mmoe"
    n_experts: int = 4
    expert_dim: int = 64
    context_dim: int = len(CONTEXT_FEATURES)  # numeric per-candidate context features (C); NaN = missing
    context_hidden: int = 32
    n_devices: int = len(DEVICES)
    profile_buckets: int = 4096  # hashed member profile fields (industry, current_role)
    profile_fields: int = 2
    member_emb_dim: int = 0  # width of the retrieval member embedding (0: not used)
    task_weights: tuple[float, ...] = (1.0, 0.5, 1.0, 1.0, 1.0, 1.0)  # click, skip, long_dwell, like, …
    kernel: str = "auto"  # attention implementation: auto (Triton on CUDA, else PyTorch), pytorch, triton

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be a multiple of n_heads={self.n_heads}")
        if len(self.task_weights) != len(TASKS):
            raise ValueError(f"task_weights needs {len(TASKS)} values ({', '.join(TASKS)})")
        if self.action_encoding not in ("sum", "interleave"):
            raise ValueError(f"action_encoding must be 'sum' or 'interleave', got {self.action_encoding!r}")
        if self.fusion not in ("late", "early", "none"):
            raise ValueError(f"fusion must be 'late', 'early' or 'none', got {self.fusion!r}")
        if self.head not in ("mmoe", "shared"):
            raise ValueError(f"head must be 'mmoe' or 'shared', got {self.head!r}")
        if self.max_history < 0:
            raise ValueError("max_history must be ≥ 0")
        if self.kernel not in KERNEL_CHOICES:
            raise ValueError(f"kernel must be one of {KERNEL_CHOICES}, got {self.kernel!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GRConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown GRConfig fields: {sorted(unknown)}")
        out = dict(values)
        if "task_weights" in out:
            out["task_weights"] = tuple(out["task_weights"])
        return cls(**out)


@dataclass
class RankerInputs:
    """One jagged batch as the model reads it (B members; H history rows; N candidates)."""

    hist_item: torch.Tensor  # (H, E) float post embeddings (E may be 0)
    hist_post_id: torch.Tensor  # (H,) int64
    hist_author_id: torch.Tensor  # (H,) int64, 0 = unknown
    hist_action: torch.Tensor  # (H,) int64 action code 0..63
    hist_age_s: torch.Tensor  # (H,) float seconds between the interaction and the request (≥ 0)
    hist_offsets: torch.Tensor  # (B+1,) int64
    cand_item: torch.Tensor  # (N, E)
    cand_post_id: torch.Tensor  # (N,) int64
    cand_author_id: torch.Tensor  # (N,) int64, 0 = unknown
    cand_device: torch.Tensor  # (N,) int64
    cand_context: torch.Tensor  # (N, C) float32, NaN = missing
    cand_offsets: torch.Tensor  # (B+1,) int64
    profile: torch.Tensor  # (B, P) int64 hashed profile fields (0 = missing)
    member_emb: torch.Tensor  # (B, Em) float
    member_emb_present: torch.Tensor  # (B,) bool

    def to(self, device: torch.device | str, non_blocking: bool = False) -> RankerInputs:
        moved = {
            f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **moved)

    def select(
        self,
        *,
        hist: tuple[torch.Tensor | slice, torch.Tensor] | None = None,
        cand: tuple[torch.Tensor | slice, torch.Tensor] | None = None,
        members: torch.Tensor | slice | None = None,
    ) -> RankerInputs:
        """A new batch from (rows, offsets) of the history and/or candidate fields and an index of the
        per-member fields; whatever is not given is kept as it is."""
        out: dict[str, torch.Tensor] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("hist_") and hist is not None:
                out[f.name] = hist[1] if f.name == "hist_offsets" else value[hist[0]]
            elif f.name.startswith("cand_") and cand is not None:
                out[f.name] = cand[1] if f.name == "cand_offsets" else value[cand[0]]
            elif not f.name.startswith(("hist_", "cand_")) and members is not None:
                out[f.name] = value[members]
        return replace(self, **out)

    def truncated(self, max_history: int) -> RankerInputs:
        """Keep the newest ``max_history`` interactions of every member (rows are oldest → newest)."""
        lengths = self.hist_offsets[1:] - self.hist_offsets[:-1]
        if lengths.numel() == 0 or int(lengths.max()) <= max_history:
            return self
        member, local = segments(self.hist_offsets)
        keep = local >= (lengths[member] - max_history)
        return self.select(hist=(keep, offsets_of(lengths.clamp(max=max_history))))

    @classmethod
    def from_batch(cls, batch: Any, post_table: torch.Tensor, post_author: torch.Tensor) -> RankerInputs:
        """From a ``training.data.packing.PackedBatch`` (row indices), the post table (P+1, E) and the posts'
        authors (P+1,): gather the post vectors and authors, turn timestamps into ages relative to each
        member's request."""
        hist_lengths = batch.hist_offsets[1:] - batch.hist_offsets[:-1]
        request = torch.repeat_interleave(batch.request_ts, hist_lengths)
        return cls(
            hist_item=post_table[batch.hist_post_idx],
            hist_post_id=batch.hist_post_id,
            hist_author_id=post_author[batch.hist_post_idx],
            hist_action=batch.hist_action.long(),
            hist_age_s=(request - batch.hist_ts).clamp(min=0).float(),
            hist_offsets=batch.hist_offsets,
            cand_item=post_table[batch.cand_post_idx],
            cand_post_id=batch.cand_post_id,
            cand_author_id=post_author[batch.cand_post_idx],
            cand_device=batch.cand_device.long(),
            cand_context=batch.cand_context,
            cand_offsets=batch.cand_offsets,
            profile=batch.profile,
            member_emb=batch.member_emb,
            member_emb_present=batch.member_emb_present,
        )


def offsets_of(lengths: torch.Tensor) -> torch.Tensor:
    """(B,) lengths → (B+1,) offsets starting at 0."""
    offsets = lengths.new_zeros(lengths.numel() + 1)
    offsets[1:] = torch.cumsum(lengths, 0)
    return offsets


def segments(offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For every row of a jagged batch: (its sequence b, its index inside that sequence)."""
    lengths = offsets[1:] - offsets[:-1]
    segment = torch.repeat_interleave(torch.arange(lengths.numel(), device=offsets.device), lengths)
    local = torch.arange(segment.numel(), device=offsets.device) - offsets[:-1][segment]
    return segment, local


def hash_ids(ids: torch.Tensor, buckets: int) -> torch.Tensor:
    """A fixed multiplicative hash of int64 ids into [1, buckets) (row 0 stays free for padding). int64
    multiplication wraps, which is deterministic on every device."""
    x = ids.long() * GOLDEN_INT64
    x = x ^ (x >> 29)
    return torch.remainder(x, buckets - 1) + 1


def age_bucket(age_s: torch.Tensor) -> torch.Tensor:
    """log2 buckets of the age in minutes: 0 = under a minute, 1 = 1–2 min, …, clipped to the table."""
    minutes = age_s.clamp(min=0) / 60.0
    return torch.floor(torch.log2(1.0 + minutes)).long().clamp(0, N_AGE_BUCKETS - 1)


class Layout(NamedTuple):
    """Where history rows and candidates go in the combined sequence of each member."""

    seq_offsets: torch.Tensor  # (B+1,) of the combined history + candidate sequences
    hist_row: torch.Tensor  # (H,) row of each history item token
    cand_row: torch.Tensor  # (N,) row of each candidate token
    hist_member: torch.Tensor  # (H,) member b of each history row
    hist_local: torch.Tensor  # (H,) index of the row inside its member's history (0 = oldest)
    cand_member: torch.Tensor  # (N,) member b of each candidate
    num_candidates: torch.Tensor  # (B,)


def jagged_layout(hist_offsets: torch.Tensor, cand_offsets: torch.Tensor, per_item: int) -> Layout:
    """``per_item`` is 1 (sum) or 2 (interleaved action tokens, which sit right after their item)."""
    h = hist_offsets[1:] - hist_offsets[:-1]
    n = cand_offsets[1:] - cand_offsets[:-1]
    seq_offsets = offsets_of(h * per_item + n)
    hist_member, hist_local = segments(hist_offsets)
    cand_member, cand_local = segments(cand_offsets)
    hist_row = seq_offsets[:-1][hist_member] + hist_local * per_item
    cand_row = seq_offsets[:-1][cand_member] + h[cand_member] * per_item + cand_local
    return Layout(seq_offsets, hist_row, cand_row, hist_member, hist_local, cand_member, n)


class Encoded(NamedTuple):
    outputs: torch.Tensor  # (T, d) transformer output at every token
    seq_offsets: torch.Tensor  # (B+1,) of the combined history + candidate sequences
    hist_row: torch.Tensor  # (H,) row of each (kept) history item token
    cand_row: torch.Tensor  # (N,) row of each candidate token
    context: torch.Tensor | None  # (N, context_hidden) encoded context, None without fusion


class Block(nn.Module):
    """Pre-LN transformer block; attention over the jagged batch with the multi-item mask."""

    def __init__(self, config: GRConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.kernel = config.kernel
        self.ln1 = nn.LayerNorm(config.d_model)
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.ln2 = nn.LayerNorm(config.d_model)
        self.ffn = nn.Sequential(
            nn.Linear(config.d_model, config.ffn_mult * config.d_model),
            nn.GELU(),
            nn.Linear(config.ffn_mult * config.d_model, config.d_model),
        )
        self.drop = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        seq_offsets: torch.Tensor,
        num_candidates: torch.Tensor,
        max_seq_len: int | None = None,
    ) -> torch.Tensor:
        T, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(T, 3, self.n_heads, d // self.n_heads).unbind(1)  # (T, nh, hs)
        att = jagged_attention(  # (T, nh, hs); the backbone checked the layout once for all blocks
            q,
            k,
            v,
            seq_offsets,
            num_candidates,
            kernel=resolve_kernel(self.kernel, x.device),
            validate_layout=False,
            max_seq_len=max_seq_len,
        )
        x = x + self.drop(self.proj(att.reshape(T, d)))
        return x + self.drop(self.ffn(self.ln2(x)))


class GRBackbone(nn.Module):
    """Stack of pre-LN blocks over token vectors (T, d) of a jagged batch; adds no embeddings itself.
    ``num_candidates`` = 0 makes every sequence fully causal (next-item training)."""

    def __init__(self, config: GRConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)

    def forward(
        self, tokens: torch.Tensor, seq_offsets: torch.Tensor, num_candidates: torch.Tensor
    ) -> torch.Tensor:
        assert tokens.dim() == 2, "tokens must be (T, d_model)"
        check_layout(seq_offsets, num_candidates, tokens.shape[0])
        lengths = seq_offsets[1:] - seq_offsets[:-1]
        max_len = int(lengths.max()) if lengths.numel() else 0  # one host read for all blocks' grids
        x = tokens
        for block in self.blocks:
            x = block(x, seq_offsets, num_candidates, max_len)
        return self.ln_f(x)


class ItemEncoder(nn.Module):
    """Item → vector: projected post embedding (when E > 0) + hashed post-id embedding + hashed author-id
    embedding (the author is what lets attention relate a candidate to the member's past reactions to the
    same author's other posts)."""

    def __init__(self, config: GRConfig) -> None:
        super().__init__()
        self.buckets = config.hash_buckets
        self.author_buckets = config.author_buckets
        self.id_emb = nn.Embedding(config.hash_buckets, config.d_model)
        self.author_emb = nn.Embedding(config.author_buckets, config.d_model, padding_idx=0)
        nn.init.normal_(self.id_emb.weight, std=0.02)
        nn.init.normal_(self.author_emb.weight, std=0.02)
        with torch.no_grad():
            self.author_emb.weight[0].zero_()
        self.proj = nn.Linear(config.item_emb_dim, config.d_model) if config.item_emb_dim > 0 else None

    def forward(
        self, post_id: torch.Tensor, vectors: torch.Tensor | None, author_id: torch.Tensor
    ) -> torch.Tensor:
        author = torch.where(author_id > 0, hash_ids(author_id, self.author_buckets), 0)
        x = self.id_emb(hash_ids(post_id, self.buckets)) + self.author_emb(author)
        if self.proj is not None and vectors is not None:
            x = x + self.proj(vectors)
        return x


class ContextEncoder(nn.Module):
    """Per-candidate context → (N, context_hidden): numeric features with NaN as 'missing' (value 0 plus a
    missing flag), device, hashed member profile fields and the member embedding when one is present."""

    def __init__(self, config: GRConfig) -> None:
        super().__init__()
        self.device_emb = nn.Embedding(config.n_devices, 8)
        self.profile_emb = nn.Embedding(config.profile_buckets, 16)
        self.profile_buckets = config.profile_buckets
        self.member_proj = nn.Linear(config.member_emb_dim, 16) if config.member_emb_dim > 0 else None
        width = 2 * config.context_dim + 8 + 16 + (17 if self.member_proj is not None else 0)
        self.mlp = nn.Sequential(nn.Linear(width, config.context_hidden), nn.GELU())

    def forward(self, inputs: RankerInputs, cand_member: torch.Tensor) -> torch.Tensor:
        x = inputs.cand_context.float()
        missing = torch.isnan(x)
        parts = [torch.where(missing, torch.zeros_like(x), x), missing.float()]
        parts.append(self.device_emb(inputs.cand_device.clamp(0, self.device_emb.num_embeddings - 1)))
        profile = self.profile_emb(torch.remainder(inputs.profile, self.profile_buckets)).sum(1)  # (B, 16)
        parts.append(profile[cand_member])
        if self.member_proj is not None:
            present = inputs.member_emb_present.float().unsqueeze(1)  # (B, 1)
            member = self.member_proj(torch.nan_to_num(inputs.member_emb.float())) * present
            parts += [member[cand_member], present[cand_member]]
        return self.mlp(torch.cat(parts, dim=1))


class MMoEHead(nn.Module):
    """Multi-gate mixture of experts: experts shared by all tasks, a softmax gate and a tower per task."""

    def __init__(self, d_in: int, config: GRConfig) -> None:
        super().__init__()
        n_tasks, e, h = len(TASKS), config.n_experts, config.expert_dim
        self.experts_w = nn.Parameter(torch.randn(e, d_in, h) / math.sqrt(d_in))
        self.experts_b = nn.Parameter(torch.zeros(e, h))
        self.gates = nn.Linear(d_in, n_tasks * e)
        self.tower_w1 = nn.Parameter(torch.randn(n_tasks, h, h // 2) / math.sqrt(h))
        self.tower_b1 = nn.Parameter(torch.zeros(n_tasks, h // 2))
        self.tower_w2 = nn.Parameter(torch.randn(n_tasks, h // 2) / math.sqrt(h // 2))
        self.tower_b2 = nn.Parameter(torch.zeros(n_tasks))
        self.n_tasks, self.n_experts = n_tasks, e

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, d_in) → (N, tasks)
        experts = F.gelu(torch.einsum("nd,edh->neh", x, self.experts_w) + self.experts_b)  # (N, E, h)
        gates = self.gates(x).view(-1, self.n_tasks, self.n_experts).softmax(-1)  # (N, tasks, E)
        mixed = torch.einsum("nte,neh->nth", gates, experts)  # (N, tasks, h)
        hidden = F.gelu(torch.einsum("nth,thk->ntk", mixed, self.tower_w1) + self.tower_b1)  # (N, tasks, h/2)
        return torch.einsum("ntk,tk->nt", hidden, self.tower_w2) + self.tower_b2


class SharedHead(nn.Module):
    """One MLP with a logit per task (the single-shared-head ablation)."""

    def __init__(self, d_in: int, config: GRConfig) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(d_in, config.expert_dim), nn.GELU(), nn.Linear(config.expert_dim, len(TASKS))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class GenerativeRanker(nn.Module):
    def __init__(self, config: GRConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.items = ItemEncoder(config)
        self.action_emb = nn.Embedding(N_ACTIONS, d)
        self.type_emb = nn.Embedding(3, d)  # history item, history action, candidate
        self.rank_emb = nn.Embedding(config.max_history + 1, d)  # recency rank; the last row = candidates
        self.age_emb = nn.Embedding(N_AGE_BUCKETS, d)
        self.backbone = GRBackbone(config)
        self.context = ContextEncoder(config) if config.fusion != "none" else None
        self.early = nn.Linear(config.context_hidden, d) if config.fusion == "early" else None
        d_head = d + (config.context_hidden if config.fusion == "late" else 0)
        self.head = MMoEHead(d_head, config) if config.head == "mmoe" else SharedHead(d_head, config)
        self.register_buffer("task_weights", torch.tensor(config.task_weights), persistent=False)

    def encode(self, inputs: RankerInputs) -> Encoded:
        """Run the transformer over history + candidates; every position's output is in the result."""
        cfg = self.config
        inputs = inputs.truncated(cfg.max_history)
        per_item = 2 if cfg.action_encoding == "interleave" else 1
        lay = jagged_layout(inputs.hist_offsets, inputs.cand_offsets, per_item)
        h = inputs.hist_offsets[1:] - inputs.hist_offsets[:-1]
        rank = (h[lay.hist_member] - 1 - lay.hist_local).clamp(max=cfg.max_history - 1)  # 0 = newest
        position = self.rank_emb(rank) + self.age_emb(age_bucket(inputs.hist_age_s))  # (H, d)
        item = self.items(inputs.hist_post_id, inputs.hist_item, inputs.hist_author_id) + position
        action = self.action_emb(inputs.hist_action)
        tokens = item.new_zeros((int(lay.seq_offsets[-1]), cfg.d_model))
        if per_item == 1:
            tokens[lay.hist_row] = item + action + self.type_emb.weight[TOKEN_HISTORY_ITEM]
        else:
            tokens[lay.hist_row] = item + self.type_emb.weight[TOKEN_HISTORY_ITEM]
            tokens[lay.hist_row + 1] = action + position + self.type_emb.weight[TOKEN_HISTORY_ACTION]
        cand = self.items(inputs.cand_post_id, inputs.cand_item, inputs.cand_author_id)
        cand = cand + self.type_emb.weight[TOKEN_CANDIDATE] + self.rank_emb.weight[cfg.max_history]
        context = self.context(inputs, lay.cand_member) if self.context is not None else None
        if self.early is not None and context is not None:
            cand = cand + self.early(context)
        tokens[lay.cand_row] = cand
        out = self.backbone(tokens, lay.seq_offsets, lay.num_candidates)
        return Encoded(out, lay.seq_offsets, lay.hist_row, lay.cand_row, context)

    def forward(self, inputs: RankerInputs) -> torch.Tensor:
        """Six logits per candidate (N, 6) in TASKS order."""
        enc = self.encode(inputs)
        x = enc.outputs[enc.cand_row]  # (N, d)
        if self.config.fusion == "late":
            assert enc.context is not None
            x = torch.cat([x, enc.context], dim=1)  # late fusion: context joins after the transformer
        return self.head(x)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return ranking_loss(logits, labels, self.task_weights)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def ranking_loss(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean of the per-task binary cross-entropies → (total, per-task (6,) detached)."""
    per_task = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="none").mean(0)
    return (per_task * weights).sum() / weights.sum(), per_task.detach()


def per_candidate_inputs(inputs: RankerInputs) -> RankerInputs:
    """The same requests with every candidate in its own sequence (history repeated): the slow path the
    shared-context pass replaces, used by tests and ``feed bench scoring``."""
    h = inputs.hist_offsets[1:] - inputs.hist_offsets[:-1]
    cand_member, _ = segments(inputs.cand_offsets)  # (N,)
    return inputs.select(
        hist=jagged_rows(inputs.hist_offsets[:-1][cand_member], h[cand_member]),
        cand=(slice(None), torch.arange(cand_member.numel() + 1, device=h.device)),
        members=cand_member,
    )


def jagged_rows(starts: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``starts[i] : starts[i] + lengths[i]`` back to back, and their offsets."""
    offsets = offsets_of(lengths)
    rows = torch.repeat_interleave(starts - offsets[:-1], lengths)
    return rows + torch.arange(rows.numel(), device=rows.device), offsets
