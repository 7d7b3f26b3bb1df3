"""The non-sequential baseline the GR must beat: the same inputs, but the history only as aggregates.

Per candidate: its item vector (projected post embedding + hashed id, as the GR's), the member's mean history
vector and mean *engaged* history vector, the candidate's dot products with both, the member's rate of each
of the six actions, log history length, and the same encoded context (device, profile, member embedding,
affinities, post/author percentiles) → a DCN-v2 cross layer beside a deep MLP → six logits. It trains
through the same loop, batches and loss as the GR (``training/ranking/train.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from training.ranking.features import ENGAGED_MASK, TASKS
from training.ranking.model import ContextEncoder, GRConfig, ItemEncoder, RankerInputs, ranking_loss, segments


def segment_mean(values: torch.Tensor, segment: torch.Tensor, n: int) -> torch.Tensor:
    """Mean of ``values`` rows per segment id in [0, n) (zeros for an empty segment)."""
    total = values.new_zeros((n, *values.shape[1:])).index_add_(0, segment, values)
    count = values.new_zeros(n).index_add_(0, segment, torch.ones_like(segment, dtype=values.dtype))
    return total / count.clamp(min=1).view(-1, *([1] * (values.dim() - 1)))


class AggregatedHistoryRanker(nn.Module):
    def __init__(self, config: GRConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.items = ItemEncoder(config)
        self.context = ContextEncoder(config)
        width = 3 * d + 2 + len(TASKS) + 1 + config.context_hidden
        self.norm = nn.LayerNorm(width)
        self.cross_w = nn.Linear(width, width)  # DCN-v2: x0 ⊙ (W x + b) + x
        self.deep = nn.Sequential(
            nn.Linear(width, 2 * config.expert_dim),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(2 * config.expert_dim, config.expert_dim),
            nn.GELU(),
        )
        self.out = nn.Linear(width + config.expert_dim, len(TASKS))
        self.register_buffer("task_weights", torch.tensor(config.task_weights), persistent=False)

    def forward(self, inputs: RankerInputs) -> torch.Tensor:
        inputs = inputs.truncated(self.config.max_history)
        h = inputs.hist_offsets[1:] - inputs.hist_offsets[:-1]
        b = h.numel()
        hist_member, _ = segments(inputs.hist_offsets)
        cand_member, _ = segments(inputs.cand_offsets)
        hist = self.items(inputs.hist_post_id, inputs.hist_item, inputs.hist_author_id)  # (H, d)
        engaged = (inputs.hist_action & ENGAGED_MASK) != 0
        mean_all = segment_mean(hist, hist_member, b)  # (B, d)
        mean_engaged = segment_mean(hist[engaged], hist_member[engaged], b)
        bits = ((inputs.hist_action.unsqueeze(1) >> torch.arange(len(TASKS), device=h.device)) & 1).float()
        rates = segment_mean(bits, hist_member, b)  # (B, 6)
        cand = self.items(inputs.cand_post_id, inputs.cand_item, inputs.cand_author_id)  # (N, d)
        scale = cand.shape[1] ** -0.5
        sims = torch.stack(
            [
                (cand * mean_all[cand_member]).sum(1) * scale,
                (cand * mean_engaged[cand_member]).sum(1) * scale,
            ],
            1,
        )
        x = torch.cat(
            [
                cand,
                mean_all[cand_member],
                mean_engaged[cand_member],
                sims,
                rates[cand_member],
                torch.log1p(h.float())[cand_member].unsqueeze(1),
                self.context(inputs, cand_member),
            ],
            dim=1,
        )
        x0 = self.norm(x)
        crossed = x0 * self.cross_w(x0) + x0
        return self.out(torch.cat([crossed, self.deep(x0)], dim=1))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return ranking_loss(logits, labels, self.task_weights)
