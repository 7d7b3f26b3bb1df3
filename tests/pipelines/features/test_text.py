"""Topic and work-history rules: Python and Spark give the same strings."""

from __future__ import annotations

import datetime as dt

import pytest

from pipelines.features.text import render_work_history, topic_of

TEXTS = [
    ("Shipping #RustLang today, also #python", "rustlang"),
    ("no hashtags here", "general"),
    (None, "general"),
    ("", "general"),
    ("# not a tag, but #Data_Eng-2026 is", "data_eng"),
    ("#ÉtéAI unicode first, then #ml", "ml"),  # ASCII word chars only: "#É…" is no tag in either engine
    ("email a#b counts too", "b"),
]

JOBS = [
    {"title": "Engineer", "company": "Acme", "industry": "Tech", "start": dt.date(2019, 3, 1), "end": None},
    {
        "title": "Intern",
        "company": "Beta",
        "industry": None,
        "start": dt.date(2017, 6, 5),
        "end": dt.date(2018, 1, 1),
    },
    {"title": "Advisor", "company": "Gamma", "industry": "Law", "start": None, "end": dt.date(2016, 2, 1)},
    {"title": "Lead", "company": "Delta", "industry": "Tech", "start": dt.date(2021, 11, 30), "end": None},
]


@pytest.mark.parametrize(("text", "topic"), TEXTS)
def test_topic_of(text: str | None, topic: str) -> None:
    assert topic_of(text) == topic


def test_render_work_history_newest_first() -> None:
    assert render_work_history(JOBS) == [
        "Lead @ Delta (Tech), 2021-11 – present",
        "Engineer @ Acme (Tech), 2019-03 – present",
        "Intern @ Beta, 2017-06 – 2018-01",
        "Advisor @ Gamma (Law), ? – 2016-02",
    ]
    assert render_work_history(None) == []


@pytest.mark.integration
def test_spark_text_rules_agree_with_python(spark) -> None:
    import pyarrow as pa
    from pyspark.sql import functions as F

    from pipelines.features.text import topic_column, work_history_column
    from pipelines.schemas import WORK_HISTORY_ITEM

    texts = spark.createDataFrame([(i, t) for i, (t, _) in enumerate(TEXTS)], "i int, text string")
    got = {r.i: r.topic for r in texts.select("i", topic_column(F.col("text")).alias("topic")).collect()}
    assert [got[i] for i in range(len(TEXTS))] == [topic for _, topic in TEXTS]

    histories = [JOBS, JOBS[::-1], [], None, [JOBS[2], JOBS[2] | {"title": "Zed"}]]
    table = pa.table(
        {"i": list(range(len(histories))), "wh": pa.array(histories, pa.list_(WORK_HISTORY_ITEM))}
    )
    df = spark.createDataFrame(
        table.to_pandas(),
        schema="i int, wh array<struct<title string, company string, industry string, start date, end date>>",
    )
    rendered = {
        r.i: r.lines for r in df.select("i", work_history_column(F.col("wh")).alias("lines")).collect()
    }
    assert [rendered[i] for i in range(len(histories))] == [render_work_history(h) for h in histories]
