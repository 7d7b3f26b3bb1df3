"""MovieLens and MIND loaders on tiny files written here in each real format; every loaded set must pass
ingest's validation (the loaders' output is held to the same contract as the generator's)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from feed.config import FeedPaths
from pipelines import delta_io
from pipelines.ingest import RawDataError, ingest
from pipelines.loaders.common import PSEUDO_AUTHOR_BASE, mix64, pseudo_author_id
from pipelines.loaders.mind import load_mind, read_mind
from pipelines.loaders.movielens import GENRE_KIND, load_movielens, read_movielens

NOW = datetime(2026, 11, 1, tzinfo=UTC)
T = 978300760  # 2001-01-01 in seconds, as in ML-1M


def _write(path: Path, text: str, encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))


@pytest.fixture
def ml1m(tmp_path: Path) -> Path:
    d = tmp_path / "ml-1m"
    _write(d / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117\n")
    _write(
        d / "movies.dat",
        "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Café au lait (1993)::Comedy\n"
        "3::Heat (1995)::Action|Crime|Thriller\n4::Unrated (1990)::Drama\n",
        encoding="latin-1",
    )
    _write(
        d / "ratings.dat",
        f"1::1::5::{T}\n1::2::3::{T + 60}\n1::3::1::{T + 86400}\n2::3::4::{T + 10}\n3::1::2::{T + 5}\n",
    )
    return d


def _impressions(tables: dict[str, pa.Table]) -> pd.DataFrame:
    return tables["raw_impressions"].to_pandas().sort_values(["member_id", "event_timestamp", "post_id"])


def test_movielens_1m_dat(ml1m: Path, feed_paths: FeedPaths) -> None:
    tables = read_movielens(ml1m)
    posts = tables["raw_posts"].to_pandas().set_index("post_id")
    assert posts.loc[1, "text"] == "Toy Story (1995) #animation #childrens #comedy"
    assert posts.loc[2, "text"].startswith("Café au lait")  # Latin-1 decoded
    assert (posts["format"] == "video").all()
    assert posts.loc[1, "author_id"] == pseudo_author_id(GENRE_KIND, "Animation")
    assert posts.loc[1, "created_at"] == pd.Timestamp(T, unit="s", tz="UTC")  # first rating of the movie
    members = tables["raw_members"].to_pandas().set_index("member_id")
    assert members.loc[1, "current_role"] == "K-12 Student"  # occupation code 10
    assert members.loc[2, "industry"] is None  # self-employed: no industry mapping
    assert members.index[members.index >= PSEUDO_AUTHOR_BASE].size == 7  # one per genre
    imp = _impressions(tables)
    liked = imp.set_index(["member_id", "post_id"])
    assert liked.loc[(1, 1), ["click", "long_dwell", "like", "skip"]].tolist() == [1, 1, 1, 0]  # 5 stars
    assert liked.loc[(1, 2), ["click", "long_dwell", "like", "skip"]].tolist() == [1, 0, 0, 0]  # 3 stars
    assert liked.loc[(1, 3), ["click", "long_dwell", "like", "skip"]].tolist() == [0, 0, 0, 1]  # 1 star
    user1 = imp[imp["member_id"] == 1]
    assert user1["session_id"].nunique() == 2  # two UTC days
    assert user1["position"].tolist() == [0, 1, 0]
    audit = tables["audit_attributes"].to_pandas()
    assert set(audit["attribute"]) == {"gender", "age"}
    assert not {"gender", "age", "zip"} & set(tables["raw_members"].column_names)
    result = ingest(feed_paths, _landing(ml1m, feed_paths), now=NOW)
    assert result.rows["raw_impressions"] == 5


def _landing(src: Path, paths: FeedPaths) -> Path:
    out = paths.landing / src.name
    load_movielens(src, out)
    return out


def test_movielens_is_deterministic_and_reload_is_refused(ml1m: Path, feed_paths: FeedPaths) -> None:
    first = read_movielens(ml1m)
    assert read_movielens(ml1m)["raw_impressions"].equals(first["raw_impressions"])
    ingest(feed_paths, _landing(ml1m, feed_paths), now=NOW)
    with pytest.raises(RawDataError, match="already in the lake"):
        ingest(feed_paths, _landing(ml1m, feed_paths), now=NOW)


def test_movielens_10m_without_users(tmp_path: Path, feed_paths: FeedPaths) -> None:
    d = tmp_path / "ml-10M100K"
    _write(d / "movies.dat", "5::Sabrina (1995)::Comedy|Romance\n6::Nixon (1995)::(no genres listed)\n")
    _write(d / "ratings.dat", f"7::5::4.5::{T}\n7::6::2.5::{T + 1}\n8::5::3.5::{T + 2}\n")
    tables = read_movielens(d)
    members = tables["raw_members"].to_pandas()
    assert {7, 8} <= set(members["member_id"])
    assert members.loc[members["member_id"] == 7, "headline"].isna().all()
    assert tables["audit_attributes"].num_rows == 0
    assert tables["raw_posts"].to_pandas().set_index("post_id").loc[6, "text"] == "Nixon (1995) #unknown"
    imp = _impressions(tables).set_index(["member_id", "post_id"])
    assert imp.loc[(7, 6), "skip"] == 1  # 2.5 stars
    assert imp.loc[(8, 5), ["click", "like"]].tolist() == [1, 0]  # 3.5 stars
    ingest(feed_paths, _landing(d, feed_paths), now=NOW)


def test_movielens_20m_csv(tmp_path: Path, feed_paths: FeedPaths) -> None:
    d = tmp_path / "ml-20m"
    _write(
        d / "movies.csv", 'movieId,title,genres\n1,"American President, The (1995)",Comedy|Drama|Romance\n'
    )
    _write(d / "ratings.csv", f"userId,movieId,rating,timestamp\n1,1,4.0,{T}\n2,1,1.0,{T + 1}\n")
    tables = read_movielens(d)
    assert tables["raw_posts"].column("text").to_pylist() == [
        "American President, The (1995) #comedy #drama #romance"
    ]
    ingest(feed_paths, _landing(d, feed_paths), now=NOW)
    assert delta_io.read(feed_paths.table("raw_impressions")).num_rows == 2


def test_movielens_recbole_atomic(tmp_path: Path, feed_paths: FeedPaths) -> None:
    d = tmp_path / "ml-100k"
    _write(
        d / "ml-100k.inter",
        f"user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t2\t5\t{T}\n2\t2\t3\t{T + 7}\n",
    )
    _write(
        d / "ml-100k.item",
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "2\tGoldenEye\t1995\tAction Adventure Thriller\n",
    )
    _write(
        d / "ml-100k.user",
        "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
        "1\t24\tM\ttechnician\t85711\n2\t53\tF\tother\t94043\n",
    )
    tables = read_movielens(d)
    assert tables["raw_posts"].column("text").to_pylist() == ["GoldenEye (1995) #action #adventure #thriller"]
    members = tables["raw_members"].to_pandas().set_index("member_id")
    assert members.loc[1, "headline"] == "Technician · film enthusiast"
    assert members.loc[1, "industry"] == "Engineering Services"
    audit = tables["audit_attributes"].to_pandas()
    assert audit.loc[(audit["member_id"] == 2) & (audit["attribute"] == "age"), "value"].item() == "53"
    ingest(feed_paths, _landing(d, feed_paths), now=NOW)


def test_movielens_bad_rating_names_file_line_field(ml1m: Path) -> None:
    _write(ml1m / "ratings.dat", f"1::1::5::{T}\n1::2::five::{T}\n")
    with pytest.raises(RawDataError, match=r"ratings\.dat field 'rating': line 2: 'five' is not a number"):
        read_movielens(ml1m)
    _write(ml1m / "ratings.dat", f"1::1::5::{T}\n1::2\n")
    with pytest.raises(RawDataError, match=r"ratings\.dat field 'ts': line 2: expected 4 fields"):
        read_movielens(ml1m)


def test_movielens_missing_folder_or_files(tmp_path: Path) -> None:
    with pytest.raises(RawDataError, match="no MovieLens files found"):
        read_movielens(tmp_path)
    _write(tmp_path / "ratings.dat", f"1::1::5::{T}\n")
    with pytest.raises(RawDataError, match=r"movies\.dat: file is missing"):
        read_movielens(tmp_path)


# --- MIND --------------------------------------------------------------------------------------------------

NEWS = (
    "N1\tsports\tfootball_nfl\tTitle one\tAbstract one\thttps://assets.msn.com/labs/mind/AA1.html\t[]\t[]\n"
    "N2\tnews\tnewsus\tTitle two\t\thttps://assets.msn.com/labs/mind/AA2.html\t[]\t[]\n"
    "N3\tsports\tgolf\tTitle three\tAbs 3\thttps://www.msn.com/x\t[]\t[]\n"
    "N4\tfinance\tmarkets\tTitle four\tAbs 4\thttps://www.msn.com/y\t[]\t[]\n"
)


@pytest.fixture
def mind(tmp_path: Path) -> Path:
    d = tmp_path / "MINDsmall"
    _write(
        d / "train" / "behaviors.tsv",
        "1\tU10\t11/15/2019 8:55:22 AM\tN1 N2\tN3-1 N4-0\n"
        "2\tU11\t11/15/2019 9:01:00 PM\t\tN3-0 N4-1\n3\tU10\t11/16/2019 10:00:00 AM\tN1 N2\tN4-1 N3-0\n",
    )
    _write(d / "train" / "news.tsv", NEWS)
    _write(d / "dev" / "behaviors.tsv", "1\tU12\t11/17/2019 7:00:00 AM\tN3\tN1-0 N2-1\n")
    _write(d / "dev" / "news.tsv", NEWS.splitlines(keepends=True)[0] + NEWS.splitlines(keepends=True)[2])
    return d


def test_mind_two_splits(mind: Path, feed_paths: FeedPaths) -> None:
    tables = read_mind(mind)
    posts = tables["raw_posts"].to_pandas().set_index("post_id")
    assert len(posts) == 4  # the dev split repeats N1 and N3
    assert posts.loc[1, "text"] == "Abstract one #sports #football_nfl"
    assert posts.loc[2, "text"] == "Title two #news #newsus"  # no abstract: the title
    assert posts.loc[1, "article_domain"] == "assets.msn.com"
    assert posts.loc[1, "article_title"] == "Title one"
    assert (posts["format"] == "article").all()
    assert posts.loc[3, "author_id"] == posts.loc[1, "author_id"]  # one pseudo-author per category
    imp = tables["raw_impressions"].to_pandas()
    first = imp[
        imp["session_id"]
        == mix64("mind/session", 10, pd.Timestamp("2019-11-15 08:55:22", tz="UTC").value // 1000)[0]
    ]
    assert first[["post_id", "position", "click"]].values.tolist() == [[3, 0, 1], [4, 1, 0]]
    history = imp[
        (imp["member_id"] == 10) & (imp["event_timestamp"] < pd.Timestamp("2019-11-15 08:55:22", tz="UTC"))
    ]
    assert history.sort_values("event_timestamp")["post_id"].tolist() == [1, 2]  # oldest first, all clicks
    assert history["click"].eq(1).all()
    assert history["event_timestamp"].max() == pd.Timestamp("2019-11-15 07:55:22", tz="UTC")
    assert imp["event_id"].is_unique
    load_mind(mind, feed_paths.landing / "mind")
    result = ingest(feed_paths, feed_paths.landing / "mind", now=NOW)
    assert result.rows["raw_impressions"] == len(imp)


def test_mind_bad_input(tmp_path: Path) -> None:
    d = tmp_path / "split"
    _write(d / "news.tsv", NEWS)
    _write(d / "behaviors.tsv", "1\tU10\t2019-11-15 08:55\t\tN3-1\n")
    with pytest.raises(RawDataError, match=r"behaviors\.tsv field 'time': line 1: time '2019-11-15 08:55'"):
        read_mind(d)
    _write(
        d / "behaviors.tsv", "1\tU10\t11/15/2019 8:55:22 AM\t\tN3-1\n2\tuser11\t11/15/2019 8:55:22 AM\t\tN3\n"
    )
    with pytest.raises(RawDataError, match=r"field 'user': line 2: id 'user11' is not U<digits>"):
        read_mind(d)
    _write(d / "behaviors.tsv", "1\tU10\t11/15/2019 8:55:22 AM\t\tN3-1 N4\n")
    with pytest.raises(RawDataError, match=r"line 1: impression item 'N4' has no -0/-1 click label"):
        read_mind(d)
    with pytest.raises(RawDataError, match="no MIND split found"):
        read_mind(tmp_path / "nowhere")
