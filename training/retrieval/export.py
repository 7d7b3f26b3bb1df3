"""Embedding export for a trained model version: Feast features as of a time → prompts → vectors → Delta.

``feed embed posts|members`` call :func:`export_posts` / :func:`export_members`. They fill the Delta tables
``post_embeddings`` / ``member_embeddings`` (through :mod:`training.retrieval.embed`, which replaces exactly
the version's rows) that the Milvus index build and the Feast push sources read.

What gets embedded, as of ``at`` (default: the latest feature snapshot, the newest ``post_engagement`` row):

* posts: every post live at ``at`` (created in the ``live_days`` before it — the percentile cohort and the
  retrieval candidate set), with retrieval_post_v1 and the author's member_profile as of ``at`` (Feast
  point-in-time joins, the same lookups the training set makes);
* members: every member with a member_profile row at or before ``at``: the profile and the engaged history
  (member_history, newest last) as of ``at``, each history item rendered with its post's features as of
  ``at``.

Prompts are rendered exactly as the model was trained: budgets = the encoder's token limits (so the prompt
library's whole-item truncation is the only one a member prompt sees), and the count style / prompt version
from the version's ``config.json`` when recorded there (else percentile tokens, v1).

Every row that cannot be embedded is skipped and counted by reason (``ExportResult.skipped``); a request that
cannot be served at all (no promoted model, unknown version, no feature tables, nothing live at ``at``) is an
:class:`ExportError` naming what is missing, raised before anything is written.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from training.retrieval.embed import EmbedKind, EmbedResult, check_model_version, embed_members, embed_posts
from training.retrieval.model import CONFIG_FILE, EncoderConfig
from training.versions import CURRENT_FILE

if TYPE_CHECKING:
    import pandas as pd

    from feed.config import FeedPaths
    from training.prompts import PostFeatures, PromptConfig
    from training.retrieval.model import DualEncoder

log = logging.getLogger(__name__)

RETRIEVAL_DIR = "retrieval"  # artifacts/retrieval/<version>/ (DESIGN.md "Models")
# Prompt settings a version may record in its config.json under "prompt" and that export must honour. The
# token budgets are NOT taken from there: they always follow the encoder's limits (RunPlan's rule).
RECORDED_PROMPT_FIELDS: tuple[str, ...] = ("version", "counts", "history_max_items", "text_max_chars")

# Skip reasons (counted in ExportResult.skipped).
POST_WITHOUT_FEATURES = "post_without_features"  # no post_content row as of `at` (no text and no format)
EMPTY_PROFILE = "empty_profile_no_history"  # nothing at all to describe the member with
HISTORY_UNKNOWN_POST = "history_item_unknown_post"  # not in post_content, or created after `at`
HISTORY_WITHOUT_FEATURES = "history_item_without_features"


class ExportError(ValueError):
    """The export cannot run as asked; the message names the missing folder, table or time."""


@dataclass(frozen=True)
class ExportConfig:
    """One export run. ``version`` None = the promoted one (``artifacts/retrieval/CURRENT``); ``at`` None =
    the latest snapshot."""

    version: str | None = None
    at: dt.datetime | None = None
    batch_size: int = 64  # texts per forward pass
    live_days: int = 28  # DESIGN.md: a post is live (a candidate, in the percentile cohort) for 28 days
    feast_variant: str = "local"
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = CUDA when present
    progress: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ExportError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.live_days < 1:
            raise ExportError(f"live_days must be >= 1, got {self.live_days}")
        if self.at is not None and self.at.tzinfo is None:
            raise ExportError(f"at={self.at.isoformat()} needs a time zone (UTC)")


@dataclass(frozen=True)
class ExportResult:
    """What one export wrote, and what it skipped and why."""

    kind: EmbedKind
    model_version: str
    at: dt.datetime
    rows: int
    dim: int
    table: Path
    delta_version: int
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # features, render, embed, total

    @property
    def rows_per_second(self) -> float:
        """Rows per second of the whole export (features + prompts + inference + write)."""
        total = self.seconds.get("total", 0.0)
        return self.rows / total if total > 0 else float("nan")


# --- resolving the request


def model_dir(paths: FeedPaths, version: str | None) -> Path:
    """``artifacts/retrieval/<version>``; ``version`` None reads the promoted one from ``CURRENT``."""
    root = paths.artifacts / RETRIEVAL_DIR
    if version is None:
        current = root / CURRENT_FILE
        version = current.read_text().strip() if current.is_file() else ""
        if not version:
            raise ExportError(
                f"no promoted retrieval model: {current} is missing or empty; pass --version "
                f"(one of {known_versions(paths)}) or promote a version after its quality gate"
            )
    try:
        check_model_version(version)
    except ValueError as exc:
        raise ExportError(str(exc)) from exc
    folder = root / version
    if not (folder / CONFIG_FILE).is_file():
        raise ExportError(
            f"retrieval model version {version!r} not found: {folder / CONFIG_FILE} does not exist "
            f"(saved versions: {known_versions(paths)})"
        )
    return folder


def known_versions(paths: FeedPaths) -> list[str]:
    """Saved (complete) model versions under artifacts/retrieval/."""
    root = paths.artifacts / RETRIEVAL_DIR
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / CONFIG_FILE).is_file())


def prompt_config(folder: Path, encoder: EncoderConfig) -> PromptConfig:
    """The prompts the version was trained on: token budgets = the encoder's limits; count style, prompt
    version, history items and text clip from ``config.json["prompt"]`` when recorded (else defaults)."""
    from training.prompts import PromptConfig

    saved = json.loads((folder / CONFIG_FILE).read_text())
    recorded = saved.get("prompt") or {}
    if not isinstance(recorded, Mapping):
        raise ExportError(
            f"{folder / CONFIG_FILE}: 'prompt' must be an object, got {type(recorded).__name__}"
        )
    kept = {k: recorded[k] for k in RECORDED_PROMPT_FIELDS if k in recorded}
    try:
        return PromptConfig(
            member_max_tokens=encoder.max_len_member, post_max_tokens=encoder.max_len_post, **kept
        )
    except (TypeError, ValueError) as exc:
        raise ExportError(f"{folder / CONFIG_FILE}: recorded prompt settings {kept}: {exc}") from exc


def parse_at(text: str) -> dt.datetime:
    """An ISO date or time (``2026-03-01``, ``2026-03-01T06:00:00Z``); a time without zone is UTC."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ExportError(f"--at {text!r} is not an ISO date/time such as 2026-03-01T00:00:00Z") from exc
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def check_feature_tables(paths: FeedPaths) -> None:
    """Every feature table must exist (the embedding tables are created on demand)."""
    from pipelines.feature_store import missing_tables

    missing = missing_tables(paths)
    if missing:
        raise ExportError(
            f"feature tables missing under {paths.lake}: {missing}; run `feed features build` first"
        )


def latest_snapshot(paths: FeedPaths) -> dt.datetime:
    """The newest post_engagement snapshot time: the default ``at``."""
    import pyarrow.compute as pc

    from pipelines import delta_io

    table = paths.table("post_engagement")
    latest = pc.max(delta_io.read(table, columns=["event_timestamp"]).column("event_timestamp")).as_py()
    if latest is None:
        raise ExportError(f"{table} has no rows; run `feed features build` first")
    return latest.astimezone(dt.UTC)


def load_model(folder: Path, device: str) -> DualEncoder:
    """The saved encoder, in eval mode, on ``device`` (auto = CUDA when present)."""
    import torch

    from training.retrieval.model import DualEncoder

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = DualEncoder.load(folder).to(device)
    return model.eval()


# --- features and prompts


def _post_catalog(paths: FeedPaths) -> pd.DataFrame:
    from pipelines import delta_io
    from training.data.retrieval_set import post_catalog

    columns = ["post_id", "author_id", "created_at"]
    return post_catalog(delta_io.read(paths.table("post_content"), columns=columns).to_pandas())


def live_post_ids(catalog: pd.DataFrame, at: dt.datetime, live_days: int) -> list[int]:
    """Posts created in [at - live_days, at): live at ``at`` (same window as RetrievalSet.live_posts)."""
    created = catalog["created_at"]
    live = (created < at) & (created >= at - dt.timedelta(days=live_days))
    return sorted(int(p) for p in catalog.loc[live, "post_id"])


def posts_as_of(
    paths: FeedPaths,
    post_ids: Iterable[int],
    at: dt.datetime,
    catalog: pd.DataFrame,
    variant: str,
    skipped: Counter[str],
    *,
    skip_reason: str,
) -> dict[int, PostFeatures]:
    """PostFeatures of ``post_ids`` as of ``at`` (retrieval_post_v1 + the author's profile, Feast PIT), by the
    training set's own lookup. Posts without content rows are left out, counted under ``skip_reason``."""
    import pandas as pd

    from training.data.retrieval_set import (
        POST_SCHEMA,
        BuildState,
        RetrievalSetConfig,
        post_features,
        to_arrow,
    )
    from training.prompts import PostFeatures

    ids = sorted(set(post_ids))
    if not ids:
        return {}
    needed = pd.DataFrame({"post_id": ids, "as_of": pd.Timestamp(at)})
    state = BuildState(RetrievalSetConfig(name="export", live_days=1, feast_variant=variant))
    frame = post_features(paths, needed, catalog, state)
    skipped[skip_reason] += state.skipped["post_without_content"]
    # Through Arrow with the set's schema: plain ints/None instead of pandas' float NaN and pd.NA.
    rows = to_arrow(frame, POST_SCHEMA).to_pylist()
    return {int(row["post_id"]): PostFeatures.from_feast_row(row) for row in rows}


def post_prompts(
    paths: FeedPaths,
    at: dt.datetime,
    tokenizer: Any,
    prompt: PromptConfig,
    cfg: ExportConfig,
    skipped: Counter[str],
) -> list[tuple[int, str]]:
    """(post_id, prompt) for every post live at ``at``, as of ``at``."""
    from tqdm.auto import tqdm

    from training.prompts import render_post

    catalog = _post_catalog(paths)
    live = live_post_ids(catalog, at, cfg.live_days)
    if not live:
        raise ExportError(
            f"no post is live at {at.isoformat()} (created in the {cfg.live_days} days before) "
            f"in {paths.table('post_content')}; nothing written"
        )
    posts = posts_as_of(
        paths, live, at, catalog, cfg.feast_variant, skipped, skip_reason=POST_WITHOUT_FEATURES
    )
    return [
        (post_id, render_post(post, prompt, tokenizer=tokenizer))
        for post_id, post in tqdm(posts.items(), desc="post prompts", unit="post", disable=not cfg.progress)
    ]


def members_as_of(paths: FeedPaths, at: dt.datetime, variant: str) -> pd.DataFrame:
    """member_id, member_profile__* and member_history__engaged_post_ids as of ``at`` for every member with
    a member_profile row at or before ``at``."""
    import pandas as pd
    import pyarrow.compute as pc

    from pipelines import delta_io
    from pipelines.feature_store import historical_features
    from training.data.retrieval_set import MEMBER_PROFILE_FEATURES

    table = paths.table("member_profile")
    known = delta_io.read(table, columns=["member_id"], filter=pc.field("event_timestamp") <= at)
    ids = sorted(set(known.column("member_id").to_pylist()))
    if not ids:
        raise ExportError(f"no member has a profile at {at.isoformat()} in {table}; nothing written")
    entity = pd.DataFrame({"member_id": ids, "event_timestamp": pd.Timestamp(at)})
    features = [f"member_profile:{f}" for f in MEMBER_PROFILE_FEATURES] + ["member_history:engaged_post_ids"]
    rows = historical_features(paths, entity, features, variant=variant)
    return rows.sort_values("member_id", kind="stable").reset_index(drop=True)


def member_prompts(
    paths: FeedPaths,
    at: dt.datetime,
    tokenizer: Any,
    prompt: PromptConfig,
    cfg: ExportConfig,
    skipped: Counter[str],
) -> list[tuple[int, str]]:
    """(member_id, prompt) for every member with a profile at ``at``: profile + engaged history as of ``at``.

    History items whose post is unknown (or created after ``at``) or has no features are dropped, counted;
    a member with neither profile fields nor history is skipped, counted (serving encodes such a member on
    the fly once a profile exists)."""
    from tqdm.auto import tqdm

    from training.data.retrieval_set import id_or_str_list
    from training.prompts import MemberFeatures, render_member

    rows = members_as_of(paths, at, cfg.feast_variant)
    histories = [id_or_str_list(ids) for ids in rows.pop("member_history__engaged_post_ids")]
    catalog = _post_catalog(paths)
    known = set(catalog.loc[catalog["created_at"] <= at, "post_id"].tolist())
    wanted = {p for ids in histories for p in ids}
    posts = posts_as_of(
        paths, wanted & known, at, catalog, cfg.feast_variant, Counter(), skip_reason=HISTORY_WITHOUT_FEATURES
    )
    out: list[tuple[int, str]] = []
    records = rows.to_dict("records")
    pairs = zip(records, histories, strict=True)
    for row, ids in tqdm(
        pairs, total=len(records), desc="member prompts", unit="member", disable=not cfg.progress
    ):
        skipped[HISTORY_UNKNOWN_POST] += sum(1 for p in ids if p not in known)
        skipped[HISTORY_WITHOUT_FEATURES] += sum(1 for p in ids if p in known and p not in posts)
        history = [posts[p] for p in ids if p in posts]  # still newest last
        member = MemberFeatures.from_feast_row(row)
        if member.is_empty and not history:
            skipped[EMPTY_PROFILE] += 1
            continue
        out.append((member.member_id, render_member(member, history, tokenizer, prompt)))
    return out


# --- the exports


def export_posts(paths: FeedPaths, cfg: ExportConfig = ExportConfig()) -> ExportResult:
    """Embed every post live at ``cfg.at`` with the model version ``cfg.version`` → ``post_embeddings``."""
    return _export("post", paths, cfg)


def export_members(paths: FeedPaths, cfg: ExportConfig = ExportConfig()) -> ExportResult:
    """Embed every member with a profile at ``cfg.at`` with ``cfg.version`` → ``member_embeddings``."""
    return _export("member", paths, cfg)


def _export(kind: EmbedKind, paths: FeedPaths, cfg: ExportConfig) -> ExportResult:
    from pipelines.feature_store import apply

    began = time.perf_counter()
    folder = model_dir(paths, cfg.version)  # cheap checks first: no model load, no Feast, for a bad request
    check_feature_tables(paths)
    at = cfg.at or latest_snapshot(paths)
    # Register the checked-out definitions (idempotent): an older registry could lack features read here.
    apply(paths, cfg.feast_variant)
    model = load_model(folder, cfg.device)
    prompt = prompt_config(folder, model.config)
    skipped: Counter[str] = Counter()
    seconds: dict[str, float] = {"load": time.perf_counter() - began}

    t0 = time.perf_counter()
    build = post_prompts if kind == "post" else member_prompts
    rows = build(paths, at, model.tokenizer, prompt, cfg, skipped)
    seconds["features_and_prompts"] = time.perf_counter() - t0
    if not rows:
        raise ExportError(
            f"no {kind} as of {at.isoformat()} could be embedded "
            f"(skipped: {_nonzero(skipped)}); nothing written"
        )
    # Longest prompts first: batches then pad to similar lengths (a padded token costs a full forward), and
    # the first batch shows the worst-case memory at once. Row order does not matter to the table.
    rows.sort(key=lambda r: (-len(r[1]), r[0]))

    t0 = time.perf_counter()
    side = "post" if kind == "post" else "member"
    write = embed_posts if kind == "post" else embed_members
    result: EmbedResult = write(
        lambda texts: model.embed(texts, side, batch_size=len(texts)),
        rows,
        folder.name,
        paths,
        batch_size=cfg.batch_size,
        event_timestamp=at,
        progress=cfg.progress,
    )
    seconds["embed_and_write"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - began
    skipped.update(result.skipped)
    log.info("%s embeddings of %s as of %s: %d rows", kind, folder.name, at.isoformat(), result.rows)
    return ExportResult(
        kind=kind,
        model_version=folder.name,
        at=at,
        rows=result.rows,
        dim=result.dim,
        table=result.table,
        delta_version=result.delta_version,
        skipped=_nonzero(skipped),
        seconds={k: round(v, 3) for k, v in seconds.items()},
    )


def _nonzero(counts: Mapping[str, int]) -> dict[str, int]:
    return {k: int(v) for k, v in sorted(counts.items()) if v}
