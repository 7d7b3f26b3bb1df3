"""bench/index.py and bench/gpu_knn.py: the generator, the kernel vs ExactIndex, the filters and exact answers
the bench scores against, the GPU script at tiny sizes on the CPU, and the quick run end to end (a real Milvus
Lite server, FAISS, the replica, ExactIndex)."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import gpu_knn
from bench import index as bench_index
from feed.config import REPORTS_DIR, FeedPaths, FeedSettings
from serving.index.base import PostMeta, SearchFilter
from serving.index.exact import ExactIndex

CONTRACT_KEYS = (
    "default_path_p99_ms_1m",
    "default_path_recall_at_100_1m",
    "milvus_lite_hnsw_p99_ms_1m",
    "faiss_hnsw_p99_ms_1m",
)
GPU_SCRIPT = Path(gpu_knn.__file__)


# --- the generator and the kernel --------------------------------------------------------------------------


def test_clustered_vectors_follow_the_documented_recipe() -> None:
    spec = gpu_knn.ClusteredSpec(n_clusters=20, noise=1.0, seed=3)
    x = gpu_knn.clustered_unit_vectors(4000, 64, spec)
    again = gpu_knn.clustered_unit_vectors(4000, 64, spec)
    q = gpu_knn.clustered_unit_vectors(50, 64, spec, queries=True)
    assert x.shape == (4000, 64)
    assert x.dtype == torch.float32
    torch.testing.assert_close(x, again)  # deterministic
    torch.testing.assert_close(torch.linalg.vector_norm(x, dim=1), torch.ones(4000))
    assert not torch.allclose(q, x[:50])  # queries: fresh noise
    centres = gpu_knn.cluster_centres(64, spec)
    nearest = (x @ centres.T).max(dim=1).values
    # cos(point, its centre) ≈ 1/sqrt(1 + noise²) = 0.707; different clusters ≈ 0
    assert nearest.mean().item() == pytest.approx(1 / np.sqrt(2), abs=0.05)
    assert (q @ centres.T).max(dim=1).values.mean().item() == pytest.approx(1 / np.sqrt(2), abs=0.05)
    chunked = torch.cat(list(gpu_knn.clustered_chunks(4000, 64, spec, chunk=1000)))
    assert chunked.shape == x.shape


def test_knn_kernel_matches_exact_index() -> None:
    spec = gpu_knn.ClusteredSpec(n_clusters=30, seed=1)
    db = gpu_knn.clustered_unit_vectors(3000, 48, spec)
    q = gpu_knn.clustered_unit_vectors(12, 48, spec, queries=True)
    vals, rows = gpu_knn.knn(db, q, 40, block_elems=5000)  # many blocks: the running merge is exercised
    ids = np.arange(3000, dtype=np.int64) * 7
    meta = PostMeta.of(np.zeros(3000), np.zeros(3000), np.array(["text"] * 3000, dtype=object))
    exact = ExactIndex.build(ids, db.numpy(), meta, "v1").search(q.numpy(), 40)
    full = torch.topk(q @ db.T, 40, dim=1)
    for i, res in enumerate(exact):
        np.testing.assert_array_equal(rows[i].numpy() * 7, res.post_ids)
        np.testing.assert_array_equal(rows[i].numpy(), full.indices[i].numpy())
        np.testing.assert_allclose(vals[i].numpy(), res.scores, atol=1e-5)


def test_percentile_matches_numpy() -> None:
    xs = list(np.random.default_rng(0).exponential(size=101))
    for p in (0, 50, 99, 100):
        assert gpu_knn.percentile(xs, p) == pytest.approx(float(np.percentile(xs, p)))


def _module_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:  # module level; optional checks import lazily
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_gpu_script_imports_torch_and_the_standard_library_only() -> None:
    """The GPU machine has torch but not this project's venv: the script and the repo modules it imports
    at module level (bench.gpu_common) may need nothing else."""
    seen, todo, roots = set(), [GPU_SCRIPT], set()
    while todo:
        names = _module_level_imports(todo.pop())
        for name in names:
            if name.startswith("bench.") and name not in seen:
                seen.add(name)
                todo.append(GPU_SCRIPT.parents[1] / (name.replace(".", "/") + ".py"))
            else:
                roots.add(name.split(".")[0])
    third_party = roots - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party == {"torch"}
    assert seen == {"bench.gpu_common"}


def test_gpu_script_runs_on_cpu_at_tiny_sizes(tmp_path: Path) -> None:
    out = tmp_path / "gpu_knn.json"
    cmd = [sys.executable, str(GPU_SCRIPT), "--sizes", "1500,2500", "--dim", "32", "--batches", "1,8"]
    cmd += ["--device", "cpu", "--k", "20", "--iters", "5", "--min-iters", "3", "--seconds", "0.05"]
    cmd += ["--clusters", "50", "--recall-queries", "40", "--serving-n", "3000", "--out", str(out)]
    cmd += ["--serving-queries", "40"]
    subprocess.run(cmd, check=True, cwd=tmp_path, capture_output=True, text=True)  # not the repo root
    doc = json.loads(out.read_text())
    assert doc["device_type"] == "cpu"
    assert doc["errors"] == []
    cells = {(r["n"], r["dtype"], r["batch"]) for r in doc["results"]}
    assert cells == {(n, d, b) for n in (1500, 2500) for d in ("fp16", "bf16") for b in (1, 8)}
    for r in doc["results"]:
        assert 0.85 <= r["recall_at_20"] <= 1.0  # half precision vs fp32 exact: near-ties swap only
        assert 0 < r["p50_ms"] <= r["p99_ms"]
        assert r["qps"] > 0
        assert 3 <= r["iters"] <= 5
    serving = doc["serving_path"]  # ExactIndex (the GPU serving path) through the PostIndex interface
    assert serving["n"] == 3000
    assert serving["filter_violations"] == 0
    assert serving["cpu_agreement"] == 1.0
    assert serving["fp32"]["recall_at_20"] == 1.0
    for dtype in ("fp16", "bf16"):
        assert serving[dtype]["recall_at_20"] >= 0.9
        assert serving[dtype]["recall_at_20_filtered"] >= 0.9
        assert 0 < serving[dtype]["filtered"]["p50_ms"] <= serving[dtype]["filtered"]["p99_ms"]


def test_gpu_script_rejects_an_unknown_dtype(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(GPU_SCRIPT), "--dtypes", "fp8", "--out", str(tmp_path / "x.json")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "unknown dtypes ['fp8']" in proc.stderr


# --- the bench's data, filters and exact answers -----------------------------------------------------------


def _tiny_cfg(**kw: object) -> bench_index.IndexBenchConfig:
    base = {
        "sizes": (2000,),
        "dim": 32,
        "k": 20,
        "spec": gpu_knn.ClusteredSpec(n_clusters=40),
        "queries": 30,
        "slow_queries": 10,
        "seen": 60,
        "seen_from_top": 10,
        "batch": 8,
        "batch_calls": 2,
        "warmup": 1,
        "milvus_budget_s": 0.5,
        "milvus_min_queries": 5,
        "hnsw_ef_construction": 64,
        "hnsw_ef_search": 64,
        "ivf_nlist": 16,
        "ivf_nprobe": 8,
    }
    return bench_index.quick_config(**(base | kw))


def test_filters_and_exact_answers_follow_search_filter_semantics() -> None:
    cfg = _tiny_cfg()
    ds = bench_index.synthetic_dataset(2000, cfg)
    bench_index.add_filters_and_truth(ds, cfg)
    assert ds.truth is not None
    assert ds.truth.shape == (30, 20)
    unit = ds.vectors
    for i in (0, 7, 29):
        f = ds.filters[i]
        assert len(f.exclude_post_ids) == 60
        assert set(ds.truth[i, :10]) <= f.exclude_post_ids  # the query's nearest posts count as seen
        mask = f.mask(ds.ids, ds.meta)
        np.testing.assert_array_equal(ds.mask(f), mask)
        assert 0.3 < mask.mean() < 0.6  # ≈ half the posts are recent enough
        scores = unit @ ds.queries[i]
        scores[~mask] = -np.inf
        want = ds.ids[np.argsort(-scores, kind="stable")[:20]]
        np.testing.assert_array_equal(ds.truth_filtered[i], want)
        np.testing.assert_array_equal(ds.truth[i], ds.ids[np.argsort(-(unit @ ds.queries[i]))[:20]])
    assert bench_index.recall([np.array([1, 2, 3])], [np.array([2, 3, 4, 5])]) == 0.5


def test_config_and_gpu_json_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown backends"):
        bench_index.IndexBenchConfig(backends=("faiss_exact", "annoy"))
    with pytest.raises(ValueError, match="sizes must be >= k"):
        bench_index.IndexBenchConfig(sizes=(50,))
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(ValueError, match=r"not a bench/gpu_knn\.py report"):
        bench_index.load_gpu_json(bad)
    assert bench_index.load_gpu_json(None)["results"] is None
    assert "no GPU lent" in bench_index.load_gpu_json(None)["reason"]


# --- end to end --------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_quick_run_measures_every_backend_and_writes_the_report(tmp_path: Path) -> None:
    repo_report = REPORTS_DIR / "bench" / "index.json"
    before = repo_report.stat().st_mtime_ns if repo_report.exists() else None
    gpu_json = tmp_path / "gpu.json"
    gpu_knn.run(
        gpu_knn.GpuKnnConfig(
            sizes=(1000,),
            dim=32,
            batches=(1,),
            k=10,
            iters=3,
            min_iters=2,
            recall_queries=10,
            device="cpu",
            serving_n=0,
        ),
        gpu_json,
        log=lambda _msg: None,
    )

    out = bench_index.run(
        FeedSettings(home=tmp_path / "home"),
        _tiny_cfg(milvus_budget_s=0.02),  # Milvus Lite: ≥ 1 ms a query → cut well below 30 queries
        quick=True,
        gpu_json=gpu_json,
        reports_dir=tmp_path / "reports",
        work=tmp_path / "work",
    )

    assert out == tmp_path / "reports" / "bench" / "index_quick.json"
    doc = json.loads(out.read_text())
    assert {"summary", "config", "device", "git_commit", "created_at"} <= doc.keys()
    for key in CONTRACT_KEYS:
        assert key in doc["summary"]
        assert doc["summary"][key] is None  # no 1M size in a quick run
    rows = {r["backend"]: r for r in doc["details"]["results"]}
    assert set(rows) == set(bench_index.ALL_BACKENDS)
    for name, r in rows.items():
        for label in ("unfiltered", "filtered"):
            m = r[label]
            assert 0 < m["p50_ms"] <= m["p99_ms"], (name, label)
            if m["batch8_calls"]:
                assert m["batch8_qps"] > 0
            else:  # a batch past four budgets is skipped (Milvus Lite only)
                assert name.startswith("milvus_lite")
                assert m["batch8_qps"] is None
            assert 0.0 <= m["recall_at_20"] <= 1.0
    for exact in ("faiss_exact", "exact_torch_cpu", "milvus_lite_flat"):
        assert rows[exact]["unfiltered"]["recall_at_20"] == 1.0, exact
        assert rows[exact]["filtered"]["recall_at_20"] == 1.0, exact
    assert rows["hnsw_replica"]["unfiltered"]["recall_at_20"] >= 0.9
    assert rows["milvus_lite_hnsw"]["filtered"]["queries"] < 30  # cut to the time budget
    assert doc["summary"]["hnsw_replica_2k_recall"] == rows["hnsw_replica"]["unfiltered"]["recall_at_20"]
    assert rows["milvus_lite_hnsw"]["insert_s"] > 0
    profile = doc["details"]["milvus_lite_profile"]
    assert profile["n"] == 2000
    top = profile["unfiltered"]["top"]
    assert top
    assert all(0 <= f["share_own"] <= 1 for f in top)
    assert any("milvus_lite" in f["file"] for f in top)  # the engine itself, not a gRPC wait
    assert sum(f["share"] for f in profile["unfiltered"]["by_file"]) <= 1.0 + 1e-6
    assert doc["details"]["gpu_knn"]["device_type"] == "cpu"
    assert doc["summary"]["gpu_knn_device"].startswith("CPU")
    assert doc["summary"]["gpu_fp16_1k_b1_p99_ms"] > 0
    assert 0.5 <= doc["summary"]["gpu_bf16_1k_recall_at_10"] <= 1.0
    assert doc["details"]["gpu_knn"]["source"] == str(gpu_json)
    assert "no post_embeddings table" in " ".join(doc["notes"])
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert not (tmp_path / "work" / "milvus").exists()  # the bench's Milvus data is removed
    after = repo_report.stat().st_mtime_ns if repo_report.exists() else None
    assert after == before


@pytest.mark.integration
def test_real_embeddings_are_benchmarked_when_the_home_has_them(
    tiny_raw_lake: FeedPaths, tmp_path: Path
) -> None:
    from pipelines import delta_io
    from training.retrieval.embed import export_embeddings

    paths = FeedPaths(home=tmp_path / "home")
    paths.lake.mkdir(parents=True)
    shutil.copytree(tiny_raw_lake.table("raw_posts"), paths.table("raw_posts"))
    raw = delta_io.read(paths.table("raw_posts"), columns=["post_id"])
    post_ids = raw["post_id"].to_pylist()
    rng = np.random.default_rng(0)

    def encode(texts: list[str]) -> np.ndarray:
        return rng.normal(size=(len(texts), 24)).astype(np.float32)

    rows = [(pid, f"post {pid}") for pid in post_ids[:600]] + [(10**9, "a post deleted from raw_posts")]
    export_embeddings("post", encode, rows, "v-test", paths, progress=False)
    export_embeddings(
        "member", encode, [(m, f"member {m}") for m in range(50)], "v-test", paths, progress=False
    )

    cfg = _tiny_cfg(backends=("faiss_exact", "exact_torch_cpu", "hnsw_replica"))
    ds = bench_index.real_dataset(paths, cfg)
    assert isinstance(ds, bench_index.Dataset)
    assert ds.n == 600
    assert "skipped by reason: {'deleted_post': 1}" in ds.description  # the post absent from raw_posts
    assert "member embeddings" in ds.description
    out = bench_index.run(FeedSettings(home=paths.home), cfg, quick=True, reports_dir=tmp_path / "r")
    doc = json.loads(out.read_text())
    real = [r for r in doc["details"]["results"] if r["data"] == "real_v-test"]
    assert {r["backend"] for r in real} == {"faiss_exact", "exact_torch_cpu", "hnsw_replica"}
    assert all(r["n"] == 600 for r in real)
    assert doc["summary"]["exact_torch_cpu_real_recall"] == 1.0
    assert doc["details"]["milvus_lite_profile"] == "not run"
    assert doc["summary"]["gpu_knn_device"] is None
    assert doc["details"]["gpu_knn"] == {
        "results": None,
        "reason": "no GPU lent to this task (run bench/gpu_knn.py on a GPU host)",
    }
    assert "real_v-test" in doc["details"]["datasets"]


def test_real_dataset_is_skipped_with_a_note_without_embeddings(tmp_path: Path) -> None:
    note = bench_index.real_dataset(FeedPaths(home=tmp_path), _tiny_cfg())
    assert isinstance(note, str)
    assert "no post_embeddings table" in note


def test_search_filter_sets_are_what_each_backend_gets() -> None:
    # the bench hands every backend the same per-query SearchFilter objects (hashable, frozen)
    cfg = _tiny_cfg()
    ds = bench_index.synthetic_dataset(2000, cfg)
    bench_index.add_filters_and_truth(ds, cfg)
    assert all(isinstance(f, SearchFilter) for f in ds.filters)
    assert len(set(ds.filters)) == len(ds.filters)  # per query, not one shared filter
