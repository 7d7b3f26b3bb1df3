"""The static sensitive-attribute check. ``test_the_repository_names_no_sensitive_attribute`` is the build
gate: a feature service, prompt template or model input that names a sensitive attribute fails the normal
suite. The other tests plant a violation in each kind of place and check it is caught and named."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feed.config import FeedPaths
from pipelines import feature_store
from pipelines.audit import static

PLANTED_VIEW = """

planted_fv = FeatureView(
    name="planted_view",
    entities=[member],
    ttl=timedelta(days=1),
    schema=[Field(name="headline", dtype=String), Field(name="group", dtype=String)],
    online=True,
    source=member_profile_source,
    tags={"team": "audit"},
)
planted_v1 = FeatureService(name="planted_v1", features=[planted_fv[["group"]]], tags={"team": "audit"})
"""


def test_the_repository_names_no_sensitive_attribute() -> None:
    result = static.run_static_check()
    assert result.passed, result.message()
    assert {"feast", "prompt", "model_input"} <= set(result.scanned)
    assert result.scanned["feast"] > 100  # every view field and service projection was read
    assert "group" in result.attributes
    assert "gender" in result.attributes


def test_a_planted_feature_view_field_fails_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    planted = tmp_path / "feature_definitions.py"
    planted.write_text(feature_store.DEFINITIONS_FILE.read_text() + PLANTED_VIEW)
    monkeypatch.setattr(feature_store, "DEFINITIONS_FILE", planted)
    result = static.run_static_check()
    assert not result.passed
    where = {(v.where, v.name, v.attribute) for v in result.violations}
    assert ("Feast definitions FeatureView 'planted_view'", "group", "group") in where
    assert ("Feast definitions FeatureService 'planted_v1'", "planted_view__group", "group") in where
    assert len(result.violations) == 2  # the view's other field and the real views are clean
    with pytest.raises(static.SensitiveAttributeError, match=r"FeatureView 'planted_view': 'group'"):
        result.raise_for_violations()


def test_a_planted_prompt_template_line_fails_the_check() -> None:
    from training.prompts import render, v1

    def member_profile(member):  # type: ignore[no-untyped-def]
        return v1.member_profile(member) + "\ngender: unknown"

    planted = dataclasses.replace(v1.TEMPLATE, version="v1x", member_profile=member_profile)
    result = static.run_static_check(templates={**render.TEMPLATES, "v1x": planted})
    assert [(v.where, v.name) for v in result.violations] == [
        ("prompt template 'v1x' (rendered text)", "gender")
    ]
    assert "v1x" in result.message()


def test_a_planted_model_input_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    from training.ranking import features

    monkeypatch.setattr(features, "CONTEXT_FEATURES", (*features.CONTEXT_FEATURES, "author_group_share"))
    result = static.run_static_check()
    assert [str(v) for v in result.violations] == [
        "model input training.ranking.features.CONTEXT_FEATURES: 'author_group_share' names the sensitive "
        "attribute 'group'"
    ]


def test_a_home_adds_its_attributes_and_training_set_columns(small_lake: FeedPaths) -> None:
    split = small_lake.data / "training" / "ranking" / "g1" / "test"
    split.mkdir(parents=True)
    pq.write_table(pa.table({"member_id": [1], "member_caste": ["x"]}), split / "part-00000.parquet")
    result = static.run_static_check(small_lake)
    assert "caste" in result.attributes  # from the home's audit_attributes, not the fixed list
    assert [(v.where, v.name, v.attribute) for v in result.violations] == [
        ("training set training/ranking/g1/test", "member_caste", "caste")
    ]
    assert any("no applied Feast registry" in n for n in result.notes)


@pytest.mark.parametrize(
    ("name", "attribute"),
    [
        ("group", "group"),
        ("author_group", "group"),
        ("memberGender", "gender"),
        ("member_age", "age"),
        ("AGE", "age"),
        ("sexual_orientation_code", "sexual_orientation"),
        ("engaged", None),  # the token "age" is not a substring match
        ("page_views", None),
        ("average_dwell", None),
        ("groupby_key", None),
        ("orientation", None),  # one token of a two-token attribute is not the attribute
        ("post_age_hours_log1p", None),  # reviewed exception: the post's age
        ("hist_age_s", None),
    ],
)
def test_name_matching(name: str, attribute: str | None) -> None:
    assert static.matched_attribute(name, static.FIXED_ATTRIBUTES) == attribute


def test_allowed_exceptions_are_really_in_use() -> None:
    """A stale exception would silently allow a future name: each must still name a real model input."""
    result_names = {n for p in static.model_input_places() for n in p.names}
    assert set(static.ALLOWED) <= result_names


def test_template_words_are_the_templates_own_text() -> None:
    from training.prompts import render

    words = static.template_words(render.template_for("v1"))
    assert {"member", "role", "industry", "skills", "view_percentile", "engaged"} <= set(words)
    assert not any(w.startswith(static.SENTINEL) for w in words)  # fabricated values removed
