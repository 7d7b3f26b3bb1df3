"""feed_retrieval_training's task bodies (feed.flows.retrieval): the quality gate, promotion, rollback, and a
full ``airflow dags test`` run on ``tiny`` features.

The integration tests train the ``tiny`` profile for a few steps: enough to exercise every task (set,
training, evaluation, gate, promotion, embeddings, Milvus, Feast), not to produce a good model.
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from feed.config import FeedPaths
from feed.flows import retrieval
from feed.flows.retrieval import RetrievalGateConfig, RetrievalGateFailed, RetrievalTrainingConfig, gate
from training.versions import current_version, previous_version, write_current

# --- the gate (no data)


def _evaluation(candidate: float, current: float | None, untrained: float | None = None) -> dict:
    return {
        "version": "r20260928",
        "current_version": None if current is None else "r20260921",
        "candidate_recall_at_10": candidate,
        "current_recall_at_10": current,
        "pretrained_recall_at_10": untrained,
    }


def test_gate_refuses_a_candidate_worse_than_current_beyond_tolerance(tmp_path: Path) -> None:
    root = tmp_path / "artifacts" / "retrieval"
    (root / "r20260921").mkdir(parents=True)
    write_current(root, "r20260921")
    with pytest.raises(RetrievalGateFailed, match=r"worse than the served r20260921 .* CURRENT stays"):
        gate(_evaluation(candidate=0.180, current=0.200), RetrievalGateConfig(tolerance=0.01))
    assert current_version(root) == "r20260921"  # the gate decides; only `promote` writes CURRENT


@pytest.mark.parametrize("candidate", [0.191, 0.200, 0.250])
def test_gate_passes_a_candidate_within_tolerance_or_better(candidate: float) -> None:
    verdict = gate(_evaluation(candidate=candidate, current=0.200), RetrievalGateConfig(tolerance=0.01))
    assert verdict["passed"] is True
    assert verdict["version"] == "r20260928"


def test_gate_without_a_served_model_needs_to_beat_the_untrained_encoder() -> None:
    assert gate(_evaluation(candidate=0.12, current=None, untrained=0.10))["passed"]
    with pytest.raises(RetrievalGateFailed, match="does not beat the untrained encoder"):
        gate(_evaluation(candidate=0.10, current=None, untrained=0.10))
    with pytest.raises(RetrievalGateFailed, match="no recall_at_10"):
        gate(_evaluation(candidate=None, current=0.1))  # type: ignore[arg-type]


def test_run_conf_is_parsed_strictly() -> None:
    cfg = RetrievalTrainingConfig.from_conf({"profile": "tiny", "steps": 3, "tolerance": 0.02})
    assert (cfg.run_config().profile, cfg.run_config().steps, cfg.gate.tolerance) == ("tiny", 3, 0.02)
    assert RetrievalTrainingConfig.from_conf(None) == RetrievalTrainingConfig()
    with pytest.raises(ValueError, match="unknown feed_retrieval_training conf keys"):
        RetrievalTrainingConfig.from_conf({"step": 3})
    with pytest.raises(ValueError, match="unknown retrieval profile"):
        RetrievalTrainingConfig.from_conf({"profile": "huge"}).run_config()


def test_the_version_is_named_after_the_interval() -> None:
    end = dt.datetime(2026, 9, 28, 4, tzinfo=dt.UTC)
    assert retrieval.version_for(end) == "r20260928"
    later = dt.datetime(2026, 9, 28, 4, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert retrieval.version_for(later) == "r20260928"  # 09:00 UTC


def test_rollback_ranking_swaps_the_pointer(feed_paths: FeedPaths) -> None:
    root = feed_paths.artifacts / "ranking"
    for version in ("g1", "g2"):
        (root / version).mkdir(parents=True)
        write_current(root, version)
    done = retrieval.rollback_ranking(feed_paths)
    assert done["model"] == {"current": "g1", "previous": "g2"}
    assert (current_version(root), previous_version(root)) == ("g1", "g2")


# --- integration: tiny features → the whole DAG through `airflow dags test`

TINY = {"profile": "tiny", "steps": 2, "max_train_anchors": 64, "max_eval_anchors": 64}
SEEDED = "r20260915"  # a version served before the DAG run, trained by the task functions themselves
RUN_DAY = dt.date(2026, 9, 28)  # inside the tiny data's window (2026-09-01 + 28 days)


@dataclass(frozen=True)
class Run:
    paths: FeedPaths
    version: str


def _member_embedding_version(paths: FeedPaths, version: str) -> str:
    from pipelines.feature_store import online_features
    from training.retrieval.embed import read_embeddings

    ids, _ = read_embeddings(paths, "member", version)
    online = online_features(paths, ["member_embedding:model_version"], [{"member_id": int(ids[0])}])
    return online["member_embedding__model_version"][0]


def _alias_target(paths: FeedPaths) -> str | None:
    from serving.index import lite
    from serving.index.milvus import alias_target, connect

    server = lite.ensure_server(paths)
    try:
        return alias_target(connect(server.uri))
    finally:
        lite.stop_server(paths)


@pytest.fixture(scope="module")
def dag_run(tiny_feature_home: FeedPaths, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A writable copy of the tiny feature home with SEEDED served (trained, promoted, embedded, indexed and
    pushed by the task functions), then one `airflow dags test` of feed_retrieval_training on RUN_DAY."""
    from feed.orchestration import dags_test
    from pipelines import feature_store

    paths = FeedPaths(home=tmp_path_factory.mktemp("retrieval_dag_home"))
    shutil.copytree(tiny_feature_home.lake, paths.lake)
    feature_store.apply(paths)
    cfg = RetrievalTrainingConfig.from_conf(TINY)
    built = retrieval.build_training_set(paths, SEEDED, cfg)
    retrieval.train_candidate(paths, Path(built["set"]), SEEDED, cfg)
    retrieval.promote(paths, SEEDED)
    at = retrieval.export_time(paths, dt.datetime(2026, 9, 15, tzinfo=dt.UTC))
    retrieval.export_embeddings(paths, SEEDED, at)
    retrieval.backfill_index(paths, SEEDED)
    retrieval.push_embeddings(paths, SEEDED)
    # A 2-step candidate against a 2-step served model is a coin toss; the tolerance lets the plumbing run
    # (the gate's arithmetic is tested above on exact numbers).
    dags_test(paths, "feed_retrieval_training", RUN_DAY, conf={**TINY, "tolerance": 0.5})
    return Run(paths, retrieval.version_for(dt.datetime.combine(RUN_DAY, dt.time(), tzinfo=dt.UTC)))


@pytest.mark.integration
@pytest.mark.slow
def test_dag_run_promotes_indexes_and_pushes_the_new_version(dag_run: Run) -> None:
    paths, version = dag_run.paths, dag_run.version
    root = paths.artifacts / "retrieval"
    assert (current_version(root), previous_version(root)) == (version, SEEDED)
    assert (root / version / "config.json").is_file()
    assert not (root / ".candidates" / version).exists()  # moved into place by promote
    assert (root / version / retrieval.GATE_EVAL_FILE).is_file()
    assert _alias_target(paths) == f"posts_{version}"
    assert _member_embedding_version(paths, version) == version


@pytest.mark.integration
@pytest.mark.slow
def test_rollback_restores_model_alias_and_feast_rows_in_one_step(dag_run: Run) -> None:
    paths = dag_run.paths
    done = retrieval.rollback_retrieval(paths)
    assert done["model"] == {"current": SEEDED, "previous": dag_run.version}
    assert done["index"]["collection"] == f"posts_{SEEDED}"
    assert done["index"]["was"] == f"posts_{dag_run.version}"
    assert done["feast"]["version"] == SEEDED
    assert current_version(paths.artifacts / "retrieval") == SEEDED
    assert _alias_target(paths) == f"posts_{SEEDED}"
    assert _member_embedding_version(paths, SEEDED) == SEEDED
