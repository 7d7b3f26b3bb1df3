"""The synthetic generator: determinism, schemas, and the generative model's properties measured from the
generated data (each test could fail if the model or the logging policy broke)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.ingest import LANDING_SCHEMAS
from pipelines.schemas import ENGAGED_LABELS, RAW_SCHEMAS
from pipelines.synth import TOPICS, generate, synth_config, write_synth
from pipelines.synth.config import DEFAULT_START
from pipelines.synth.vocab import TOPIC_SPECS


@pytest.fixture(scope="module")
def impressions(tiny_tables: dict[str, pa.Table]) -> pd.DataFrame:
    """Impressions joined with the generator's truth: the member's interest in the post's topic, the post's
    quality, its author's follower count."""
    imp = tiny_tables["raw_impressions"].to_pandas()
    posts = tiny_tables["raw_posts"].to_pandas()[["post_id", "author_id"]]
    truth_p = tiny_tables["truth_posts"].to_pandas()
    truth_m = tiny_tables["truth_members"].to_pandas()
    followers = tiny_tables["raw_follows"].to_pandas().groupby("author_id").size().rename("followers")
    imp = imp.merge(posts, on="post_id").merge(truth_p, on="post_id")
    imp = imp.merge(followers, left_on="author_id", right_index=True, how="left").fillna({"followers": 0})
    interests = np.stack(truth_m.set_index("member_id").loc[imp["member_id"], "interests"].to_numpy())
    topic_idx = imp["topic"].map({t: i for i, t in enumerate(TOPICS)}).to_numpy()
    imp["interest"] = interests[np.arange(len(imp)), topic_idx]
    imp["engaged"] = imp[list(ENGAGED_LABELS)].max(axis=1)
    return imp


def _rate_by_quartile(imp: pd.DataFrame, column: str) -> np.ndarray:
    q = pd.qcut(imp[column].rank(method="first"), 4, labels=False)
    return imp.groupby(q)["click"].mean().to_numpy()


def test_topics_exported() -> None:
    assert 20 <= len(TOPICS) <= 30
    assert len(set(TOPICS)) == len(TOPICS)


def test_same_seed_same_data_other_seed_other_data(tiny_tables: dict[str, pa.Table]) -> None:
    again = generate(synth_config("tiny", seed=0))
    for name, table in tiny_tables.items():
        assert again[name].equals(table), name
    other = generate(synth_config("tiny", seed=1))
    assert not other["raw_impressions"].equals(tiny_tables["raw_impressions"])
    assert not other["raw_members"].equals(tiny_tables["raw_members"])


def test_tables_match_the_canonical_schemas(tiny_tables: dict[str, pa.Table]) -> None:
    assert set(tiny_tables) == set(LANDING_SCHEMAS)
    for name, table in tiny_tables.items():
        assert table.schema.equals(LANDING_SCHEMAS[name]), name
        assert table.num_rows > 0, name


def test_scale_and_period(tiny_tables: dict[str, pa.Table]) -> None:
    cfg = synth_config("tiny")
    assert tiny_tables["raw_members"].num_rows == cfg.n_members
    imp = tiny_tables["raw_impressions"].to_pandas()
    assert imp["event_id"].is_unique
    start = pd.Timestamp(DEFAULT_START)
    assert imp["event_timestamp"].min() >= start
    assert imp["event_timestamp"].max() < start + pd.Timedelta(days=cfg.days)
    assert imp["request_id"].isna().all()
    posts = tiny_tables["raw_posts"].to_pandas()
    new = (posts["created_at"] >= start).mean()
    assert 0.5 < new < 0.95  # new posts keep arriving; a backlog exists before the start


def test_member_activity_is_heavy_tailed(impressions: pd.DataFrame) -> None:
    per_member = impressions.groupby("member_id").size().sort_values(ascending=False)
    top_decile = per_member.iloc[: len(per_member) // 10].sum() / per_member.sum()
    assert top_decile > 0.4  # a uniform-ish (Poisson) activity would give ≈ 0.12
    assert per_member.max() > 20 * per_member.median()


def test_engagement_rises_with_interest_quality_popularity(impressions: pd.DataFrame) -> None:
    for column in ("interest", "quality", "followers"):
        rates = _rate_by_quartile(impressions, column)
        assert rates[-1] > 1.3 * rates[0], (column, rates)
    assert _rate_by_quartile(impressions, "interest")[-1] > 2 * _rate_by_quartile(impressions, "interest")[0]


def test_engagement_falls_with_position(impressions: pd.DataFrame) -> None:
    top = impressions.loc[impressions["position"] <= 1, "click"].mean()
    deep = impressions.loc[impressions["position"] >= 8, "click"].mean()
    assert top > 1.3 * deep


def test_follow_bonus(impressions: pd.DataFrame, tiny_tables: dict[str, pa.Table]) -> None:
    follows = tiny_tables["raw_follows"].to_pandas()
    pairs = set(zip(follows["member_id"], follows["author_id"], strict=True))
    followed = np.array(
        [(m, a) in pairs for m, a in zip(impressions["member_id"], impressions["author_id"], strict=True)]
    )
    assert impressions.loc[followed, "click"].mean() > impressions.loc[~followed, "click"].mean()


def test_hard_negatives_are_common(impressions: pd.DataFrame) -> None:
    per_session = impressions.groupby("session_id")["engaged"].agg(["min", "max"])
    mixed = ((per_session["max"] == 1) & (per_session["min"] == 0)).mean()
    assert mixed > 0.3
    assert 0.03 < impressions["click"].mean() < 0.3


def test_logging_policy_is_not_uniform(impressions: pd.DataFrame, tiny_tables: dict[str, pa.Table]) -> None:
    """Popular authors and topic-matched posts are shown far more than a uniform feed would."""
    shown = impressions.groupby("author_id").size()
    followers = impressions.groupby("author_id")["followers"].first()
    assert shown.corr(followers, method="spearman") > 0.3
    uniform_interest = 1.0 / len(TOPICS)
    assert impressions["interest"].mean() > 2 * uniform_interest


def test_label_hierarchy(tiny_tables: dict[str, pa.Table]) -> None:
    imp = tiny_tables["raw_impressions"].to_pandas()
    engaged = imp[list(ENGAGED_LABELS)].max(axis=1)
    assert not ((imp["skip"] == 1) & (imp["long_dwell"] == 1)).any()
    assert not ((imp["skip"] == 1) & (engaged == 1)).any()
    assert (imp.loc[imp["comment"] == 1, "click"] == 1).all()
    assert (imp.loc[imp["share"] == 1, "click"] == 1).all()
    assert imp.loc[imp["long_dwell"] == 1, "click"].mean() > 0.7  # long dwell mostly after a click
    rates = imp[["click", "like", "comment", "share"]].mean()
    assert rates["click"] > rates["like"] > rates["comment"] > rates["share"] > 0
    positions = imp.sort_values(["session_id", "event_timestamp"]).groupby("session_id")["position"]
    assert (positions.apply(lambda p: list(p) == list(range(len(p))))).all()


def test_sensitive_attribute_only_in_audit(tiny_tables: dict[str, pa.Table]) -> None:
    for name in RAW_SCHEMAS:
        assert not {"group", "gender", "age"} & set(tiny_tables[name].column_names)
    audit = tiny_tables["audit_attributes"].to_pandas()
    assert set(audit["attribute"]) == {"group"}
    assert set(audit["value"]) == {"A", "B"}
    assert audit["member_id"].is_unique
    assert len(audit) == tiny_tables["raw_members"].num_rows


def test_post_quality_is_equal_across_groups(tiny_tables: dict[str, pa.Table]) -> None:
    posts = tiny_tables["raw_posts"].to_pandas().merge(tiny_tables["truth_posts"].to_pandas(), on="post_id")
    group = tiny_tables["audit_attributes"].to_pandas().set_index("member_id")["value"]
    by_group = posts.groupby(posts["author_id"].map(group))["quality"]
    assert abs(by_group.mean()["A"] - by_group.mean()["B"]) < 0.15
    assert abs(by_group.std()["A"] - by_group.std()["B"]) < 0.15


def test_posts_carry_topic_hashtags(tiny_tables: dict[str, pa.Table]) -> None:
    posts = tiny_tables["raw_posts"].to_pandas().merge(tiny_tables["truth_posts"].to_pandas(), on="post_id")
    canonical = {t.name: t.hashtag for t in TOPIC_SPECS}
    tags = posts["text"].map(lambda t: re.findall(r"#(\w+)", t))
    assert tags.map(len).between(1, 3).all()
    assert (tags.str[0] == posts["topic"].map(canonical)).all()
    articles = posts["format"] == "article"
    assert posts.loc[articles, ["article_title", "article_domain"]].notna().all().all()
    assert posts.loc[~articles, ["article_title", "article_domain"]].isna().all().all()


def test_authors_are_members_and_popularity_drives_followers(tiny_tables: dict[str, pa.Table]) -> None:
    members = set(tiny_tables["raw_members"].column("member_id").to_pylist())
    assert set(tiny_tables["raw_posts"].column("author_id").to_pylist()) <= members
    follows = tiny_tables["raw_follows"].to_pandas()
    assert not (follows["member_id"] == follows["author_id"]).any()
    assert not follows.duplicated(["member_id", "author_id"]).any()
    followers = follows.groupby("author_id").size()
    assert followers.max() > 5 * followers.median()  # heavy-tailed follower counts


def test_profiles_relate_to_topics_through_words(tiny_tables: dict[str, pa.Table]) -> None:
    """Profiles carry no topic id or hashtag, yet the role's words predict the latent interests: electrical
    engineers lean to renewable energy, nurses to healthcare."""
    members = tiny_tables["raw_members"].to_pandas()
    text = members["headline"] + " " + members["skills"].map(" ".join)
    assert not text.str.contains("#").any()
    assert not text.str.contains("|".join(t for t in TOPICS if "_" in t)).any()
    interests = np.stack(tiny_tables["truth_members"].to_pandas()["interests"].to_numpy())
    for role, topic in (("Electrical Engineer", "renewable_energy"), ("Registered Nurse", "healthcare")):
        rows = members["current_role"].str.contains(role).to_numpy()
        k = TOPICS.index(topic)
        assert rows.sum() > 5
        assert interests[rows, k].mean() > 3 * interests[:, k].mean(), role
    assert members["skills"].map(len).min() >= 3
    assert members["work_history"].map(lambda h: h[0]["end"] is None).all()


def test_profile_updates_change_some_fields(tiny_tables: dict[str, pa.Table]) -> None:
    updates = tiny_tables["raw_profile_updates"].to_pandas()
    assert 0 < len(updates) < 0.1 * tiny_tables["raw_members"].num_rows
    changed = updates[["headline", "current_role", "industry", "skills", "work_history"]].notna()
    assert changed.any(axis=1).all()
    assert not changed.all(axis=1).all()
    start = pd.Timestamp(DEFAULT_START)
    assert (updates["event_timestamp"] > start).all()


def test_write_synth_layout(tmp_path: Path) -> None:
    cfg = synth_config("tiny", n_members=300, n_posts=500, days=7, chunk_members=100)
    rows = write_synth(cfg, tmp_path)
    parts = sorted((tmp_path / "raw_impressions").glob("part-*.parquet"))
    assert len(parts) == 3
    assert sum(pq.read_metadata(p).num_rows for p in parts) == rows["raw_impressions"]
    assert (tmp_path / "raw_members.parquet").exists()
    events = pa.concat_tables([pq.read_table(p) for p in parts]).column("event_id").to_numpy()
    assert np.array_equal(events, np.arange(1, len(events) + 1))
