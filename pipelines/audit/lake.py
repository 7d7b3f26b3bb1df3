"""What the audit reads from the lake: the sensitive attribute per member (``audit_attributes`` — read here
for the audit only), the posts and their authors, the posts the served index can return, and each author's
engagements. Plain pyarrow/pandas reads of the Delta tables (no Spark)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from training.ranking.features import ENGAGED_TASKS

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from feed.config import FeedPaths

UNKNOWN_GROUP = "unknown"  # a member (or author) without a value for the audited attribute


class AuditDataError(RuntimeError):
    """The lake lacks what the audit needs (no audit_attributes, no such attribute, no posts)."""


def _read(paths: FeedPaths, table: str, columns: list[str]) -> pd.DataFrame:
    from pipelines import delta_io

    path = paths.table(table)
    if not delta_io.exists(path):
        raise AuditDataError(f"{path} is not a Delta table: the audit needs {table} (build the lake first)")
    return delta_io.read(path, columns=columns).to_pandas()


def member_groups(paths: FeedPaths, attribute: str = "group") -> pd.Series:
    """member_id → value of ``attribute`` in audit_attributes (str). Raises :class:`AuditDataError` naming
    the attributes the table has when ``attribute`` is not one of them."""
    from feed.config import AUDIT_TABLE

    frame = _read(paths, AUDIT_TABLE, ["member_id", "attribute", "value"])
    have = sorted(frame["attribute"].dropna().unique())
    rows = frame[frame["attribute"] == attribute]
    if rows.empty:
        raise AuditDataError(f"audit_attributes has no attribute {attribute!r}; it has {have}")
    rows = rows.drop_duplicates("member_id", keep="last")
    values = rows["value"].fillna(UNKNOWN_GROUP).astype(str)
    return values.set_axis(rows["member_id"].astype("int64").to_numpy()).rename(attribute)


def posts(paths: FeedPaths) -> pd.DataFrame:
    """Every post with its author (raw_posts: post_id, author_id, created_at)."""
    frame = _read(paths, "raw_posts", ["post_id", "author_id", "created_at"])
    if frame.empty:
        raise AuditDataError(f"{paths.table('raw_posts')} has no posts")
    return frame


def member_ids(paths: FeedPaths) -> np.ndarray:
    """Every member id (raw_members), sorted."""
    import numpy as np

    return np.sort(_read(paths, "raw_members", ["member_id"])["member_id"].to_numpy(np.int64))


def eligible_post_ids(paths: FeedPaths) -> tuple[np.ndarray | None, str]:
    """Posts the served retrieval index can return: the promoted retrieval version's ``post_embeddings``
    rows (what ``backfill`` put in the Milvus collection). (None, reason) when nothing is promoted."""
    import numpy as np

    from pipelines import delta_io
    from training.versions import current_version

    version = current_version(paths.artifacts / "retrieval")
    table = paths.table("post_embeddings")
    if version is None or not delta_io.exists(table):
        return None, "no promoted retrieval model (or no post_embeddings): eligible-post shares not computed"
    frame = delta_io.read(table, columns=["post_id", "model_version"]).to_pandas()
    ids = np.unique(frame.loc[frame["model_version"] == version, "post_id"].to_numpy(np.int64))
    return ids, f"post_embeddings rows of the promoted retrieval model {version} ({len(ids)} posts)"


def author_engagements(paths: FeedPaths, post_authors: pd.DataFrame) -> pd.Series:
    """author_id → engaged impressions of their posts in raw_impressions (DESIGN.md: any of click,
    long_dwell, like, comment, share is 1), over every impression in the lake."""
    import pandas as pd

    imp = _read(paths, "raw_impressions", ["post_id", *ENGAGED_TASKS])
    engaged = imp.loc[imp[list(ENGAGED_TASKS)].to_numpy().any(axis=1), "post_id"]
    counts = engaged.value_counts()
    authors = post_authors.drop_duplicates("post_id").set_index("post_id")["author_id"]
    author_of = authors.reindex(counts.index)
    known = author_of.notna().to_numpy()  # an impression of a post missing from raw_posts has no author
    by_author = pd.Series(counts.to_numpy()[known], index=author_of.to_numpy()[known].astype("int64"))
    return by_author.groupby(level=0).sum().astype("int64")
