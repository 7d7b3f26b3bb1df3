"""SASRec (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018) — the sequential baseline of
``feed train eval-ranking`` on MovieLens.

As in the paper: item embeddings scaled by sqrt(d) plus learned absolute position embeddings over a
left-padded (B, max_len) window, dropout, ``n_layers`` causal self-attention blocks (as in the reference code,
the query is ``LN(x)`` and each residual is added to the normalised input: ``x = LN(x) + MHA(LN(x), x, x)``,
``x = LN(x) + FFN(LN(x))`` with a ReLU point-wise FFN), padded positions zeroed after every block, a final
LayerNorm, and the item embedding table shared as the output layer. One deviation, for CPU time: attention
dropout is applied to the attention output, not to the attention weights (see ``_Block.forward``).

The loss is not here: ``training/ranking/sequential.py`` trains SASRec and the GR backbone with the same
sampled softmax (see its docstring for why), so the comparison isolates the architecture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class SASRecConfig:
    n_items: int  # item ids are 1..n_items; 0 is the padding id
    d_model: int = 64
    n_heads: int = 2
    n_layers: int = 2
    max_len: int = 200  # window of the newest items; positions are slots of the left-padded window
    dropout: float = 0.2


class _Block(nn.Module):
    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        d = config.d_model
        assert d % config.n_heads == 0, "d_model must be divisible by n_heads"
        self.n_heads = config.n_heads
        self.attn_drop = nn.Dropout(config.dropout)
        self.ln_attn = nn.LayerNorm(d, eps=1e-8)
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.proj = nn.Linear(d, d)
        self.ln_ffn = nn.LayerNorm(d, eps=1e-8)
        # the paper's point-wise FFN: two 1x1 convolutions = two Linear layers with ReLU, width d
        self.ffn = nn.Sequential(
            nn.Linear(d, d),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(d, d),
            nn.Dropout(config.dropout),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        B, L, d = x.shape
        h = self.n_heads
        # The reference code uses LN(x) as the query and the raw x as keys/values.
        q = self.q(self.ln_attn(x)).view(B, L, h, d // h).transpose(1, 2)  # (B, nh, L, hs)
        k, v = self.kv(x).view(B, L, 2, h, d // h).permute(2, 0, 3, 1, 4)  # 2 × (B, nh, L, hs)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, nh, L, hs)
        # Dropout on the attention output instead of the reference's dropout on the (B, nh, L, L) weights: a
        # mask that size is a third of a CPU training step and forces SDPA's unfused path.
        x = self.ln_attn(x) + self.attn_drop(self.proj(att.transpose(1, 2).reshape(B, L, d)))
        x = self.ln_ffn(x)  # the reference adds the FFN residual to the normalised input too
        x = x + self.ffn(x)
        return x * keep  # padded slots stay zero (the paper's timeline mask)


class SASRec(nn.Module):
    """``forward(items (B, L) int64, left-padded with 0) -> (B, L, d)``: the user state after each position;
    score item i at position t with ``output[:, t] · item_embedding.weight[i]``."""

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        assert config.n_items > 0, "need at least one item"
        self.config = config
        self.item_embedding = nn.Embedding(config.n_items + 1, config.d_model, padding_idx=0)
        self.position_embedding = nn.Embedding(config.max_len, config.d_model)
        self.emb_drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.n_layers))
        self.ln_out = nn.LayerNorm(config.d_model, eps=1e-8)
        nn.init.xavier_normal_(self.item_embedding.weight[1:])  # the reference code's glorot init
        nn.init.xavier_normal_(self.position_embedding.weight)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        L = items.shape[1]  # items: (B, L)
        assert self.config.max_len >= L, f"window {L} > max_len {self.config.max_len}"
        keep = (items != 0).unsqueeze(-1).to(self.item_embedding.weight.dtype)  # (B, L, 1)
        # Slot positions of a max_len window: with left padding the newest item is always slot max_len - 1.
        pos = torch.arange(self.config.max_len - L, self.config.max_len, device=items.device)
        x = self.item_embedding(items) * math.sqrt(self.config.d_model) + self.position_embedding(pos)
        x = self.emb_drop(x) * keep
        # Causal mask that also hides padded keys; the diagonal stays visible so padded query rows are not
        # all-masked (their outputs are zeroed by ``keep`` anyway).
        causal = torch.ones(L, L, dtype=torch.bool, device=items.device).tril()
        eye = torch.eye(L, dtype=torch.bool, device=items.device)
        mask = ((causal & (items != 0)[:, None, :]) | eye)[:, None]  # (B, 1, L, L)
        for block in self.blocks:
            x = block(x, mask, keep)
        return self.ln_out(x)  # (B, L, d)
