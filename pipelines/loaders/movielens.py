"""MovieLens → the canonical landing tables.

Formats (detected from the files in the folder):
- ``dat``: ML-1M (users.dat, movies.dat, ratings.dat) and ML-10M (no users.dat), ``::``-separated, no header;
- ``csv``: ML-20M/25M/latest (ratings.csv, movies.csv with headers; no user file);
- ``atomic``: RecBole's atomic files of ML-100K (``<name>.inter``, ``.item``, ``.user``; tab-separated with
  typed headers such as ``user_id:token``).

Mapping (docs/data.md): users → members (member_id = user id; headline/role from the occupation), movies →
posts (post_id = movie id, format "video", text = title + one hashtag per genre, the first genre being the
observable topic; created_at = the movie's first rating), one pseudo-author member per genre authors the
movies of its genre (the movie's first genre), ratings → impressions (session = the user's UTC day, label
mapping below), gender and age → audit_attributes only; zip codes are dropped.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines.loaders.common import (
    US_PER_DAY,
    US_PER_SECOND,
    fail,
    hashtag,
    impressions_table,
    mix64,
    numeric,
    positions_in_session,
    pseudo_author_id,
    pseudo_authors,
    ts_array,
)
from pipelines.schemas import AUDIT_ATTRIBUTES, RAW_FOLLOWS, RAW_MEMBERS, RAW_POSTS, RAW_PROFILE_UPDATES

# Ratings → labels: liked (≥ 4 stars) = click + long_dwell + like; lukewarm (3–3.5) = click only;
# disliked (< 3) = skip (shown, not engaged: the hard negatives).
LIKED_MIN = 4.0
WATCHED_MIN = 3.0
GENRE_KIND = "movielens-genre"
NO_GENRE = "Unknown"

# ML-1M stores occupations as codes (README of ml-1m); ML-100K spells them out.
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student", "customer service",
    "doctor/health care", "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer",
    "programmer", "retired", "sales/marketing", "scientist", "self-employed", "technician/engineer",
    "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip
OCCUPATION_INDUSTRY = {
    "academic/educator": "Higher Education", "educator": "Higher Education", "librarian": "Libraries",
    "artist": "Artists and Writers", "writer": "Artists and Writers",
    "entertainment": "Entertainment Providers",
    "clerical/admin": "Administrative Services", "administrator": "Administrative Services",
    "college/grad student": "Higher Education", "student": "Higher Education",
    "K-12 student": "Primary and Secondary Education", "customer service": "Customer Services",
    "doctor/health care": "Hospitals and Health Care", "doctor": "Hospitals and Health Care",
    "healthcare": "Hospitals and Health Care", "executive/managerial": "Business Consulting and Services",
    "executive": "Business Consulting and Services", "farmer": "Farming", "lawyer": "Law Practice",
    "programmer": "Software Development", "sales/marketing": "Advertising Services",
    "marketing": "Advertising Services", "salesman": "Retail", "scientist": "Research Services",
    "technician/engineer": "Engineering Services", "technician": "Engineering Services",
    "engineer": "Engineering Services", "tradesman/craftsman": "Construction",
}  # fmt: skip


@dataclass(frozen=True)
class MovieLensFiles:
    kind: str  # "dat", "csv" or "atomic"
    ratings: Path
    movies: Path
    users: Path | None  # ML-10M/20M have none


def detect(path: Path) -> MovieLensFiles:
    """Which MovieLens layout ``path`` holds; a clear error if none."""
    path = Path(path)
    if not path.is_dir():
        raise fail(path, "MovieLens folder does not exist")
    if (path / "ratings.dat").exists():
        users = path / "users.dat"
        return MovieLensFiles(
            "dat", path / "ratings.dat", path / "movies.dat", users if users.exists() else None
        )
    if (path / "ratings.csv").exists():
        return MovieLensFiles("csv", path / "ratings.csv", path / "movies.csv", None)
    inter = sorted(path.glob("*.inter"))
    if inter:
        stem = inter[0].with_suffix("")
        user = stem.with_suffix(".user")
        return MovieLensFiles("atomic", inter[0], stem.with_suffix(".item"), user if user.exists() else None)
    raise fail(path, "no MovieLens files found (ratings.dat, ratings.csv or <name>.inter)")


# --- readers: each returns plain frames (ratings: user, movie, rating, ts; movies: movie, title, genres;
# users: user, gender, age, occupation) ------------------------------------------------------------------


def _read_text(file: Path) -> str:
    if not file.exists():
        raise fail(file, "file is missing")
    data = file.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # ML-1M's movies.dat is Latin-1


def _read_dat(file: Path, names: list[str]) -> pd.DataFrame:
    """A ``::``-separated file: rewritten to tabs so pandas' C parser reads it (the python engine is slow)."""
    text = _read_text(file).replace("::", "\t")
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep="\t",
            header=None,
            names=names,
            dtype=str,
            quoting=csv.QUOTE_NONE,
            keep_default_na=False,
        )
    except pd.errors.ParserError as exc:
        raise fail(file, f"cannot parse: {exc}") from exc
    if frame[names[-1]].eq("").any():
        line = int(np.flatnonzero(frame[names[-1]].eq("").to_numpy())[0]) + 1
        raise fail(file, f"line {line}: expected {len(names)} fields separated by '::'", names[-1])
    return frame


def _read_atomic(file: Path) -> pd.DataFrame:
    """RecBole atomic file: tab-separated, header ``name:type`` per column."""
    if not file.exists():
        raise fail(file, "file is missing")
    try:
        frame = pd.read_csv(file, sep="\t", dtype=str, quoting=csv.QUOTE_NONE, keep_default_na=False)
    except pd.errors.ParserError as exc:
        raise fail(file, f"cannot parse: {exc}") from exc
    frame.columns = [c.split(":", 1)[0] for c in frame.columns]
    return frame


def _require(frame: pd.DataFrame, file: Path, columns: list[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise fail(file, f"missing column(s) {missing}; found {list(frame.columns)}", missing[0])


def _ratings(files: MovieLensFiles) -> pd.DataFrame:
    if files.kind == "dat":
        raw = _read_dat(files.ratings, ["user", "movie", "rating", "ts"])
        first = 1
    elif files.kind == "csv":
        raw = pd.read_csv(files.ratings, dtype=str, keep_default_na=False).rename(
            columns={"userId": "user", "movieId": "movie", "timestamp": "ts"}
        )
        first = 2
    else:
        raw = _read_atomic(files.ratings).rename(
            columns={"user_id": "user", "item_id": "movie", "timestamp": "ts"}
        )
        first = 2
    _require(raw, files.ratings, ["user", "movie", "rating", "ts"])
    out = pd.DataFrame(
        {c: numeric(raw, c, files.ratings, first_line=first) for c in ["user", "movie", "rating", "ts"]}
    )
    return out.astype({"user": np.int64, "movie": np.int64, "ts": np.int64})


def _movies(files: MovieLensFiles) -> pd.DataFrame:
    if files.kind == "dat":
        raw = _read_dat(files.movies, ["movie", "title", "genres"])
        genres = raw["genres"].str.split("|")
        first = 1
    elif files.kind == "csv":
        raw = pd.read_csv(files.movies, dtype=str, keep_default_na=False).rename(columns={"movieId": "movie"})
        _require(raw, files.movies, ["movie", "title", "genres"])
        genres = raw["genres"].str.split("|")
        first = 2
    else:
        raw = _read_atomic(files.movies).rename(columns={"item_id": "movie", "movie_title": "title"})
        _require(raw, files.movies, ["movie", "title", "class"])
        year = raw.get("release_year", "")
        raw["title"] = (raw["title"] + " (" + year + ")").str.replace(" ()", "", regex=False)
        genres = raw["class"].str.split(" ")
        first = 2
    movie = numeric(raw, "movie", files.movies, first_line=first).astype(np.int64)
    genres = genres.map(lambda gs: [g for g in gs if g and g != "(no genres listed)"] or [NO_GENRE])
    return pd.DataFrame({"movie": movie, "title": raw["title"].to_numpy(), "genres": genres.to_numpy()})


def _users(files: MovieLensFiles) -> pd.DataFrame | None:
    if files.users is None:
        return None
    if files.kind == "dat":
        raw = _read_dat(files.users, ["user", "gender", "age", "occupation", "zip"])
        codes = numeric(raw, "occupation", files.users, first_line=1).astype(int)
        occupation = [ML1M_OCCUPATIONS[c] if 0 <= c < len(ML1M_OCCUPATIONS) else "other" for c in codes]
        first = 1
    else:
        raw = _read_atomic(files.users).rename(columns={"user_id": "user"})
        _require(raw, files.users, ["user", "age", "gender", "occupation"])
        occupation = raw["occupation"].tolist()
        first = 2
    user = numeric(raw, "user", files.users, first_line=first).astype(np.int64)
    return pd.DataFrame({"user": user, "gender": raw["gender"], "age": raw["age"], "occupation": occupation})


# --- mapping -----------------------------------------------------------------------------------------------


def _members(ratings: pd.DataFrame, users: pd.DataFrame | None, genres: list[str], t0_us: int) -> pa.Table:
    first_seen = ratings.groupby("user")["ts"].min() * US_PER_SECOND
    ids = first_seen.index.to_numpy()
    if users is not None:
        ids = np.union1d(ids, users["user"].to_numpy())
    occupation = (
        users.set_index("user")["occupation"].reindex(ids).tolist()
        if users is not None
        else [None] * len(ids)
    )
    role = [o.title() if isinstance(o, str) and o not in ("none", "other") else None for o in occupation]
    people = pa.table(
        {
            "member_id": pa.array(ids, type=pa.int64()),
            "headline": [f"{r} · film enthusiast" if r else None for r in role],
            "current_role": role,
            "industry": [OCCUPATION_INDUSTRY.get(o) if isinstance(o, str) else None for o in occupation],
            "skills": pa.nulls(len(ids), RAW_MEMBERS.field("skills").type),
            "education": pa.nulls(len(ids), RAW_MEMBERS.field("education").type),
            "work_history": pa.nulls(len(ids), RAW_MEMBERS.field("work_history").type),
            "created_at": ts_array(first_seen.reindex(ids).fillna(t0_us).to_numpy(dtype=np.int64)),
        },
        schema=RAW_MEMBERS,
    )
    studios = pseudo_authors(
        GENRE_KIND,
        genres,
        t0_us,
        headline="{name} films",
        role="Film curator",
        industry="Entertainment Providers",
    )
    return pa.concat_tables([people, studios])


def _posts(movies: pd.DataFrame, ratings: pd.DataFrame, t0_us: int) -> pa.Table:
    first_rating = ratings.groupby("movie")["ts"].min() * US_PER_SECOND
    created = first_rating.reindex(movies["movie"]).fillna(t0_us).to_numpy(dtype=np.int64)
    text = [
        f"{t} " + " ".join(f"#{hashtag(g)}" for g in gs)
        for t, gs in zip(movies["title"], movies["genres"], strict=True)
    ]
    n = len(movies)
    return pa.table(
        {
            "post_id": pa.array(movies["movie"].to_numpy(), type=pa.int64()),
            "author_id": pa.array(
                [pseudo_author_id(GENRE_KIND, gs[0]) for gs in movies["genres"]], type=pa.int64()
            ),
            "format": ["video"] * n,
            "text": text,
            "article_title": pa.nulls(n, pa.string()),
            "article_domain": pa.nulls(n, pa.string()),
            "created_at": ts_array(created),
        },
        schema=RAW_POSTS,
    )


def _impressions(ratings: pd.DataFrame) -> pa.Table:
    r = ratings.sort_values(["user", "ts", "movie"], kind="stable")
    user, movie, ts = r["user"].to_numpy(), r["movie"].to_numpy(), r["ts"].to_numpy() * US_PER_SECOND
    session = mix64("movielens/session", user, ts // US_PER_DAY)
    rating = r["rating"].to_numpy()
    liked = rating >= LIKED_MIN
    labels = {
        "click": rating >= WATCHED_MIN,
        "long_dwell": liked,
        "like": liked,
        "skip": rating < WATCHED_MIN,
    }
    return impressions_table(
        mix64("movielens/event", user, movie), user, movie, ts, session, positions_in_session(session), labels
    )


def _audit(users: pd.DataFrame | None) -> pa.Table:
    if users is None:
        return AUDIT_ATTRIBUTES.empty_table()
    ids = users["user"].to_numpy()
    return pa.table(
        {
            "member_id": pa.array(np.concatenate([ids, ids]), type=pa.int64()),
            "attribute": ["gender"] * len(ids) + ["age"] * len(ids),
            "value": users["gender"].astype(str).tolist() + users["age"].astype(str).tolist(),
        },
        schema=AUDIT_ATTRIBUTES,
    )


def read_movielens(path: Path) -> dict[str, pa.Table]:
    """The landing tables of the MovieLens data set in ``path``."""
    files = detect(path)
    ratings = _ratings(files)
    movies = _movies(files)
    users = _users(files)
    t0_us = int(ratings["ts"].min()) * US_PER_SECOND if len(ratings) else 0
    genres = sorted({g for gs in movies["genres"] for g in gs})
    return {
        "raw_members": _members(ratings, users, genres, t0_us),
        "raw_posts": _posts(movies, ratings, t0_us),
        "raw_follows": RAW_FOLLOWS.empty_table(),  # MovieLens has no social graph
        "raw_impressions": _impressions(ratings),
        "raw_profile_updates": RAW_PROFILE_UPDATES.empty_table(),
        "audit_attributes": _audit(users),
    }


def load_movielens(path: Path, out: Path) -> dict[str, int]:
    """Read MovieLens from ``path`` and write the landing folder ``out``; returns rows per table."""
    from pipelines.ingest import write_landing

    return write_landing(out, read_movielens(path))
