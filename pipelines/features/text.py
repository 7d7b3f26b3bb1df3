"""Text rules shared by the Spark job and the nearline path: a post's topic, a work-history line.

Each rule has a Python function and a Spark expression built from the same constants; tests check they agree.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import Column

# ASCII word characters spelled out: Java's \w is ASCII-only while Python's is Unicode, and the two engines
# must extract the same hashtag.
HASHTAG_PATTERN = r"#([A-Za-z0-9_]+)"
DEFAULT_TOPIC = "general"
PRESENT = "present"
UNKNOWN_DATE = "?"
_HASHTAG = re.compile(HASHTAG_PATTERN)


def topic_of(text: str | None) -> str:
    """post_content.topic: the first hashtag of the text, lower-cased; ``"general"`` when there is none."""
    match = _HASHTAG.search(text or "")
    return match.group(1).lower() if match else DEFAULT_TOPIC


def topic_column(text: Column) -> Column:
    from pyspark.sql import functions as F

    tag = F.lower(F.regexp_extract(F.coalesce(text, F.lit("")), HASHTAG_PATTERN, 1))
    return F.when(tag == "", F.lit(DEFAULT_TOPIC)).otherwise(tag)


def _month(day: dt.date | None, missing: str) -> str:
    return day.strftime("%Y-%m") if day is not None else missing


def render_work_item(item: Mapping[str, Any]) -> str:
    """``"Title @ Company (Industry), 2019-03 – present"``; the industry part is left out when unknown."""
    industry = f" ({item['industry']})" if item.get("industry") else ""
    return (
        f"{item.get('title') or ''} @ {item.get('company') or ''}{industry}, "
        f"{_month(item.get('start'), UNKNOWN_DATE)} – {_month(item.get('end'), PRESENT)}"
    )


def render_work_history(items: Iterable[Mapping[str, Any]] | None) -> list[str]:
    """Rendered positions, newest start first (unknown start last; ties by the rendered text, descending) —
    the order Spark's ``sort_array(struct(start, line), asc=False)`` gives."""
    rows = [(item.get("start"), render_work_item(item)) for item in items or []]
    known = sorted((r for r in rows if r[0] is not None), reverse=True)
    unknown = sorted((r for r in rows if r[0] is None), key=lambda r: r[1], reverse=True)
    return [line for _, line in known + unknown]


def work_history_column(work_history: Column) -> Column:
    """:func:`render_work_history` as a Spark expression over ``array<struct<title, company, ...>>``."""
    from pyspark.sql import functions as F

    def line(x: Column) -> Column:
        industry = F.when(
            F.coalesce(x["industry"], F.lit("")) != "", F.concat(F.lit(" ("), x["industry"], F.lit(")"))
        ).otherwise(F.lit(""))
        start = F.coalesce(F.date_format(x["start"], "yyyy-MM"), F.lit(UNKNOWN_DATE))
        end = F.coalesce(F.date_format(x["end"], "yyyy-MM"), F.lit(PRESENT))
        return F.concat(
            F.coalesce(x["title"], F.lit("")),
            F.lit(" @ "),
            F.coalesce(x["company"], F.lit("")),
            industry,
            F.lit(", "),
            start,
            F.lit(" – "),
            end,
        )

    keyed = F.transform(work_history, lambda x: F.struct(x["start"].alias("start"), line(x).alias("line")))
    ordered = F.sort_array(keyed, asc=False)  # null start compares lowest → last when descending
    return F.when(work_history.isNull(), F.array().cast("array<string>")).otherwise(
        F.transform(ordered, lambda x: x["line"])
    )
