"""Retrieval evaluation: every test anchor ranked by exact search against all posts live at its time.

An anchor (member m, time t, positive post p) is ranked against the candidate pool of its as-of time — the
posts created in the 28 days before the snapshot (``RetrievalSet.live_posts``) — optionally minus posts the
caller excludes for that anchor (already engaged). One positive per anchor, so
Recall@k = share of anchors whose positive is in the top k, and NDCG@k = mean of 1 / log2(rank + 2) over
anchors with rank < k (rank 0-based; the ideal DCG of one relevant item is 1).

Exact search = the full score matrix (anchors × candidates), computed in chunks of anchors to bound memory;
the positive's rank is counted from it directly, which is what a top-k over all candidates would return
and also gives ranks beyond 100.

Ties are pessimistic: a candidate with exactly the positive's score ranks above it. A collapsed encoder
(every score equal) or a popularity bucket shared by hundreds of posts must not earn credit from the order
the candidates happen to be listed in, and the rule needs no random tie-breaking to be deterministic.

Anchors whose positive is not in its pool are skipped and counted (``skipped["positive_not_in_candidates"]``);
cold-start anchors (no engaged history) are also reported on their own. The popularity–similarity
correlation (Pearson and Spearman between a candidate's ``view_percentile`` and the member–post cosine over
(anchor, candidate) pairs, a seeded sample when there are many) is LinkedIn's measure of whether percentile
tokens make the encoder popularity-aware.

Imports: numpy, scipy, torch (and scikit-learn through the baselines); no Feast, Spark or pandas.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from training.retrieval.baselines import BM25Config, LexicalScorer, PopularityScorer

SKIP_POSITIVE_NOT_IN_CANDIDATES = "positive_not_in_candidates"

# (pool number, anchor indices) -> (len(anchors), C_pool) scores; higher = retrieved first.
Scorer = Callable[[int, np.ndarray], torch.Tensor]
TextEncodeFn = Callable[[list[str]], torch.Tensor]


@dataclass(frozen=True, eq=False)
class CandidatePool:
    """The posts live at one as-of time, in a fixed order every scorer follows.

    ``view_percentile`` / ``views`` (as of that time, NaN = missing) feed the popularity baseline and the
    popularity–similarity correlation; they may be None when neither is wanted.
    """

    post_ids: np.ndarray  # (C,) int64, unique
    view_percentile: np.ndarray | None = None  # (C,) float
    views: np.ndarray | None = None  # (C,) float
    label: str = ""  # e.g. the as-of date, for messages

    def __post_init__(self) -> None:
        ids = np.asarray(self.post_ids, dtype=np.int64)
        if ids.ndim != 1:
            raise ValueError(f"pool {self.label!r}: post_ids must be 1-D, got shape {ids.shape}")
        order = np.argsort(ids, kind="stable")
        dup = ids[order][1:][np.diff(ids[order]) == 0]
        if dup.size:
            raise ValueError(f"pool {self.label!r}: post_id {int(dup[0])} listed twice")
        object.__setattr__(self, "post_ids", ids)
        object.__setattr__(self, "_order", order)
        for name in ("view_percentile", "views"):
            values = getattr(self, name)
            if values is None:
                continue
            arr = np.asarray(values, dtype=np.float64)
            if arr.shape != ids.shape:
                raise ValueError(f"pool {self.label!r}: {name} has shape {arr.shape}, post_ids {ids.shape}")
            object.__setattr__(self, name, arr)

    def __len__(self) -> int:
        return len(self.post_ids)

    def index_of(self, post_ids: np.ndarray) -> np.ndarray:
        """Position of each id in this pool, −1 where absent."""
        query = np.asarray(post_ids, dtype=np.int64)
        order: np.ndarray = self._order  # type: ignore[attr-defined]
        if not len(order):
            return np.full(query.shape, -1, dtype=np.int64)
        sorted_ids = self.post_ids[order]
        pos = np.searchsorted(sorted_ids, query).clip(max=len(order) - 1)
        return np.where(sorted_ids[pos] == query, order[pos], -1).astype(np.int64)


@dataclass(frozen=True, eq=False)
class RankingTask:
    """Which pool each anchor is ranked against, its positive, whether it is cold-start, and (optionally)
    posts removed from its candidates — the positive itself is never removed."""

    pools: Sequence[CandidatePool]
    pool_index: np.ndarray  # (A,) int, into pools
    positives: np.ndarray  # (A,) int64 post ids
    cold_start: np.ndarray | None = None  # (A,) bool; None = all warm
    exclude: Sequence[Sequence[int]] | None = None  # per anchor, post ids to drop from its candidates

    def __post_init__(self) -> None:
        idx = np.asarray(self.pool_index, dtype=np.int64)
        pos = np.asarray(self.positives, dtype=np.int64)
        if idx.shape != pos.shape or idx.ndim != 1:
            raise ValueError(f"pool_index {idx.shape} and positives {pos.shape} must be equal-length 1-D")
        bad = np.flatnonzero((idx < 0) | (idx >= len(self.pools)))
        if bad.size:
            raise ValueError(
                f"anchor {int(bad[0])}: pool_index {int(idx[bad[0]])} not in 0..{len(self.pools) - 1}"
            )
        cold = np.zeros(len(idx), bool) if self.cold_start is None else np.asarray(self.cold_start, bool)
        if cold.shape != idx.shape:
            raise ValueError(f"cold_start has shape {cold.shape}, expected {idx.shape}")
        if self.exclude is not None and len(self.exclude) != len(idx):
            raise ValueError(f"exclude has {len(self.exclude)} entries for {len(idx)} anchors")
        object.__setattr__(self, "pool_index", idx)
        object.__setattr__(self, "positives", pos)
        object.__setattr__(self, "cold_start", cold)

    def __len__(self) -> int:
        return len(self.positives)


@dataclass(frozen=True)
class RankResult:
    ranks: np.ndarray  # (A,) int64, 0-based rank of the positive; −1 = skipped
    skipped: dict[str, int]


@dataclass(frozen=True)
class EvalConfig:
    ks: tuple[int, ...] = (10, 50, 100)
    ndcg_ks: tuple[int, ...] = (10,)
    chunk_size: int = 256  # anchors per score block: 256 × 50k candidates × 4 B = 51 MB
    batch_size: int = 64  # texts per encoder call
    max_corr_pairs: int = 200_000  # (anchor, candidate) pairs sampled for the correlation
    seed: int = 0
    bm25: BM25Config = field(default_factory=BM25Config)
    baselines: tuple[str, ...] = ("popularity", "tfidf", "bm25")
    device: str = "cpu"  # where score blocks are computed
    progress: bool = True


# --- ranks and metrics -------------------------------------------------------------------------------------


def positive_ranks(
    scores: torch.Tensor, positive_index: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """(A,) 0-based pessimistic rank of each row's positive among its live candidates; −1 where the positive
    index is −1 or masked out. ``scores`` (A, C); ``positive_index`` (A,) long; ``mask`` (A, C) bool,
    True = candidate live."""
    torch._assert(scores.dim() == 2, "scores must be (A, C)")
    if positive_index.shape != (scores.shape[0],):
        raise ValueError(
            f"positive_index has shape {tuple(positive_index.shape)}, scores {tuple(scores.shape)}"
        )
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN: the encoder or scorer produced an undefined similarity")
    absent = positive_index < 0
    if scores.shape[1] == 0:
        return torch.full_like(positive_index, -1)
    safe = positive_index.clamp(min=0).unsqueeze(1)  # (A, 1)
    pos_score = scores.gather(1, safe)  # (A, 1)
    live = torch.ones_like(scores, dtype=torch.bool) if mask is None else mask
    higher = ((scores > pos_score) & live).sum(1)
    tied = ((scores == pos_score) & live).sum(1) - 1  # the positive ties with itself
    ranks = higher + tied
    absent |= ~live.gather(1, safe).squeeze(1)
    return torch.where(absent, torch.full_like(ranks, -1), ranks)


def recall_at_k(ranks: np.ndarray, k: int) -> float:
    """Share of evaluated anchors (rank ≥ 0) whose positive ranks in the top k; NaN when none."""
    r = np.asarray(ranks)
    r = r[r >= 0]
    return float(np.mean(r < k)) if r.size else math.nan


def ndcg_at_k(ranks: np.ndarray, k: int) -> float:
    """Mean NDCG@k over evaluated anchors (one relevant item): 1/log2(rank + 2) inside the top k, else 0."""
    r = np.asarray(ranks)
    r = r[r >= 0]
    if not r.size:
        return math.nan
    gain = np.where(r < k, 1.0 / np.log2(r.astype(np.float64) + 2.0), 0.0)
    return float(gain.mean())


def _exclusion_mask(
    pool: CandidatePool, excluded: Iterable[Sequence[int]], positives: np.ndarray
) -> torch.Tensor:
    """(a, C) live mask removing each anchor's excluded posts except its positive."""
    mask = torch.ones((len(positives), len(pool)), dtype=torch.bool)
    for row, (ids, positive) in enumerate(zip(excluded, positives, strict=True)):
        drop = np.asarray([i for i in ids if i != positive], dtype=np.int64)
        pos = pool.index_of(drop)
        mask[row, torch.from_numpy(pos[pos >= 0])] = False
    return mask


def rank_task(task: RankingTask, scorer: Scorer, *, chunk_size: int = 256, device: str = "cpu") -> RankResult:
    """Rank every anchor's positive with ``scorer``, pool by pool, ``chunk_size`` anchors at a time."""
    ranks = np.full(len(task), -1, dtype=np.int64)
    skipped: Counter[str] = Counter()
    for g, pool in enumerate(task.pools):
        anchors = np.flatnonzero(task.pool_index == g)
        pos_idx = pool.index_of(task.positives[anchors])
        skipped[SKIP_POSITIVE_NOT_IN_CANDIDATES] += int((pos_idx < 0).sum())
        anchors, pos_idx = anchors[pos_idx >= 0], pos_idx[pos_idx >= 0]
        for start in range(0, len(anchors), chunk_size):
            a, p = anchors[start : start + chunk_size], pos_idx[start : start + chunk_size]
            scores = scorer(g, a).to(device)
            if scores.shape != (len(a), len(pool)):
                raise ValueError(
                    f"scorer returned {tuple(scores.shape)} for pool {g}; expected {(len(a), len(pool))}"
                )
            mask = None
            if task.exclude is not None:
                mask = _exclusion_mask(pool, (task.exclude[i] for i in a), task.positives[a]).to(device)
            ranks[a] = positive_ranks(scores, torch.from_numpy(p).to(device), mask).cpu().numpy()
    return RankResult(ranks=ranks, skipped={k: v for k, v in skipped.items() if v})


def summarize(result: RankResult, task: RankingTask, cfg: EvalConfig) -> dict[str, Any]:
    """Flat metric dict: recall_at_k / ndcg_at_k overall, ``cold_start_*`` and ``warm_*`` splits, counts."""
    cold: np.ndarray = task.cold_start  # type: ignore[assignment]
    out: dict[str, Any] = {}
    for prefix, sel in (("", np.ones_like(cold)), ("cold_start_", cold), ("warm_", ~cold)):
        r = result.ranks[sel]
        for k in cfg.ks:
            out[f"{prefix}recall_at_{k}"] = _finite(recall_at_k(r, k))
        for k in cfg.ndcg_ks:
            out[f"{prefix}ndcg_at_{k}"] = _finite(ndcg_at_k(r, k))
    evaluated = result.ranks >= 0
    out["n_anchors"] = len(task)
    out["n_evaluated"] = int(evaluated.sum())
    out["n_cold_start"] = int((evaluated & cold).sum())
    out["median_rank"] = float(np.median(result.ranks[evaluated])) if evaluated.any() else None
    out["skipped"] = dict(result.skipped)
    return out


def _finite(x: float) -> float | None:
    """NaN (nothing to average) becomes None: JSON has no NaN and the report contract wants null."""
    return None if math.isnan(x) else x


# --- embeddings --------------------------------------------------------------------------------------------


def embedding_scorer(member_vecs: torch.Tensor, pool_vecs: Sequence[torch.Tensor]) -> Scorer:
    """Cosine scorer: anchors' member vectors (A, D) against each pool's post vectors (C_g, D)."""
    members = F.normalize(member_vecs.float(), dim=-1)
    posts = [F.normalize(v.float(), dim=-1) for v in pool_vecs]

    def score(pool: int, anchors: np.ndarray) -> torch.Tensor:
        m = members[torch.from_numpy(anchors).to(members.device)]  # (a, D)
        return m @ posts[pool].to(m.device).T  # (a, C)

    return score


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    x, y = x - x.mean(), y - y.mean()
    denom = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / denom if denom > 0 else None  # a constant input has no defined correlation


def popularity_similarity_correlation(
    member_vecs: torch.Tensor,
    pool_vecs: Sequence[torch.Tensor],
    task: RankingTask,
    *,
    max_pairs: int = 200_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Pearson and Spearman correlation between a candidate's view_percentile and its cosine with the
    anchor's member vector, over every (anchor, live candidate with a known percentile) pair — or a seeded
    uniform sample of ``max_pairs`` of them. Returns ``{"pearson", "spearman", "pairs"}``."""
    from scipy.stats import rankdata

    known = [
        np.flatnonzero(np.isfinite(p.view_percentile))
        if p.view_percentile is not None
        else np.zeros(0, np.int64)
        for p in task.pools
    ]
    per_anchor = np.array([len(known[g]) for g in task.pool_index], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(per_anchor)])
    total = int(offsets[-1])
    if total < 2:
        return {"pearson": None, "spearman": None, "pairs": total}
    flat = (
        np.arange(total)
        if total <= max_pairs
        else np.sort(np.random.default_rng(seed).choice(total, size=max_pairs, replace=False))
    )
    anchor = np.searchsorted(offsets, flat, side="right") - 1
    slot = flat - offsets[anchor]
    pools = task.pool_index[anchor]
    members = F.normalize(member_vecs.float(), dim=-1)
    sims = np.empty(len(flat), dtype=np.float64)
    pops = np.empty(len(flat), dtype=np.float64)
    for g in np.unique(pools):
        sel = np.flatnonzero(pools == g)
        cand = known[g][slot[sel]]
        posts = F.normalize(pool_vecs[g].float(), dim=-1)[torch.from_numpy(cand)]
        m = members[torch.from_numpy(anchor[sel])].to(posts.device)
        sims[sel] = (m * posts).sum(-1).cpu().double().numpy()
        pops[sel] = task.pools[g].view_percentile[cand]  # type: ignore[index]
    return {
        "pearson": _pearson(pops, sims),
        "spearman": _pearson(rankdata(pops), rankdata(sims)),
        "pairs": len(flat),
    }


def evaluate_scores(scorer: Scorer, task: RankingTask, cfg: EvalConfig | None = None) -> dict[str, Any]:
    """Metrics of any scorer (baselines, or a model scored some other way)."""
    cfg = cfg or EvalConfig()
    return summarize(rank_task(task, scorer, chunk_size=cfg.chunk_size, device=cfg.device), task, cfg)


def evaluate_retrieval(
    member_vecs: torch.Tensor,
    pool_vecs: Sequence[torch.Tensor],
    task: RankingTask,
    cfg: EvalConfig | None = None,
) -> dict[str, Any]:
    """Recall@k / NDCG@k (overall, cold-start, warm) of embeddings by exact cosine search, plus the
    popularity–similarity correlation (``corr_pearson``, ``corr_spearman``, ``corr_pairs``).

    ``member_vecs`` (A, D), row i = anchor i; ``pool_vecs[g]`` (C_g, D), aligned with
    ``task.pools[g].post_ids``.
    """
    cfg = cfg or EvalConfig()
    if member_vecs.shape[0] != len(task):
        raise ValueError(f"{member_vecs.shape[0]} member vectors for {len(task)} anchors")
    for g, (vecs, pool) in enumerate(zip(pool_vecs, task.pools, strict=True)):
        if vecs.shape[0] != len(pool):
            raise ValueError(f"pool {g} ({pool.label}): {vecs.shape[0]} vectors for {len(pool)} posts")
    out = evaluate_scores(embedding_scorer(member_vecs, pool_vecs), task, cfg)
    corr = popularity_similarity_correlation(
        member_vecs, pool_vecs, task, max_pairs=cfg.max_corr_pairs, seed=cfg.seed
    )
    out.update({f"corr_{k}": v for k, v in corr.items()})
    return out


# --- from texts: encoders and baselines in one run ---------------------------------------------------------


@dataclass(frozen=True)
class TextEncoder:
    """A model under evaluation: one callable per side (e.g. ``partial(encoder.encode, side="member")``)."""

    name: str
    member: TextEncodeFn
    post: TextEncodeFn


@dataclass(frozen=True, eq=False)
class EvalCorpus:
    """The prompt texts of one evaluation: one member prompt per anchor, one post prompt per pool entry."""

    task: RankingTask
    member_texts: Sequence[str]  # (A,)
    pool_texts: Sequence[Sequence[str]]  # pool_texts[g][j] renders task.pools[g].post_ids[j] as of that pool

    def __post_init__(self) -> None:
        if len(self.member_texts) != len(self.task):
            raise ValueError(f"{len(self.member_texts)} member texts for {len(self.task)} anchors")
        if len(self.pool_texts) != len(self.task.pools):
            raise ValueError(f"{len(self.pool_texts)} pool text lists for {len(self.task.pools)} pools")
        for g, (texts, pool) in enumerate(zip(self.pool_texts, self.task.pools, strict=True)):
            if len(texts) != len(pool):
                raise ValueError(f"pool {g} ({pool.label}): {len(texts)} texts for {len(pool)} posts")


def encode_texts(
    fn: TextEncodeFn,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    desc: str = "encode",
    progress: bool = True,
) -> torch.Tensor:
    """(N, D) float32 vectors of ``texts`` on CPU, each distinct text encoded once (a post whose counts did
    not change renders the same prompt on many days), in batches, without autograd."""
    unique: dict[str, int] = {}
    for t in texts:
        unique.setdefault(t, len(unique))
    order = list(unique)
    chunks: list[torch.Tensor] = []
    with torch.inference_mode():
        for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", disable=not progress):
            batch = order[start : start + batch_size]
            vecs = torch.as_tensor(fn(batch)).detach().to("cpu", torch.float32)
            if vecs.dim() != 2 or vecs.shape[0] != len(batch):
                raise ValueError(f"{desc}: encoder returned shape {tuple(vecs.shape)} for {len(batch)} texts")
            if not torch.isfinite(vecs).all():
                bad = int((~torch.isfinite(vecs)).any(1).nonzero()[0, 0])
                raise ValueError(f"{desc}: encoder returned a non-finite vector for text {batch[bad][:80]!r}")
            chunks.append(vecs)
    if not chunks:
        return torch.zeros((len(texts), 0))
    table = torch.cat(chunks)
    return table[torch.tensor([unique[t] for t in texts], dtype=torch.long)]


def _evaluate_encoder(enc: TextEncoder, corpus: EvalCorpus, cfg: EvalConfig) -> dict[str, Any]:
    members = encode_texts(
        enc.member,
        corpus.member_texts,
        batch_size=cfg.batch_size,
        desc=f"{enc.name} members",
        progress=cfg.progress,
    )
    flat = [t for texts in corpus.pool_texts for t in texts]
    posts = encode_texts(
        enc.post, flat, batch_size=cfg.batch_size, desc=f"{enc.name} posts", progress=cfg.progress
    )
    sizes = [len(texts) for texts in corpus.pool_texts]
    return evaluate_retrieval(members, list(torch.split(posts, sizes)), corpus.task, cfg)


def run_evaluation(
    corpus: EvalCorpus, encoders: Sequence[TextEncoder], cfg: EvalConfig | None = None
) -> dict[str, dict[str, Any]]:
    """Every encoder and every baseline named in ``cfg.baselines`` on the same anchors and candidate pools:
    ``{name: metrics}`` (baselines under "popularity", "tfidf", "bm25")."""
    cfg = cfg or EvalConfig()
    results: dict[str, dict[str, Any]] = {}
    for enc in encoders:
        if enc.name in cfg.baselines:
            raise ValueError(f"encoder name {enc.name!r} collides with a baseline")
        results[enc.name] = _evaluate_encoder(enc, corpus, cfg)
    for name in cfg.baselines:
        if name == "popularity":
            scorer: Scorer = PopularityScorer(corpus.task)
        elif name in ("tfidf", "bm25"):
            scorer = LexicalScorer(name, corpus.member_texts, corpus.pool_texts, bm25=cfg.bm25)
        else:
            raise ValueError(f"unknown baseline {name!r}; expected popularity, tfidf or bm25")
        results[name] = evaluate_scores(scorer, corpus.task, cfg)
    return results


# --- report ------------------------------------------------------------------------------------------------

_TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("recall_at_10", "R@10"),
    ("recall_at_50", "R@50"),
    ("recall_at_100", "R@100"),
    ("ndcg_at_10", "NDCG@10"),
    ("cold_start_recall_at_10", "cold-start R@10"),
    ("corr_pearson", "pop–sim Pearson"),
    ("corr_spearman", "pop–sim Spearman"),
)


def report_summary(
    results: Mapping[str, Mapping[str, Any]], *, model: str = "fine_tuned", pretrained: str = "pretrained"
) -> tuple[dict[str, Any], list[str]]:
    """The contract summary (issue 4) of ``reports/retrieval_eval.json`` and notes for every null figure."""
    notes: list[str] = []

    def get(method: str, key: str) -> Any:
        if method not in results:
            notes.append(f"{key} of {method!r}: method not evaluated in this run")
            return None
        value = results[method].get(key)
        if value is None:
            notes.append(f"{key} of {method!r}: not measurable (no evaluated anchors or constant input)")
        return value

    summary: dict[str, Any] = {
        "recall_at_10": get(model, "recall_at_10"),
        "recall_at_10_pretrained": get(pretrained, "recall_at_10"),
        "recall_at_10_popularity": get("popularity", "recall_at_10"),
        "recall_at_10_bm25": get("bm25", "recall_at_10"),
        "recall_at_10_tfidf": get("tfidf", "recall_at_10"),
        "cold_start_recall_at_10": get(model, "cold_start_recall_at_10"),
        "recall_at_50": get(model, "recall_at_50"),
        "recall_at_100": get(model, "recall_at_100"),
        "ndcg_at_10": get(model, "ndcg_at_10"),
        "corr_pearson": get(model, "corr_pearson"),
        "corr_spearman": get(model, "corr_spearman"),
        "corr_pearson_pretrained": get(pretrained, "corr_pearson"),
        "corr_spearman_pretrained": get(pretrained, "corr_spearman"),
    }
    main = results.get(model, {})
    summary |= {k: main.get(k) for k in ("n_anchors", "n_evaluated", "n_cold_start")}
    others = [m for m in results if m != model]
    ours = summary["recall_at_10"]
    rivals = [results[m].get("recall_at_10") for m in others]
    # null when there is nothing (measurable) to beat: "beats every baseline" must not hold vacuously
    summary["beats_all_baselines"] = (
        None
        if ours is None or not rivals or any(r is None for r in rivals)
        else all(ours > r for r in rivals)
    )
    return summary, notes


def markdown_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per method, the headline columns; null figures print as "–"."""
    head = "| method | " + " | ".join(title for _, title in _TABLE_COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(_TABLE_COLUMNS)
    rows = [head, rule]
    for method, metrics in results.items():
        cells = [_fmt(metrics.get(key)) for key, _ in _TABLE_COLUMNS]
        rows.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def write_eval_report(
    results: Mapping[str, Mapping[str, Any]],
    config: Mapping[str, Any] | EvalConfig,
    *,
    model: str = "fine_tuned",
    pretrained: str = "pretrained",
    notes: Sequence[str] = (),
    reports_dir: Path | None = None,
) -> tuple[Path, Path]:
    """Write ``reports/retrieval_eval.json`` (report contract; per-method metrics under ``details``) and
    ``reports/retrieval_eval.md`` (the table). Returns both paths."""
    from feed.config import REPORTS_DIR
    from feed.reports import write_report

    root = reports_dir or REPORTS_DIR
    summary, null_notes = report_summary(results, model=model, pretrained=pretrained)
    conf = asdict(config) if isinstance(config, EvalConfig) else dict(config)
    # subdir="" → reports/retrieval_eval.json: evaluations live at reports/, benchmarks under reports/bench/
    json_path = write_report(
        "retrieval_eval",
        summary,
        conf,
        notes=[*notes, *null_notes],
        details={"methods": {m: dict(v) for m, v in results.items()}},
        subdir="",
        reports_dir=root,
    )
    md = [
        "# Retrieval evaluation",
        "",
        f"Test anchors: {summary.get('n_evaluated')} evaluated of {summary.get('n_anchors')} "
        f"({summary.get('n_cold_start')} cold-start); exact search over the posts live at each "
        "anchor's time; ties ranked pessimistically.",
        "",
        markdown_table(results),
    ]
    md_path = json_path.with_suffix(".md")
    md_path.write_text("\n".join(md))
    return json_path, md_path
