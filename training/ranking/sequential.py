"""MovieLens under the HSTU protocol: the real-data half of ``feed train eval-ranking``.

Protocol (Kang & McAuley 2018; Zhai et al. 2024, "Actions Speak Louder than Words", Table 2):
- every rating is an interaction; a user's items are ordered by timestamp, ties broken by item id (stable);
- leave-one-out: the last item is the test target, the second-to-last the validation target, the rest is
  training; every window holds at most the newest ``max_len`` (200) items;
- full ranking over all items, the user's earlier items excluded (MovieLens never repeats an item), HR@10
  and NDCG@10; validation drives model selection (best epoch by validation NDCG@10), test is read once.

Models, trained with the same budget (epochs × batches of the same users in the same order, d_model,
layers, heads, max_len, dropout, optimizer):
- ``gr``: the GR backbone (``training.ranking.model.GRBackbone``: pre-LN causal blocks over a jagged
  batch) with an item-id table plus the GR's recency-rank and age-bucket encodings, next-item prediction at
  every position (HSTU style; ``num_candidates = 0`` so every sequence is fully causal);
- ``sasrec``: SASRec as published (``training.ranking.sasrec``), on its usual left-padded windows.
Both use the same loss: sampled softmax over ``negatives`` uniform item ids shared by the whole batch
(accidental hits masked; uniform sampling needs no logQ correction), cosine similarity / temperature, as the
HSTU ML-1M configs do (128 negatives, temperature 0.05, L2-normalised embeddings). SASRec's original loss
is BCE with one negative; the published SASRec anchor of the HSTU paper (.2853/.1603 on ML-1M) is SASRec
retrained with sampled softmax, which is much stronger — so one loss for both keeps the comparison about the
architecture.

This module imports torch and numpy only; the MovieLens reader (pandas) is imported when data is read.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.ranking.sasrec import SASRec, SASRecConfig

log = logging.getLogger(__name__)

Stage = Literal["valid", "test"]
MODELS = ("gr", "sasrec")
K = 10  # HR@K / NDCG@K of the protocol
# Device-dependent budget defaults (``resolve``). CPU: both models on ML-100K in ≤ ~8 min on 2 shared cores;
# at that budget batches of 32 users learn ~3x more per second than 128 (4x the updates at nearly the same
# cost per epoch: 10 epochs × 32 reached the validation HR@10 of 30 epochs × 128). CUDA: HSTU's batch of 128
# (configs/ml-1m/*.gin run 101 epochs; ML-100K has 1/6 of ML-1M's users, hence more epochs).
CPU_EPOCHS, CPU_BATCH = 50, 32
GPU_EPOCHS, GPU_BATCH = 200, 128


@dataclass(frozen=True)
class SequentialConfig:
    d_model: int = 64
    n_heads: int = 2
    n_layers: int = 2
    max_len: int = 200  # the HSTU/SASRec MovieLens window
    dropout: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int | None = None  # users per step; None: CPU_BATCH on CPU, GPU_BATCH on CUDA (``resolve``)
    epochs: int | None = None  # None: CPU_EPOCHS on CPU, GPU_EPOCHS on CUDA (``resolve``)
    negatives: int = 128  # uniform, shared by the batch; 0 = full softmax over all items
    temperature: float = 0.05  # HSTU's value for cosine logits
    eval_every: int = 5  # epochs between validation passes (model selection)
    eval_batch_users: int = 256
    seed: int = 0
    device: str = "auto"  # "auto" = cuda when available, else cpu
    models: tuple[str, ...] = MODELS

    def __post_init__(self) -> None:
        assert self.d_model % self.n_heads == 0, "d_model must be divisible by n_heads"
        assert self.max_len >= 1, "max_len must be ≥ 1"
        assert self.batch_size is None or self.batch_size >= 1, "batch_size must be ≥ 1"
        assert self.epochs is None or self.epochs >= 1, "epochs must be ≥ 1"
        assert self.eval_every >= 1, "eval_every must be ≥ 1"
        assert self.negatives >= 0, "negatives must be ≥ 0 (0 = full softmax)"
        assert self.temperature > 0, "temperature must be > 0"
        unknown = set(self.models) - set(MODELS)
        assert not unknown, f"unknown models {sorted(unknown)}; known: {MODELS}"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve(cfg: SequentialConfig, device: torch.device) -> SequentialConfig:
    """The config with its device-dependent defaults filled in (what a report records)."""
    gpu = device.type == "cuda"
    epochs = cfg.epochs if cfg.epochs is not None else GPU_EPOCHS if gpu else CPU_EPOCHS
    batch = cfg.batch_size if cfg.batch_size is not None else GPU_BATCH if gpu else CPU_BATCH
    return dataclasses.replace(cfg, epochs=epochs, batch_size=batch, device=str(device))


# --- data -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sequences:
    """Per-user chronological item sequences, jagged: user u holds ``items[offsets[u]:offsets[u + 1]]``."""

    items: np.ndarray  # (S,) int64, dense ids 1..n_items (0 = padding)
    ts: np.ndarray  # (S,) int64, seconds
    offsets: np.ndarray  # (U+1,) int64
    user_ids: np.ndarray  # (U,) int64, the raw user ids
    item_ids: np.ndarray  # (n_items+1,) int64, the raw item id of each dense id; [0] = -1
    n_items: int
    dropped_users: int  # users with fewer than 3 interactions (no train/validation/test split possible)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def stats(self) -> dict[str, Any]:
        n = self.lengths
        return {
            "users": len(self.user_ids),
            "items": self.n_items,
            "interactions": len(self.items),
            "dropped_users": self.dropped_users,
            "mean_length": float(n.mean()) if len(n) else 0.0,
            "median_length": float(np.median(n)) if len(n) else 0.0,
            "users_over_max_len_200": int((n > 200).sum()),
        }


def read_ratings(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, item, ts) int64 arrays of a MovieLens folder (ML-1M/10M ``ratings.dat``, ML-20M ``ratings.csv``
    or RecBole's atomic ML-100K ``*.inter``), read by the landing loader's own readers."""
    from pipelines.loaders.movielens import _ratings, detect

    ratings = _ratings(detect(Path(path)))
    return tuple(ratings[c].to_numpy(dtype=np.int64) for c in ("user", "movie", "ts"))  # type: ignore[return-value]


def dataset_name(path: Path) -> str:
    """What a MovieLens folder holds: the ``*.inter`` stem for RecBole's atomic files (``ml-100k``), ``ml-1m``
    for ``ratings.dat`` with ``users.dat`` (ML-10M has none: ``ml-10m``), else the folder's name."""
    from pipelines.loaders.movielens import detect

    files = detect(Path(path))
    if files.kind == "atomic":
        return files.ratings.stem
    if files.kind == "dat":
        return "ml-1m" if files.users is not None else "ml-10m"
    return Path(path).name


def build_sequences(user: np.ndarray, item: np.ndarray, ts: np.ndarray, *, min_length: int = 3) -> Sequences:
    """Group interactions by user in (timestamp, item id) order; items get dense ids 1..N by raw id."""
    assert len(user) == len(item) == len(ts), "user, item and ts must have the same length"
    order = np.lexsort((item, ts, user))  # last key is primary: user, then timestamp, then item
    user, item, ts = user[order], item[order], ts[order]
    users, counts = np.unique(user, return_counts=True)
    keep = counts >= min_length
    rows = np.repeat(keep, counts)
    user, item, ts = user[rows], item[rows], ts[rows]
    raw_items, dense = np.unique(item, return_inverse=True)
    offsets = np.zeros(int(keep.sum()) + 1, dtype=np.int64)
    np.cumsum(counts[keep], out=offsets[1:])
    return Sequences(
        items=dense.astype(np.int64) + 1,
        ts=ts.astype(np.int64),
        offsets=offsets,
        user_ids=users[keep].astype(np.int64),
        item_ids=np.concatenate([[-1], raw_items]).astype(np.int64),
        n_items=len(raw_items),
        dropped_users=int((~keep).sum()),
    )


def ranges(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated ``arange(starts[i], ends[i])`` and its offsets (len(starts)+1,), without a Python loop."""
    lens = (ends - starts).astype(np.int64)
    assert (lens >= 0).all(), "ends must not precede starts"
    offsets = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    idx = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1] - starts, lens)
    return idx, offsets


def target_positions(seqs: Sequences, stage: Stage) -> np.ndarray:
    """Global index of each user's target: the last item (test) or the second-to-last (validation)."""
    return seqs.offsets[1:] - (1 if stage == "test" else 2)


def train_windows(seqs: Sequences, users: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Next-item training windows of ``users``: inputs are the newest ``max_len`` training items but the last,
    targets the item after each input (global index = input index + 1). Returns (input index, offsets)."""
    end = seqs.offsets[users + 1] - 2  # exclusive end of the training part (validation and test held out)
    start = np.maximum(seqs.offsets[users], end - max_len - 1)
    return ranges(start, end - 1)


# --- models -----------------------------------------------------------------------------------------------


class GRNextItem(nn.Module):
    """The GR backbone trained for next-item prediction. Tokens are encoded as ``GenerativeRanker.encode``
    encodes history items: item-id embedding + recency rank (0 = newest) + age bucket (``model.age_bucket``),
    with the request time taken as the window's newest item (the target's time is not used). The id table is
    dense (MovieLens ids are) instead of the ranker's 2^18-row hashed table; it doubles as the output table.
    ``forward(items (T,), ts (T,), offsets (B+1,)) -> (T, d)``; every sequence is fully causal."""

    def __init__(self, n_items: int, cfg: SequentialConfig) -> None:
        super().__init__()
        from training.ranking.model import N_AGE_BUCKETS, GRBackbone, GRConfig

        assert n_items > 0, "need at least one item"
        self.max_len = cfg.max_len
        self.d_model = cfg.d_model
        self.item_embedding = nn.Embedding(n_items + 1, cfg.d_model, padding_idx=0)
        self.rank_emb = nn.Embedding(cfg.max_len, cfg.d_model)
        self.age_emb = nn.Embedding(N_AGE_BUCKETS, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        gr = GRConfig(
            d_model=cfg.d_model,
            n_heads=cfg.n_heads,
            n_layers=cfg.n_layers,
            dropout=cfg.dropout,
            max_history=cfg.max_len,
            item_emb_dim=0,  # ids only
        )
        self.backbone = GRBackbone(gr)
        # The same initialisation as SASRec's tables, so neither model starts with an advantage.
        nn.init.xavier_normal_(self.item_embedding.weight[1:])
        nn.init.xavier_normal_(self.rank_emb.weight)
        nn.init.xavier_normal_(self.age_emb.weight)

    def forward(self, items: torch.Tensor, ts: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        from training.ranking.model import age_bucket

        assert items.dim() == 1, "items must be (T,)"
        assert items.shape == ts.shape, "ts must be (T,) like items"
        lens = offsets[1:] - offsets[:-1]  # (B,)
        T = items.numel()
        seq = torch.repeat_interleave(torch.arange(lens.numel(), device=items.device), lens, output_size=T)
        last = offsets[1:][seq] - 1  # (T,) row of each token's newest item
        rank = (last - torch.arange(T, device=items.device)).clamp(max=self.max_len - 1)  # 0 = newest
        age = age_bucket((ts[last] - ts).float())  # (T,)
        x = self.item_embedding(items) * math.sqrt(self.d_model) + self.rank_emb(rank) + self.age_emb(age)
        no_candidates = torch.zeros_like(lens)  # fully causal: next-item training and scoring
        return self.backbone(self.drop(x), offsets, no_candidates)  # (T, d)


class SASRecJagged(nn.Module):
    """SASRec behind the jagged interface of ``GRNextItem``: windows are left-padded to (B, L) with L the
    longest window of the batch (≤ max_len; the same outputs as padding to max_len, since positions count from
    the window's end and padded keys are masked) and the outputs gathered back to (T, d)."""

    def __init__(self, n_items: int, cfg: SequentialConfig) -> None:
        super().__init__()
        self.sasrec = SASRec(
            SASRecConfig(
                n_items=n_items,
                d_model=cfg.d_model,
                n_heads=cfg.n_heads,
                n_layers=cfg.n_layers,
                max_len=cfg.max_len,
                dropout=cfg.dropout,
            )
        )
        self.item_embedding = self.sasrec.item_embedding

    def forward(self, items: torch.Tensor, ts: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        lens = offsets[1:] - offsets[:-1]  # (B,)
        B, L, T = lens.numel(), int(lens.max()), items.numel()
        seq = torch.repeat_interleave(torch.arange(B, device=items.device), lens, output_size=T)
        slot = torch.arange(T, device=items.device) - offsets[1:][seq] + L  # left padding: last item → L-1
        padded = items.new_zeros(B, L)
        padded[seq, slot] = items
        return self.sasrec(padded)[seq, slot]  # (T, d)


def build_model(name: str, n_items: int, cfg: SequentialConfig) -> nn.Module:
    torch.manual_seed(cfg.seed)
    if name == "gr":
        return GRNextItem(n_items, cfg)
    if name == "sasrec":
        return SASRecJagged(n_items, cfg)
    raise ValueError(f"unknown model {name!r}; known: {MODELS}")


# --- loss and metrics -------------------------------------------------------------------------------------


def sampled_softmax_loss(
    out: torch.Tensor,
    targets: torch.Tensor,
    item_table: torch.Tensor,
    *,
    negatives: int,
    temperature: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of each position's target against ``negatives`` uniform item ids shared by the batch
    (cosine logits / temperature; a negative equal to the target is masked). ``negatives == 0``: full softmax.
    out (T, d), targets (T,) in 1..N, item_table (N+1, d) with row 0 the padding id."""
    assert out.dim() == 2, "out must be (T, d)"
    assert targets.shape == out.shape[:1], "targets must be (T,)"
    user = F.normalize(out, dim=-1)
    n_items = item_table.shape[0] - 1
    if negatives == 0:
        logits = user @ F.normalize(item_table[1:], dim=-1).T / temperature  # (T, N)
        return F.cross_entropy(logits, targets - 1)
    neg = torch.randint(1, n_items + 1, (negatives,), device=out.device, generator=generator)  # (K,)
    pos_logit = (user * F.normalize(item_table[targets], dim=-1)).sum(-1, keepdim=True)  # (T, 1)
    neg_logit = user @ F.normalize(item_table[neg], dim=-1).T  # (T, K)
    neg_logit = neg_logit.masked_fill(neg[None, :] == targets[:, None], float("-inf"))
    logits = torch.cat([pos_logit, neg_logit], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros_like(targets))


def target_ranks(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """0-based rank of each row's target among the row's scores; ties count against the target (a model
    that scores everything alike gets no credit). Excluded items must already be -inf.
    scores (B, N), target (B,)."""
    t = scores.gather(1, target[:, None])  # (B, 1)
    return (scores >= t).sum(1) - 1


def hit_and_ndcg(ranks: torch.Tensor, k: int = K) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-user HR@k (1 if rank < k) and NDCG@k (1 / log2(rank + 2) if rank < k) with one relevant item."""
    hit = (ranks < k).float()
    return hit, hit / torch.log2(ranks.float() + 2.0)


def rank_users(
    seqs: Sequences,
    stage: Stage,
    score_fn: Callable[[np.ndarray, np.ndarray, np.ndarray], torch.Tensor],
    *,
    max_len: int,
    batch_users: int = 256,
) -> dict[str, float]:
    """HR@10 / NDCG@10 of a stage by full ranking. ``score_fn(input index, offsets, users) -> (B, N+1)``
    scores every item for each user from the window of its newest ``max_len`` items before the target; item 0
    and all the user's items before the target (the whole history, not only the window) are excluded."""
    target = target_positions(seqs, stage)
    hits, ndcgs = [], []
    for lo in range(0, len(target), batch_users):
        users = np.arange(lo, min(lo + batch_users, len(target)))
        tgt = target[users]
        idx, off = ranges(np.maximum(seqs.offsets[users], tgt - max_len), tgt)
        scores = score_fn(idx, off, users).float()  # (B, N+1)
        device = scores.device
        hist, hoff = ranges(seqs.offsets[users], tgt)
        row = np.repeat(np.arange(len(users)), np.diff(hoff))
        scores[:, 0] = float("-inf")
        seen = torch.from_numpy(seqs.items[hist]).to(device)
        scores[torch.from_numpy(row).to(device), seen] = float("-inf")
        hit, ndcg = hit_and_ndcg(target_ranks(scores, torch.from_numpy(seqs.items[tgt]).to(device)))
        hits.append(hit.cpu())
        ndcgs.append(ndcg.cpu())
    return {
        "hr_at_10": float(torch.cat(hits).mean()),
        "ndcg_at_10": float(torch.cat(ndcgs).mean()),
        "users": len(target),
    }


@torch.no_grad()
def evaluate(model: nn.Module, seqs: Sequences, stage: Stage, cfg: SequentialConfig) -> dict[str, float]:
    """Full-ranking HR@10 / NDCG@10 of a model on the validation or test targets."""
    model.eval()
    device = next(model.parameters()).device
    table = F.normalize(model.item_embedding.weight, dim=-1)  # (N+1, d)

    def score(idx: np.ndarray, off: np.ndarray, users: np.ndarray) -> torch.Tensor:
        items, ts, offsets = _to_device(seqs, idx, off, device)
        out = model(items, ts, offsets)  # (T, d)
        user = F.normalize(out[offsets[1:] - 1], dim=-1)  # (B, d): the state after the newest item
        return user @ table.T

    return rank_users(seqs, stage, score, max_len=cfg.max_len, batch_users=cfg.eval_batch_users)


def popularity(seqs: Sequences, stage: Stage, cfg: SequentialConfig) -> dict[str, float]:
    """The popularity ranking: items by their count in the training parts of all users."""
    train, _ = ranges(seqs.offsets[:-1], seqs.offsets[1:] - 2)
    counts = torch.from_numpy(np.bincount(seqs.items[train], minlength=seqs.n_items + 1).astype(np.float32))

    def score(idx: np.ndarray, off: np.ndarray, users: np.ndarray) -> torch.Tensor:
        return counts.expand(len(users), -1).clone()

    return rank_users(seqs, stage, score, max_len=cfg.max_len, batch_users=cfg.eval_batch_users)


# --- training ---------------------------------------------------------------------------------------------


def _to_device(
    seqs: Sequences, idx: np.ndarray, off: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        torch.from_numpy(seqs.items[idx]).to(device),
        torch.from_numpy(seqs.ts[idx]).to(device),
        torch.from_numpy(off).to(device),
    )


def fit(model: nn.Module, seqs: Sequences, cfg: SequentialConfig) -> dict[str, Any]:
    """Train for ``cfg.epochs`` epochs (every user with a next-item target once per epoch, in a seeded order
    that is the same for every model), validate every ``eval_every`` epochs, keep the best validation
    NDCG@10 state, and evaluate it on test. Returns metrics, budget and timings."""
    assert cfg.epochs is not None, "resolve the config first"
    assert cfg.batch_size is not None, "resolve the config first"
    device = next(model.parameters()).device
    optimizer = torch.optim.Adam(
        model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay
    )
    rng = np.random.default_rng(cfg.seed)
    negatives_gen = torch.Generator(device=device).manual_seed(cfg.seed)
    trainable = np.flatnonzero(seqs.lengths >= 4)  # ≥ 2 training items → at least one next-item target
    best: dict[str, Any] = {"val_ndcg_at_10": -1.0}
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict[str, float]] = []
    steps, train_seconds, began = 0, 0.0, time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        t0, losses = time.perf_counter(), []
        order = rng.permutation(trainable)
        for lo in range(0, len(order), cfg.batch_size):
            idx, off = train_windows(seqs, order[lo : lo + cfg.batch_size], cfg.max_len)
            items, ts, offsets = _to_device(seqs, idx, off, device)
            targets = torch.from_numpy(seqs.items[idx + 1]).to(device)
            loss = sampled_softmax_loss(
                model(items, ts, offsets),
                targets,
                model.item_embedding.weight,
                negatives=cfg.negatives,
                temperature=cfg.temperature,
                generator=negatives_gen,
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            steps += 1
        train_seconds += time.perf_counter() - t0
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            val = evaluate(model, seqs, "valid", cfg)
            history.append({"epoch": epoch, "loss": float(np.mean(losses)), **_prefixed(val, "val_")})
            log.info("epoch %d loss %.4f val %s", epoch, np.mean(losses), val)
            if val["ndcg_at_10"] > best["val_ndcg_at_10"]:
                best = {"best_epoch": epoch, **_prefixed(val, "val_")}
                best_state = copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    test = evaluate(model, seqs, "test", cfg)
    return {
        "hr_at_10": test["hr_at_10"],
        "ndcg_at_10": test["ndcg_at_10"],
        **{k: v for k, v in best.items() if k != "val_users"},
        "epochs": cfg.epochs,
        "steps": steps,
        "train_seconds": round(train_seconds, 2),
        "seconds": round(time.perf_counter() - began, 2),
        "params": sum(p.numel() for p in model.parameters()),
        "history": history,
    }


def _prefixed(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {f"{prefix}{k}": v for k, v in metrics.items()}


def summary_prefix(dataset: str) -> str:
    """``ml-100k`` → ``ml100k`` (the report key prefix)."""
    return dataset.lower().replace("-", "").replace("_", "")


def run_sequences(seqs: Sequences, cfg: SequentialConfig, *, dataset: str) -> dict[str, Any]:
    """Popularity and every model of ``cfg.models`` on already-built sequences (the protocol above)."""
    device = resolve_device(cfg.device)
    cfg = resolve(cfg, device)
    began = time.perf_counter()
    results: dict[str, Any] = {
        "popularity": {
            **popularity(seqs, "test", cfg),
            **_prefixed(popularity(seqs, "valid", cfg), "val_"),
        }
    }
    for name in cfg.models:
        model = build_model(name, seqs.n_items, cfg).to(device)
        results[name] = fit(model, seqs, cfg)
        log.info("%s: %s", name, {k: v for k, v in results[name].items() if k != "history"})
    p = summary_prefix(dataset)
    summary = {f"{p}_popularity_hr_at_10": results["popularity"]["hr_at_10"]}
    summary[f"{p}_popularity_ndcg_at_10"] = results["popularity"]["ndcg_at_10"]
    for name in cfg.models:
        tag = p if name == "gr" else f"{p}_{name}"
        summary[f"{tag}_hr_at_10"] = results[name]["hr_at_10"]
        summary[f"{tag}_ndcg_at_10"] = results[name]["ndcg_at_10"]
    return {
        "dataset": dataset,
        "summary": summary,
        "models": results,
        "data": seqs.stats(),
        "config": dataclasses.asdict(cfg),
        "device": str(device),
        "seconds": round(time.perf_counter() - began, 2),
    }


def run_movielens(
    data_dir: Path, cfg: SequentialConfig = SequentialConfig(), *, dataset: str | None = None
) -> dict[str, Any]:
    """Read MovieLens from ``data_dir`` (ML-100K atomic files, ML-1M ``ratings.dat``, …) and run the protocol;
    ``dataset`` (the report key prefix) defaults to what the folder holds (``dataset_name``).
    Returns {dataset, summary (report keys), models: {popularity, gr, sasrec: {hr_at_10, ndcg_at_10, val_…,
    best_epoch, steps, seconds, params, history}}, data (stats), config (resolved), device, seconds}."""
    t0 = time.perf_counter()
    seqs = build_sequences(*read_ratings(Path(data_dir)))
    result = run_sequences(seqs, cfg, dataset=dataset or dataset_name(Path(data_dir)))
    result["data"]["read_seconds"] = round(time.perf_counter() - t0 - result["seconds"], 2)
    return result
