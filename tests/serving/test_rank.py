"""The ranking stage (serving/rank.py, serving/explain.py) on a tiny random GR promoted the way training
promotes one: no Feast, no Milvus."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from feed.config import FeedPaths
from kernels.pytorch.pt_jagged_attention import multi_item_mask
from serving.explain import explain, why_text
from serving.rank import (
    FALLBACK_ACTION,
    PostVectorMismatch,
    Ranker,
    RankerUnavailable,
    blend,
    candidate_context,
    diversify,
    member_history,
)
from serving.types import MemberOnline, PostTable, ScoreRequest
from training.ranking.features import CONTEXT_FEATURES, DEVICES, TASKS, hash_strings
from training.ranking.model import GenerativeRanker, GRConfig, RankerInputs

E = 4  # post vector width of the tiny model
T0 = 1_760_000_000.0  # request time (epoch s)
HOUR = 3600.0


def tiny_config(**overrides: object) -> GRConfig:
    base = {
        "d_model": 16,
        "n_heads": 2,
        "n_layers": 2,
        "dropout": 0.0,
        "max_history": 8,
        "item_emb_dim": E,
        "hash_buckets": 1024,
        "author_buckets": 256,
        "n_experts": 2,
        "expert_dim": 8,
        "context_hidden": 8,
        "profile_buckets": 64,
    }
    base.update(overrides)
    return GRConfig(**base)  # type: ignore[arg-type]


def promote_random(
    home: Path, cfg: GRConfig, *, version: str = "g20260101", retrieval: str | None = "r1", seed: int = 0
) -> FeedPaths:
    """A GR with random weights saved and promoted by the training code, and the build report
    of its ranking set naming the retrieval model of its post vectors."""
    from pipelines.ranking_set import REPORT_FILE, set_dir
    from training.ranking.evaluate import promote
    from training.ranking.train import RankingTrainConfig, RankingTrainResult, save_model

    paths = FeedPaths(home)
    torch.manual_seed(seed)
    model = GenerativeRanker(cfg)  # its default init: attention neither uniform nor one-hot
    out = paths.artifacts / "ranking" / version
    result = RankingTrainResult(model=model, out_dir=out, steps=1, loss_history=[0.7])
    save_model(model, out, cfg, RankingTrainConfig(steps=1), result)
    promote(paths.artifacts / "ranking", version)
    if retrieval is not None:
        report = set_dir(paths, version) / REPORT_FILE
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps({"posts": {"promoted_retrieval_version": retrieval}}))
    return paths


@pytest.fixture(scope="module")
def ranker(tmp_path_factory: pytest.TempPathFactory) -> Ranker:
    return Ranker.load(promote_random(tmp_path_factory.mktemp("rank_home"), tiny_config()))


@pytest.fixture(scope="module")
def interleave_ranker(tmp_path_factory: pytest.TempPathFactory) -> Ranker:
    cfg = tiny_config(action_encoding="interleave")
    return Ranker.load(promote_random(tmp_path_factory.mktemp("rank_il"), cfg, seed=1))


def posts(ids: list[int] | np.ndarray, seed: int = 0, dim: int = E) -> PostTable:
    rng = np.random.default_rng(seed)
    n = len(ids)
    topics = np.array([("ai", "jobs", "sales", "")[i % 4] for i in range(n)], dtype=object)
    return PostTable(
        post_id=np.asarray(ids, np.int64),
        author_id=rng.integers(1, 6, n).astype(np.int64),
        format=np.array(["text"] * n, dtype=object),
        topic=topics,
        text=np.array([f"post {i}" for i in ids], dtype=object),
        created_at=T0 - rng.uniform(0, 500 * HOUR, n).round(),
        view_percentile=rng.integers(1, 101, n).astype(np.float64),
        like_percentile=rng.integers(1, 101, n).astype(np.float64),
        comment_percentile=rng.integers(1, 101, n).astype(np.float64),
        share_percentile=rng.integers(1, 101, n).astype(np.float64),
        follower_percentile=rng.integers(1, 101, n).astype(np.float64),
        embedding=rng.standard_normal((n, dim)).astype(np.float32),
        has_embedding=np.ones(n, bool),
        found=np.ones(n, bool),
    )


def member(member_id: int = 7, history: int = 0, *, sequence: bool = True, seed: int = 0) -> MemberOnline:
    rng = np.random.default_rng(seed + 100)
    ids = np.arange(1, history + 1, dtype=np.int64) * 10 + member_id * 1000
    m = MemberOnline(
        member_id=member_id,
        found=True,
        industry="software",
        current_role="engineer",
        top_author_ids=np.array([1, 3], np.int64),
        top_author_scores=np.array([0.9, 0.4]),
        top_topics=["ai", "sales"],
        top_topic_scores=np.array([0.7, 0.2]),
        has_affinity=True,
    )
    if sequence:
        m.sequence_post_ids = ids
        m.sequence_actions = rng.integers(0, 64, history).astype(np.uint8)
        m.sequence_ts = np.sort(T0 - rng.uniform(60, 90 * 24 * HOUR, history).round())
    else:
        m.engaged_post_ids = ids
    return m


def request(m: MemberOnline, n_candidates: int, seed: int = 0, device: str = "mobile_app") -> ScoreRequest:
    hist_ids = m.sequence_post_ids if m.sequence_post_ids is not None else m.engaged_post_ids
    cand_ids = np.arange(n_candidates, dtype=np.int64) + 90_000 + 100 * seed
    return ScoreRequest(
        member=m,
        candidates=posts(cand_ids, seed=seed),
        history_posts=posts(np.unique(hist_ids), seed=seed + 50),
        device_type=device,
        request_ts=T0,
    )


def test_no_current_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(RankerUnavailable, match=r"no promoted ranker.*CURRENT"):
        Ranker.load(FeedPaths(tmp_path))


def test_unreadable_weights_and_other_kinds_are_unavailable(tmp_path: Path) -> None:
    paths = promote_random(tmp_path, tiny_config())
    folder = paths.artifacts / "ranking" / "g20260101"
    (folder / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RankerUnavailable, match="cannot load the weights"):
        Ranker.load(paths)
    configs = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**configs, "kind": "AggregatedHistoryRanker"}))
    with pytest.raises(RankerUnavailable, match="serves the GR only"):
        Ranker.load(paths)


def test_load_reads_the_promoted_version(ranker: Ranker) -> None:
    assert ranker.version == "g20260101"
    assert ranker.retrieval_version == "r1"
    assert not ranker.model.training
    assert ranker.config.max_history == 8


def test_retrieval_version_recorded_in_the_config_wins(tmp_path: Path) -> None:
    paths = promote_random(tmp_path, tiny_config(), retrieval=None)
    assert Ranker.load(paths).retrieval_version is None  # no record: member embeddings unused
    config = paths.artifacts / "ranking" / "g20260101" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "retrieval_version": "r9"}))
    assert Ranker.load(paths, kernel="pytorch").retrieval_version == "r9"


def test_batched_members_score_as_if_alone(ranker: Ranker) -> None:
    requests = [
        request(member(1, history=12), 5, seed=1),  # longer than max_history: truncated
        request(member(2, history=3, sequence=False), 3, seed=2),  # engaged-ids fallback
        request(member(3, history=0), 4, seed=3),  # empty history
        request(member(4, history=2), 0, seed=4),  # nothing to score
        request(member(5, history=6), 1, seed=5, device="tablet"),
    ]
    together = ranker.score(requests)
    assert ranker.score([]) == []
    assert len(together) == len(requests)
    for req, got in zip(requests, together, strict=True):
        alone = ranker.score([req])[0]
        assert got.probs.shape == (len(req.candidates), len(TASKS))
        np.testing.assert_allclose(got.probs, alone.probs, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(got.why_post_id, alone.why_post_id)
        np.testing.assert_allclose(got.why_weight, alone.why_weight, rtol=1e-5, atol=1e-6)
        assert got.history_used == alone.history_used
    assert [r.history_used for r in together] == [8, 3, 0, 2, 6]
    assert together[0].probs.std(0).max() > 1e-4  # the candidates do get different scores


def test_scores_equal_a_direct_forward_on_hand_built_inputs(ranker: Ranker) -> None:
    m = member(9, history=0)
    m.sequence_post_ids = np.array([501, 502, 503], np.int64)
    m.sequence_actions = np.array([1, 2, 5], np.uint8)
    m.sequence_ts = np.array([T0 - 3 * HOUR, T0 - 2 * HOUR, T0 + 30.0])  # the last is "in the future"
    history_posts = posts([501, 502], seed=3)  # 503 is unknown to the store
    history_posts.has_embedding[1] = False  # 502 has no vector (its row holds garbage)
    cands = posts([601, 602], seed=4)
    cands.author_id[:] = [3, 4]
    cands.topic[:] = ["ai", "jobs"]
    cands.view_percentile[:] = [50.0, np.nan]
    cands.has_embedding[0] = False
    req = ScoreRequest(m, cands, history_posts, "desktop_web", T0)
    got = ranker.score([req])[0]

    zero = np.zeros(E, np.float32)
    age1 = np.log1p((T0 - cands.created_at[1]) / HOUR)
    age0 = np.log1p((T0 - cands.created_at[0]) / HOUR)
    percentiles = ("view_percentile", "like_percentile", "comment_percentile", "share_percentile")
    columns = (*percentiles, "follower_percentile")
    context = np.array(
        [
            [0.4, 0.7, *(getattr(cands, c)[0] / 100 for c in columns), age0],  # author 3, topic ai
            [0.0, 0.0, *(getattr(cands, c)[1] / 100 for c in columns), age1],  # not in the top lists
        ],
        np.float32,
    )
    assert context[0, 2] == 0.5
    assert np.isnan(context[1, 2])
    inputs = RankerInputs(
        hist_item=torch.from_numpy(np.stack([history_posts.embedding[0], zero, zero])),
        hist_post_id=torch.tensor([501, 502, 503]),
        hist_author_id=torch.tensor([int(history_posts.author_id[0]), int(history_posts.author_id[1]), 0]),
        hist_action=torch.tensor([1, 2, 5]),
        hist_age_s=torch.tensor([3 * HOUR, 2 * HOUR, 0.0]),
        hist_offsets=torch.tensor([0, 3]),
        cand_item=torch.from_numpy(np.stack([zero, cands.embedding[1]])),
        cand_post_id=torch.tensor([601, 602]),
        cand_author_id=torch.tensor([3, 4]),
        cand_device=torch.full((2,), DEVICES.index("desktop_web")),
        cand_context=torch.from_numpy(context),
        cand_offsets=torch.tensor([0, 2]),
        profile=torch.from_numpy(hash_strings(["software", "engineer"]).reshape(1, 2)),
        member_emb=torch.zeros(1, 0),
        member_emb_present=torch.zeros(1, dtype=torch.bool),
    )
    with torch.no_grad():
        want = torch.sigmoid(ranker.model(inputs)).numpy()
    np.testing.assert_allclose(got.probs, want, rtol=1e-5, atol=1e-6)


def test_post_vectors_are_used_only_where_present(ranker: Ranker) -> None:
    req = request(member(1, history=5), 4)
    base = ranker.score([req])[0]
    req.candidates.has_embedding[:2] = False
    req.candidates.embedding[:2] = 0.0
    zeroed = ranker.score([req])[0]
    req.candidates.embedding[:2] = 123.0  # garbage behind has_embedding False is never read
    garbage = ranker.score([req])[0]
    np.testing.assert_array_equal(zeroed.probs, garbage.probs)
    assert not np.allclose(base.probs[:2], zeroed.probs[:2])
    np.testing.assert_allclose(base.probs[2:], zeroed.probs[2:], rtol=1e-5, atol=1e-6)


def test_unknown_history_posts_count_as_the_unknown_post(ranker: Ranker) -> None:
    m = member(1, history=4)
    missing = request(m, 3)
    missing.history_posts = missing.history_posts.take(np.array([0, 1]))  # the two newest are unknown
    as_unknown = request(m, 3)
    as_unknown.history_posts.author_id[2:] = 0
    as_unknown.history_posts.has_embedding[2:] = False
    np.testing.assert_allclose(
        ranker.score([missing])[0].probs, ranker.score([as_unknown])[0].probs, rtol=1e-6, atol=1e-7
    )


def test_post_vector_width_mismatch_is_a_clear_unavailability(ranker: Ranker) -> None:
    req = request(member(1, history=2), 3)
    req.candidates = posts([1, 2, 3], dim=E + 1)
    with pytest.raises(PostVectorMismatch, match=rf"{E}-d post vectors.*r1.*{E + 1}-d") as info:
        ranker.score([req])
    assert isinstance(info.value, RankerUnavailable)


def test_context_matches_the_training_set_rule() -> None:
    """candidate_context and pipelines.ranking_set.target_context on the same Feast values."""
    from pipelines.ranking_set import target_context

    cands = posts(np.arange(1, 9), seed=7)
    cands.author_id[:] = [1, 3, 2, 0, 1, 5, 3, 4]
    cands.topic[:] = ["ai", "sales", "jobs", "", "ai", "ai", "other", "sales"]
    cands.like_percentile[2] = np.nan
    cands.follower_percentile[5] = np.nan
    cands.created_at[3] = np.nan
    cands.created_at[4] = T0 + 5 * HOUR  # created after the lookup time: age 0
    cands.created_at[6] = T0 - 1234.5
    for has_affinity in (True, False):
        m = member(1)
        m.has_affinity = has_affinity
        got = candidate_context(m, cands, T0)
        n = len(cands)
        lists = (
            (m.top_author_ids, m.top_author_scores, np.array(m.top_topics), m.top_topic_scores)
            if has_affinity
            else (None, None, None, None)
        )
        rows = pd.DataFrame(
            {
                "member_affinity__top_author_ids": [lists[0]] * n,
                "member_affinity__top_author_scores": [lists[1]] * n,
                "member_affinity__top_topics": [lists[2]] * n,
                "member_affinity__top_topic_scores": [lists[3]] * n,
                "author_id": cands.author_id,
                "post_content__topic": [t or None for t in cands.topic],
                "post_engagement__view_percentile": cands.view_percentile,
                "post_engagement__like_percentile": cands.like_percentile,
                "post_engagement__comment_percentile": cands.comment_percentile,
                "post_engagement__share_percentile": cands.share_percentile,
                "author_stats__follower_percentile": cands.follower_percentile,
                "post_content__created_at": pd.to_datetime(cands.created_at, unit="s", utc=True),
                "event_timestamp": pd.to_datetime(np.full(n, T0), unit="s", utc=True),
            }
        )
        want = target_context(rows).to_numpy()
        assert got.dtype == np.float32
        assert got.shape == (n, len(CONTEXT_FEATURES))
        np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)
    assert np.isnan(got[:, :2]).all()  # no affinity row: NaN, not 0


def test_nan_features_still_score(ranker: Ranker) -> None:
    m = member(1, history=3)
    m.has_affinity = False
    m.industry = None
    req = request(m, 4)
    for column in ("view_percentile", "like_percentile", "follower_percentile", "created_at"):
        getattr(req.candidates, column)[:] = np.nan
    context = candidate_context(m, req.candidates, T0)
    missing = [CONTEXT_FEATURES.index(c) for c in ("author_affinity", "topic_affinity", "view_percentile")]
    assert np.isnan(context[:, missing]).all()
    assert np.isnan(context[:, CONTEXT_FEATURES.index("post_age_hours_log1p")]).all()
    assert not np.isnan(context[:, CONTEXT_FEATURES.index("share_percentile")]).any()
    got = ranker.score([req])[0]
    assert np.isfinite(got.probs).all()
    assert ((got.probs > 0) & (got.probs < 1)).all()


def test_history_from_the_sequence_and_the_engaged_fallback() -> None:
    m = member(1, history=0)
    m.sequence_post_ids = np.array([30, 10, 20], np.int64)  # not in time order
    m.sequence_actions = np.array([3, 1, 2], np.uint8)
    m.sequence_ts = np.array([T0 - 10.0, T0 - 300.0, T0 + 60.0])
    ids, actions, ages = member_history(m, T0, max_history=2)
    np.testing.assert_array_equal(ids, [30, 20])  # newest two, oldest first
    np.testing.assert_array_equal(actions, [3, 2])
    np.testing.assert_array_equal(ages, [10.0, 0.0])  # a time after the request: age 0
    assert member_history(m, T0, max_history=0)[0].size == 0

    old = member(2, history=5, sequence=False)
    ids, actions, ages = member_history(old, T0, max_history=3)
    np.testing.assert_array_equal(ids, old.engaged_post_ids[-3:])
    assert (actions == FALLBACK_ACTION).all()
    assert FALLBACK_ACTION == 1
    assert (ages == 0).all()

    bad = member(3, history=2)
    bad.sequence_actions = np.array([1, 64])
    with pytest.raises(ValueError, match=r"action codes must lie in \[0, 64\)"):
        member_history(bad, T0, 8)


def test_member_embedding_only_from_the_rankers_retrieval_model(tmp_path: Path) -> None:
    ranker = Ranker.load(promote_random(tmp_path, tiny_config(member_emb_dim=4), retrieval="r7"))
    m = member(1, history=3)
    req = request(m, 5)
    without = ranker.score([req])[0].probs
    m.embedding = np.array([0.5, -0.5, 0.5, -0.5], np.float32)
    m.embedding_version = "r6"  # another retrieval model: dropped, as the set builder drops it
    np.testing.assert_array_equal(ranker.score([req])[0].probs, without)
    m.embedding_version = "r7"
    assert not np.allclose(ranker.score([req])[0].probs, without)


def test_concurrent_scoring_keeps_each_requests_why(ranker: Ranker) -> None:
    from concurrent.futures import ThreadPoolExecutor

    requests = [request(member(i, history=3 + i), 4, seed=i) for i in range(1, 7)]
    alone = [ranker.score([r])[0] for r in requests]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            for want, got in zip(alone, pool.map(lambda r: ranker.score([r])[0], requests), strict=True):
                np.testing.assert_array_equal(got.why_post_id, want.why_post_id)
                np.testing.assert_allclose(got.probs, want.probs, rtol=1e-5, atol=1e-6)


def test_empty_history_has_no_why(ranker: Ranker) -> None:
    got = ranker.score([request(member(1, history=0), 3)])[0]
    assert got.history_used == 0
    assert (got.why_post_id == -1).all()
    assert (got.why_weight == 0).all()
    assert np.isfinite(got.probs).all()


def reference_why(ranker: Ranker, req: ScoreRequest) -> tuple[np.ndarray, np.ndarray]:
    """The most attended history post from the full (L, L) masked softmax of the last block (the
    kernels' multi-item mask, no shortcut), with the block input taken from a hook of the test's own."""
    block = ranker.model.backbone.blocks[-1]
    seen: list[torch.Tensor] = []
    handle = block.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        got = ranker.score([req])[0]
    finally:
        handle.remove()
    x = seen[-1].float()
    per_item = ranker.per_item
    n = len(req.candidates)
    h = got.history_used // per_item
    L, d = x.shape
    nh = ranker.config.n_heads
    q, k, _ = block.qkv(block.ln1(x)).view(L, 3, nh, d // nh).unbind(1)
    scores = torch.einsum("ihd,jhd->hij", q, k) / math.sqrt(d // nh)  # (nh, L, L)
    mask = multi_item_mask(torch.tensor([L]), torch.tensor([n]), L)[0]
    probs = scores.masked_fill(~mask, float("-inf")).softmax(-1).mean(0)  # (L, L)
    cand = probs[L - n :, : h * per_item].reshape(n, h, per_item).sum(-1)  # (n, h)
    weight, index = cand.max(-1)
    ids, _, _ = member_history(req.member, req.request_ts, ranker.config.max_history)
    return ids[index.numpy()], weight.detach().numpy()


@pytest.mark.parametrize("encoding", ["sum", "interleave"])
def test_why_is_the_most_attended_history_post(
    encoding: str, ranker: Ranker, interleave_ranker: Ranker
) -> None:
    model = ranker if encoding == "sum" else interleave_ranker
    req = request(member(4, history=11), 6, seed=3)
    got = model.score([req])[0]
    kept = req.member.sequence_post_ids[-8:]
    assert np.isin(got.why_post_id, kept).all()
    assert ((got.why_weight > 0) & (got.why_weight <= 1)).all()
    assert got.history_used == 8 * model.per_item
    with torch.inference_mode():
        want_ids, want_w = reference_why(model, req)
    np.testing.assert_array_equal(got.why_post_id, want_ids)
    np.testing.assert_allclose(got.why_weight, want_w, rtol=1e-4, atol=1e-6)
    assert len(set(got.why_post_id.tolist())) > 1 or got.why_weight.max() > 1 / 9  # not a flat softmax


def test_blend() -> None:
    probs = np.array([[0.5, 0.1, 0.2, 0.3, 0.0, 1.0], [0.0, 0.9, 0.0, 0.0, 0.0, 0.0]], np.float32)
    got = blend(probs, {"click": 1.0, "skip": -0.5, "share": 2.0})
    np.testing.assert_allclose(got, [0.5 - 0.05 + 2.0, -0.45], rtol=1e-6)
    assert blend(probs, {}).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match=r"unknown task.*'clicks'"):
        blend(probs, {"clicks": 1.0})
    with pytest.raises(ValueError, match="shape"):
        blend(probs[:, :5], {"click": 1.0})


def test_diversify_caps_authors_and_keeps_score_order() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random(60)
    authors = rng.integers(0, 5, 60)  # author 0: unknown, each such post its own author
    order = diversify(scores, authors, k=20, max_per_author=2)
    assert len(order) == 20
    assert len(set(order.tolist())) == 20
    assert (np.diff(scores[order]) <= 0).all()
    counts = np.bincount(authors[order][authors[order] > 0])
    assert counts.max() <= 2
    # every skipped post above the last one taken was skipped for the cap
    skipped = np.setdiff1d(np.flatnonzero(scores >= scores[order[-1]]), order)
    assert all(authors[i] != 0 and (authors[order] == authors[i]).sum() == 2 for i in skipped)

    few = diversify(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 1, 1, 2]), k=4, max_per_author=1)
    np.testing.assert_array_equal(few, [0, 3])  # the cap leaves fewer than k
    unknown = diversify(np.array([0.1, 0.3, 0.2]), np.zeros(3, np.int64), k=5, max_per_author=1)
    np.testing.assert_array_equal(unknown, [1, 2, 0])
    assert diversify(np.array([np.nan, 0.5]), np.array([1, 2]), k=2, max_per_author=1).tolist() == [1, 0]
    with pytest.raises(ValueError, match="max_per_author"):
        diversify(scores, authors, k=5, max_per_author=0)


def test_why_text() -> None:
    m = member(1, history=0)
    m.sequence_post_ids = np.array([123, 124], np.int64)
    m.sequence_actions = np.array([2, 1], np.uint8)  # 123 skipped, 124 clicked
    m.sequence_ts = np.array([T0 - 20, T0 - 10])
    why = why_text(m, topic="ai", author_id=3, history_post_id=124, attention=0.4123)
    assert why.text == "like post 124 you engaged with (attention 0.41); topic: ai; you follow this author"
    assert (why.history_post_id, why.topic, why.followed_author) == (124, "ai", True)
    assert why.attention == pytest.approx(0.4123)
    seen = why_text(m, topic="jobs", author_id=2, history_post_id=123, attention=0.2)
    assert seen.text == "like post 123 you saw (attention 0.20)"
    assert not seen.followed_author
    assert seen.topic is None
    nothing = why_text(m, topic="", author_id=0, history_post_id=-1, attention=0.0)
    assert nothing.history_post_id is None
    assert nothing.attention is None
    assert nothing.text


def test_explain_builds_a_why_per_served_item(ranker: Ranker) -> None:
    req = request(member(2, history=5, sequence=False), 6)
    got = ranker.score([req])[0]
    order = diversify(blend(got.probs, {"click": 1.0, "like": 1.0}), req.candidates.author_id, 4, 1)
    whys = explain(req.member, req.candidates, got, order)
    assert len(whys) == len(order)
    for why, i in zip(whys, order, strict=True):
        assert why.history_post_id == int(got.why_post_id[i])
        assert why.text.startswith(f"like post {why.history_post_id} you engaged with")
