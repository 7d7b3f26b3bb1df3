"""MIND (Microsoft News Dataset) → the canonical landing tables.

Input: a split folder holding ``behaviors.tsv`` and ``news.tsv`` (e.g. ``MINDsmall_train``), or a folder of
such split folders (train and dev are then merged: they share users and news). No header lines.
- behaviors.tsv: impression id, user id, time ("11/15/2019 8:55:22 AM", read as UTC), history (space-separated
  news ids, oldest first), impressions ("N1-1 N2-0": news id and click label).
- news.tsv: news id, category, subcategory, title, abstract, url, title entities, abstract entities.

Mapping (docs/data.md): news → posts (format "article", article_title = title, article_domain = the url's
host, text = abstract (or title) + #category #subcategory, created_at = the news' first appearance), one
pseudo-author member per category, users → members without profile text, one behaviors row = one session
(position = index in its list; the ``-0`` items are the hard negatives), history items → earlier engaged
impressions, one hour apart and ending one hour before the user's first logged impression.
Ids: member_id / post_id = the digits of "U123" / "N456"; event and session ids are ``mix64`` hashes.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines.ingest import Problem, RawDataError
from pipelines.loaders.common import (
    US_PER_DAY,
    fail,
    hashtag,
    impressions_table,
    mix64,
    positions_in_session,
    pseudo_author_id,
    pseudo_authors,
    ts_array,
)
from pipelines.schemas import RAW_FOLLOWS, RAW_MEMBERS, RAW_POSTS, RAW_PROFILE_UPDATES

BEHAVIOR_COLUMNS = ["impression_id", "user", "time", "history", "impressions"]
NEWS_COLUMNS = [
    "news",
    "category",
    "subcategory",
    "title",
    "abstract",
    "url",
    "title_entities",
    "abstract_entities",
]
TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"
HISTORY_STEP_US = 3_600_000_000  # one hour between history items (MIND gives them no time)
CATEGORY_KIND = "mind-category"
_ID = re.compile(r"^[UN](\d+)$")


def split_folders(path: Path) -> list[Path]:
    """``path`` itself when it is a split folder, else its sub-folders that are."""
    path = Path(path)
    if (path / "behaviors.tsv").exists():
        return [path]
    splits = sorted(p for p in path.iterdir() if (p / "behaviors.tsv").exists()) if path.is_dir() else []
    if not splits:
        raise fail(path, "no MIND split found (a folder with behaviors.tsv and news.tsv)")
    return splits


def _read_tsv(file: Path, names: list[str]) -> pd.DataFrame:
    if not file.exists():
        raise fail(file, "file is missing")
    try:
        frame = pd.read_csv(
            file, sep="\t", header=None, names=names, dtype=str, quoting=csv.QUOTE_NONE, keep_default_na=False
        )
    except pd.errors.ParserError as exc:
        raise fail(file, f"cannot parse: {exc}") from exc
    frame["line"] = np.arange(1, len(frame) + 1)
    return frame


def _ids(values: pd.Series, lines: pd.Series, file: Path, field: str) -> np.ndarray:
    """ "U123" / "N456" → 123 / 456; anything else raises naming the file, line and field."""
    digits = values.str.extract(_ID, expand=False)
    bad = np.flatnonzero(digits.isna().to_numpy())
    if len(bad):
        problems = [
            Problem(
                file.name,
                None,
                field,
                f"line {lines.iat[i]}: id {values.iat[i]!r} is not U<digits> or N<digits>",
            )
            for i in bad[:5]
        ]
        raise RawDataError(file, problems)
    return digits.to_numpy(dtype=np.int64)


def _times(frame: pd.DataFrame, file: Path) -> np.ndarray:
    parsed = pd.to_datetime(frame["time"], format=TIME_FORMAT, errors="coerce", utc=True)
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        i = bad[0]
        raise fail(
            file,
            f"line {frame['line'].iat[i]}: time {frame['time'].iat[i]!r} does not match "
            "'11/15/2019 8:55:22 AM'",
            "time",
        )
    return parsed.dt.tz_localize(None).to_numpy().astype("datetime64[us]").astype(np.int64)


def _impressions(behaviors: pd.DataFrame, file: Path) -> pd.DataFrame:
    """One row per listed news item: user, ts, session, position, news, click."""
    items = behaviors.assign(item=behaviors["impressions"].str.split(" ")).explode("item", ignore_index=True)
    items = items[items["item"].fillna("") != ""]
    parts = items["item"].str.rsplit("-", n=1, expand=True).reindex(columns=[0, 1])
    bad = np.flatnonzero(~parts[1].isin(["0", "1"]).to_numpy())
    if len(bad):
        i = bad[0]
        raise fail(
            file,
            f"line {items['line'].iat[i]}: impression item {items['item'].iat[i]!r} has no -0/-1 click "
            "label (unlabelled test splits cannot be loaded)",
            "impressions",
        )
    return pd.DataFrame(
        {
            "user": items["user_id"].to_numpy(),
            "ts": items["ts"].to_numpy(),
            "session": items["session"].to_numpy(),
            "news": _ids(parts[0], items["line"], file, "impressions"),
            "click": parts[1].to_numpy(dtype=np.int8),
        }
    )


def _history(behaviors: pd.DataFrame, file: Path) -> pd.DataFrame:
    """Each user's history (from their earliest behaviors row) as clicks before their first impression."""
    first = behaviors.sort_values(["user_id", "ts"], kind="stable").drop_duplicates("user_id")
    items = first.assign(news_str=first["history"].str.split(" ")).explode("news_str", ignore_index=True)
    items = items[items["news_str"].fillna("") != ""]
    idx = items.groupby("user_id").cumcount().to_numpy()
    n = items.groupby("user_id")["news_str"].transform("size").to_numpy()
    frame = pd.DataFrame(
        {
            "user": items["user_id"].to_numpy(),
            "ts": items["ts"].to_numpy() - (n - idx) * HISTORY_STEP_US,
            "news": _ids(items["news_str"], items["line"], file, "history"),
        }
    )
    return frame.drop_duplicates(["user", "news"], keep="first")


def _read_split(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    file = folder / "behaviors.tsv"
    behaviors = _read_tsv(file, BEHAVIOR_COLUMNS)
    behaviors["user_id"] = _ids(behaviors["user"], behaviors["line"], file, "user")
    behaviors["ts"] = _times(behaviors, file)
    behaviors["session"] = mix64("mind/session", behaviors["user_id"].to_numpy(), behaviors["ts"].to_numpy())
    news = _read_tsv(folder / "news.tsv", NEWS_COLUMNS)
    news["post_id"] = _ids(news["news"], news["line"], folder / "news.tsv", "news_id")
    return _impressions(behaviors, file), _history(behaviors, file), news


def _posts(news: pd.DataFrame, first_seen: pd.Series, t0_us: int) -> pa.Table:
    n = len(news)
    body = news["abstract"].where(news["abstract"] != "", news["title"])
    tags = "#" + news["category"].map(hashtag) + " #" + news["subcategory"].map(hashtag)
    domain = [urlparse(u).netloc or None for u in news["url"]]
    created = first_seen.reindex(news["post_id"]).fillna(t0_us).to_numpy(dtype=np.int64)
    return pa.table(
        {
            "post_id": pa.array(news["post_id"].to_numpy(), type=pa.int64()),
            "author_id": pa.array(
                [pseudo_author_id(CATEGORY_KIND, c) for c in news["category"]], type=pa.int64()
            ),
            "format": ["article"] * n,
            "text": (body + " " + tags).tolist(),
            "article_title": news["title"].tolist(),
            "article_domain": pa.array(domain, type=pa.string()),
            "created_at": ts_array(created),
        },
        schema=RAW_POSTS,
    )


def _members(events: pd.DataFrame, categories: list[str], t0_us: int) -> pa.Table:
    first = events.groupby("user")["ts"].min()
    n = len(first)
    users = pa.table(
        {
            "member_id": pa.array(first.index.to_numpy(), type=pa.int64()),
            **{f.name: pa.nulls(n, f.type) for f in RAW_MEMBERS if f.name not in ("member_id", "created_at")},
            "created_at": ts_array(first.to_numpy()),
        },
        schema=RAW_MEMBERS,
    )
    desks = pseudo_authors(
        CATEGORY_KIND,
        categories,
        t0_us,
        headline="{name} news desk",
        role="News editor",
        industry="Newspaper Publishing",
    )
    return pa.concat_tables([users, desks])


def _events_table(shown: pd.DataFrame, history: pd.DataFrame) -> pa.Table:
    shown = shown.assign(position=shown.groupby("session").cumcount())
    hist_session = mix64(
        "mind/history-session", history["user"].to_numpy(), history["ts"].to_numpy() // US_PER_DAY
    )
    history = history.assign(session=hist_session, click=np.int8(1)).sort_values(
        ["session", "ts"], kind="stable"
    )
    history = history.assign(position=positions_in_session(history["session"].to_numpy()))
    shown_ids = mix64(
        "mind/event", shown["user"].to_numpy(), shown["ts"].to_numpy(), shown["position"].to_numpy()
    )
    hist_ids = mix64("mind/history-event", history["user"].to_numpy(), history["news"].to_numpy())
    events = pd.concat([shown.assign(event=shown_ids), history.assign(event=hist_ids)], ignore_index=True)
    events = events.sort_values(["user", "ts", "position"], kind="stable")
    return impressions_table(
        events["event"].to_numpy(),
        events["user"].to_numpy(),
        events["news"].to_numpy(),
        events["ts"].to_numpy(),
        events["session"].to_numpy(),
        events["position"].to_numpy(),
        {"click": events["click"].to_numpy()},
    )


def read_mind(path: Path) -> dict[str, pa.Table]:
    """The landing tables of the MIND split(s) under ``path``."""
    splits = [_read_split(folder) for folder in split_folders(path)]
    shown = pd.concat([s[0] for s in splits], ignore_index=True).drop_duplicates(["session", "news"])
    history = pd.concat([s[1] for s in splits], ignore_index=True)
    history = history.sort_values("ts", kind="stable").drop_duplicates(["user", "news"], keep="first")
    news = pd.concat([s[2] for s in splits], ignore_index=True).drop_duplicates("post_id", keep="first")
    events = pd.concat([shown[["user", "news", "ts"]], history[["user", "news", "ts"]]], ignore_index=True)
    t0_us = int(events["ts"].min()) if len(events) else 0
    categories = sorted(news["category"].unique())
    return {
        "raw_members": _members(events, categories, t0_us),
        "raw_posts": _posts(news, events.groupby("news")["ts"].min(), t0_us),
        "raw_follows": RAW_FOLLOWS.empty_table(),  # MIND has no social graph
        "raw_impressions": _events_table(shown, history),
        "raw_profile_updates": RAW_PROFILE_UPDATES.empty_table(),
    }


def load_mind(path: Path, out: Path) -> dict[str, int]:
    """Read MIND from ``path`` and write the landing folder ``out``; returns rows per table."""
    from pipelines.ingest import write_landing

    return write_landing(out, read_mind(path))
