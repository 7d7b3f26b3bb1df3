"""Exhaustive kNN in torch (matmul + top-k, LinkedIn LiNR's approach) at 1M and 10M × 384: latency and recall.

Self-contained on purpose: the GPU machine has torch but no FAISS, pymilvus or this project's venv, so this
file imports torch and the standard library only and runs as a plain script there:

    python3 bench/gpu_knn.py                         # 1M and 10M × 384, fp16 + bf16, batch 1–1,024 → $OUT
    python3 bench/gpu_knn.py --sizes 2000 --dim 32 --batches 1,4 --device cpu --out /tmp/g.json   # CPU smoke

Then merge the JSON into the index report: ``feed bench index --gpu-json <path>``.

Data: :func:`clustered_unit_vectors` (documented there; ``bench/index.py`` uses the same generator, so the
CPU and GPU figures are on the same distribution). For each size the database is generated on the device in
chunks straight into the fp16/bf16 copies; the fp32 exact top-k of a fixed query sample is accumulated chunk
by chunk on the way (so the 15 GB fp32 copy of 10M × 384 is never held), and recall@k of every half-precision
search is measured against it.

Timing: one call = host queries → device → matmul + running top-k → values and ids back on the host (the
copy back synchronises), so the latency is what a serving process would see, not a kernel time. Per (size,
dtype, batch): warm-up calls, then timed calls until ``--iters`` or ``--seconds`` per cell, whichever first
(at least ``--min-iters``); p50/p99 over those calls, QPS = batch / mean latency.

The search kernel is the same algorithm as ``serving.index.exact.ExactIndex`` (which adds filters and the id
map); tests/bench/test_index_bench.py checks both return the same top-k.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gpu_common import cpu_name, percentile, resolve_device, sync

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class ClusteredSpec:
    """Clustered synthetic unit vectors; recall of approximate indexes depends on these numbers.

    1. ``n_clusters`` centres drawn uniformly on the unit sphere S^(dim-1) (a standard normal vector,
       normalised), from ``torch.Generator`` seeded with ``seed``;
    2. each point picks a centre uniformly at random and adds isotropic Gaussian noise with per-dimension
       standard deviation ``noise / sqrt(dim)`` (so the noise vector has norm ≈ ``noise``), then is
       normalised to unit length. cos(point, its centre) ≈ 1 / sqrt(1 + noise²) (0.71 at noise 1.0), two
       points of one cluster ≈ 1 / (1 + noise²) (0.5), points of different clusters ≈ 0 ± 1/sqrt(dim);
       Points come from a generator seeded ``seed + 1`` on the device they are made on (so CPU and CUDA
       streams differ; the centres do not);
    3. queries are drawn the same way (same centres, fresh noise) from a generator seeded ``seed + 2``, so
       every query lands in a populated cluster and its top-100 lies mostly inside that cluster.
    """

    n_clusters: int = 1000
    noise: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_clusters < 1 or self.noise < 0:
            raise ValueError(f"n_clusters must be >= 1 and noise >= 0, got {self}")


def cluster_centres(dim: int, spec: ClusteredSpec) -> torch.Tensor:
    """(n_clusters, dim) float32 unit centres on the CPU (deterministic for a given spec and dim)."""
    gen = torch.Generator().manual_seed(spec.seed)
    c = torch.randn(spec.n_clusters, dim, generator=gen)
    return c / torch.linalg.vector_norm(c, dim=1, keepdim=True)


def clustered_chunks(
    n: int,
    dim: int,
    spec: ClusteredSpec,
    *,
    queries: bool = False,
    chunk: int = 1 << 18,
    device: torch.device | str = "cpu",
) -> Any:
    """Yield (rows, dim) float32 unit-vector chunks of the data set (or of its queries) on ``device``.

    Deterministic for (spec, dim, n, chunk, device type); the centres are identical on every device.
    """
    device = torch.device(device)
    centres = cluster_centres(dim, spec).to(device)
    gen = torch.Generator(device=device).manual_seed(spec.seed + (2 if queries else 1))
    sd = spec.noise / math.sqrt(dim)
    for lo in range(0, n, chunk):
        rows = min(chunk, n - lo)
        which = torch.randint(0, spec.n_clusters, (rows,), generator=gen, device=device)
        x = centres[which] + sd * torch.randn(rows, dim, generator=gen, device=device)
        yield x / torch.linalg.vector_norm(x, dim=1, keepdim=True)


def clustered_unit_vectors(
    n: int, dim: int, spec: ClusteredSpec, *, queries: bool = False, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """(n, dim) float32 unit vectors drawn as :class:`ClusteredSpec` says."""
    parts = list(clustered_chunks(n, dim, spec, queries=queries, device=device))
    return torch.cat(parts) if parts else torch.empty(0, dim, device=device)


def knn(
    db: torch.Tensor, q: torch.Tensor, k: int, block_elems: int = 1 << 26
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact inner-product top-k of unit queries ``q`` (B, D) over ``db`` (N, D), same dtype and device.

    Scores are computed in blocks of at most ``block_elems`` numbers with a running top-k, so memory stays
    bounded (10M rows × 1,024 queries unblocked = 20 GB of fp16 scores). Returns (values (B, k), rows (B, k)).
    """
    n = db.shape[0]
    k = min(k, n)
    step = max(1, block_elems // q.shape[0])
    best_v: torch.Tensor | None = None
    best_i: torch.Tensor | None = None
    for start in range(0, n, step):
        end = min(n, start + step)
        v, i = torch.topk(q @ db[start:end].T, min(k, end - start), dim=1)
        i += start
        if best_v is None or best_i is None:
            best_v, best_i = v, i
            continue
        v, i = torch.cat([best_v, v], dim=1), torch.cat([best_i, i], dim=1)
        best_v, sel = torch.topk(v, k, dim=1)
        best_i = torch.gather(i, 1, sel)
    assert best_v is not None
    assert best_i is not None
    return best_v, best_i


@dataclass(frozen=True)
class GpuKnnConfig:
    sizes: tuple[int, ...] = (1_000_000, 10_000_000)
    dim: int = 384
    dtypes: tuple[str, ...] = ("fp16", "bf16")
    batches: tuple[int, ...] = (1, 8, 32, 128, 1024)
    k: int = 100
    iters: int = 200  # timed calls per cell at most
    min_iters: int = 10
    seconds: float = 3.0  # time budget per cell (stop early once past it and min_iters)
    warmup: int = 3
    recall_queries: int = 200  # fp32-exact ground-truth sample
    block_elems: int = 1 << 26  # 64M scores per block (128 MiB in fp16)
    spec: ClusteredSpec = ClusteredSpec()
    device: str = "auto"
    serving_n: int = 1_000_000  # rows for the ExactIndex (serving path) check; 0 = skip it
    serving_queries: int = 200


def _build(n: int, cfg: GpuKnnConfig, device: torch.device, gt_q: torch.Tensor) -> dict[str, Any]:
    """Generate the database in the asked dtypes and the fp32 exact top-k of ``gt_q`` on the way."""
    k = min(cfg.k, n)
    dbs = {name: torch.empty(n, cfg.dim, dtype=DTYPES[name], device=device) for name in cfg.dtypes}
    best_v: torch.Tensor | None = None
    best_i: torch.Tensor | None = None
    lo = 0
    for x in clustered_chunks(n, cfg.dim, cfg.spec, device=device):
        hi = lo + x.shape[0]
        for name, db in dbs.items():
            db[lo:hi] = x.to(DTYPES[name])
        v, i = knn(x, gt_q, k, cfg.block_elems)
        i += lo
        if best_v is not None and best_i is not None:
            v, i = torch.cat([best_v, v], 1), torch.cat([best_i, i], 1)
            v, sel = torch.topk(v, k, dim=1)
            i = torch.gather(i, 1, sel)
        best_v, best_i = v, i
        lo = hi
    assert best_i is not None
    return {"dbs": dbs, "gt_rows": best_i.cpu()}


def _recall(got: torch.Tensor, want: torch.Tensor) -> float:
    hits = sum(len(set(g.tolist()) & set(w.tolist())) for g, w in zip(got, want, strict=True))
    return hits / want.numel()


def _time_cell(
    db: torch.Tensor, pool: torch.Tensor, batch: int, cfg: GpuKnnConfig, device: torch.device
) -> dict[str, Any]:
    """Latency of ``batch``-query calls, queries taken round-robin from the host pool."""
    n_pool = pool.shape[0]
    lat: list[float] = []
    began = time.perf_counter()
    for it in range(cfg.warmup + cfg.iters):
        lo = (it * batch) % max(1, n_pool - batch + 1)
        host_q = pool[lo : lo + batch]
        sync(device)
        t0 = time.perf_counter()
        q = host_q.to(device, non_blocking=False).to(db.dtype)
        v, i = knn(db, q, cfg.k, cfg.block_elems)
        v.float().cpu(), i.cpu()  # the copy back synchronises
        dt = time.perf_counter() - t0
        if it >= cfg.warmup:
            lat.append(dt)
            if len(lat) >= cfg.min_iters and time.perf_counter() - began > cfg.seconds:
                break
    mean = statistics.fmean(lat)
    return {
        "batch": batch,
        "iters": len(lat),
        "p50_ms": round(percentile(lat, 50) * 1e3, 3),
        "p99_ms": round(percentile(lat, 99) * 1e3, 3),
        "mean_ms": round(mean * 1e3, 3),
        "qps": round(batch / mean, 1),
    }


def run(cfg: GpuKnnConfig, out: Path, log: Any = print) -> dict[str, Any]:
    """Run every (size, dtype, batch) cell and write the JSON to ``out``; returns the document."""
    device = resolve_device(cfg.device)
    torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 ground truth must be true fp32
    gt_q = clustered_unit_vectors(cfg.recall_queries, cfg.dim, cfg.spec, queries=True, device=device)
    pool = clustered_unit_vectors(max(cfg.batches) * 4, cfg.dim, cfg.spec, queries=True, device="cpu")
    pool = pool[torch.randperm(pool.shape[0], generator=torch.Generator().manual_seed(1))]
    if device.type == "cuda":
        pool = pool.pin_memory()
    doc: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "device_type": device.type,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "host_cpus": os.cpu_count(),
        "config": {**asdict(cfg), "spec": asdict(cfg.spec)},
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": [],
        "errors": [],
    }
    for n in cfg.sizes:
        t0 = time.perf_counter()
        built = _build(n, cfg, device, gt_q)
        sync(device)
        log(f"[gpu_knn] n={n:,} generated in {time.perf_counter() - t0:.1f} s on {device}")
        for name, db in built["dbs"].items():
            _, rows = knn(db, gt_q.to(db.dtype), cfg.k, cfg.block_elems)
            recall = _recall(rows.cpu(), built["gt_rows"])
            for batch in cfg.batches:
                try:
                    cell = _time_cell(db, pool, batch, cfg, device)
                except torch.OutOfMemoryError as exc:  # record and go on: the other cells still count
                    doc["errors"].append({"n": n, "dtype": name, "batch": batch, "error": str(exc)[:300]})
                    torch.cuda.empty_cache()
                    continue
                row = {
                    "n": n,
                    "dim": cfg.dim,
                    "dtype": name,
                    "k": cfg.k,
                    f"recall_at_{cfg.k}": recall,
                    **cell,
                }
                row["db_gb"] = round(db.numel() * db.element_size() / 1e9, 2)
                doc["results"].append(row)
                log(
                    f"[gpu_knn] n={n:,} {name} batch={batch}: p50 {cell['p50_ms']} ms "
                    f"p99 {cell['p99_ms']} ms {cell['qps']:,} q/s recall@{cfg.k} {recall:.4f}"
                )
        del built
        if device.type == "cuda":
            torch.cuda.empty_cache()
        _write(doc, out)  # partial results survive a time limit
    if cfg.serving_n:
        doc["serving_path"] = serving_path_check(cfg, device, log)
    _write(doc, out)
    log(f"[gpu_knn] wrote {out}")
    return doc


def _write(doc: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")


def serving_path_check(cfg: GpuKnnConfig, device: torch.device, log: Any = print) -> dict[str, Any]:
    """The GPU serving path itself — ``serving.index.exact.ExactIndex`` behind the ``PostIndex`` interface,
    with its id map and filters — on this device: agreement with the same index on the CPU, filters honoured,
    recall of fp16/bf16 against fp32, single-query p50/p99 and batch-32 QPS with and without a filter.

    Optional: needs numpy and this repository's ``serving`` package (both importable on the GPU machine from
    the repo root); skipped with the reason otherwise, so the kernel figures above never depend on it.
    """
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        import numpy as np

        from serving.index.base import PostMeta, SearchFilter
        from serving.index.exact import ExactConfig, ExactIndex
    except ImportError as exc:
        return {"skipped": f"serving.index.exact not importable here: {exc}"}
    n, k, day = cfg.serving_n, cfg.k, 86_400
    x = torch.cat(list(clustered_chunks(n, cfg.dim, cfg.spec, device=device))).cpu().numpy()
    q = clustered_unit_vectors(cfg.serving_queries, cfg.dim, cfg.spec, queries=True).numpy()
    rng = np.random.default_rng(cfg.spec.seed)
    ids = np.arange(n, dtype=np.int64) * 3 + 1  # not row positions: the id map is exercised
    meta = PostMeta.of(
        rng.integers(0, max(1, n // 20), n), rng.integers(0, 28 * day, n), rng.choice(["text", "video"], n)
    )
    out: dict[str, Any] = {"n": n, "dim": cfg.dim, "k": k, "queries": len(q)}
    ref: list[Any] = []
    for dtype in ("fp32", "fp16", "bf16"):
        index = ExactIndex.build(ids, x, meta, "check", ExactConfig(device=str(device), dtype=dtype))
        plain = [r.post_ids for r in index.search(q, k)]
        if not ref:  # fp32 on this device: the reference, and where the per-query filters come from
            ref = plain
            filters = [
                SearchFilter(
                    exclude_post_ids=frozenset(p[:50].tolist()) | frozenset(rng.choice(ids, 450).tolist()),
                    exclude_author_id=int(meta.author_id[i]),
                    created_after=14 * day,
                )
                for i, p in enumerate(plain)
            ]
            ref_f = [r.post_ids for r in index.search(q, k, filters)]
            out["filter_violations"] = sum(
                int((~f.mask(r, meta.take(np.searchsorted(ids, r)))).sum())
                for f, r in zip(filters, ref_f, strict=True)
            )
            cpu = ExactIndex.build(ids, x, meta, "check-cpu").search(q[:20], k, filters[:20])
            out["cpu_agreement"] = _overlap([r.post_ids for r in cpu], ref_f[:20])
            del cpu
        got_f = [r.post_ids for r in index.search(q, k, filters)]
        out[dtype] = {
            f"recall_at_{k}": _overlap(plain, ref),
            f"recall_at_{k}_filtered": _overlap(got_f, ref_f),
            "unfiltered": _time_index(index, q, k, None, device),
            "filtered": _time_index(index, q, k, filters, device),
        }
        log(f"[gpu_knn] serving path ExactIndex {dtype} n={n:,}: {out[dtype]}")
        del index
    return out


def _overlap(got: Sequence[Any], want: Sequence[Any]) -> float:
    hits = sum(len(set(g.tolist()) & set(w.tolist())) for g, w in zip(got, want, strict=True))
    return round(hits / max(1, sum(len(w) for w in want)), 4)


def _time_index(index: Any, q: Any, k: int, filters: Any, device: torch.device) -> dict[str, Any]:
    """Single-query p50/p99 over the queries (after 5 warm-ups) and batch-32 QPS via ExactIndex.search."""
    fs = filters if filters is not None else [None] * len(q)
    for i in range(5):
        index.search(q[i : i + 1], k, fs[i : i + 1])
    lat = []
    for i in range(len(q)):
        sync(device)
        t0 = time.perf_counter()
        index.search(q[i : i + 1], k, fs[i : i + 1])  # results come back to the host: synchronised
        lat.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for lo in range(0, len(q) - 31, 32):
        index.search(q[lo : lo + 32], k, fs[lo : lo + 32])
    spent = time.perf_counter() - t0
    return {
        "p50_ms": round(percentile(lat, 50) * 1e3, 3),
        "p99_ms": round(percentile(lat, 99) * 1e3, 3),
        "batch32_qps": round((len(q) // 32) * 32 / spent, 1),
    }


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x.replace("_", "")) for x in text.split(",") if x.strip())


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = GpuKnnConfig()
    p.add_argument("--sizes", type=_ints, default=d.sizes, help="database sizes, comma-separated")
    p.add_argument("--dim", type=int, default=d.dim)
    p.add_argument("--dtypes", default=",".join(d.dtypes), help="of fp32,fp16,bf16")
    p.add_argument("--batches", type=_ints, default=d.batches)
    p.add_argument("--k", type=int, default=d.k)
    p.add_argument("--iters", type=int, default=d.iters)
    p.add_argument("--min-iters", type=int, default=d.min_iters)
    p.add_argument("--seconds", type=float, default=d.seconds, help="time budget per cell")
    p.add_argument("--recall-queries", type=int, default=d.recall_queries)
    p.add_argument("--block-elems", type=int, default=d.block_elems, help="scores per block (memory bound)")
    p.add_argument("--warmup", type=int, default=d.warmup)
    p.add_argument("--serving-n", type=int, default=d.serving_n, help="ExactIndex check rows (0 = skip)")
    p.add_argument("--serving-queries", type=int, default=d.serving_queries)
    p.add_argument("--clusters", type=int, default=d.spec.n_clusters)
    p.add_argument("--noise", type=float, default=d.spec.noise)
    p.add_argument("--seed", type=int, default=d.spec.seed)
    p.add_argument("--device", default=d.device, help="auto | cuda | cpu")
    p.add_argument("--out", type=Path, default=None, help="JSON path [default: $OUT/gpu_knn.json or ./]")
    a = p.parse_args(argv)
    dtypes = tuple(x.strip() for x in a.dtypes.split(",") if x.strip())
    unknown = [x for x in dtypes if x not in DTYPES]
    if unknown:
        p.error(f"unknown dtypes {unknown}; choose from {sorted(DTYPES)}")
    cfg = GpuKnnConfig(
        sizes=a.sizes,
        dim=a.dim,
        dtypes=dtypes,
        batches=a.batches,
        k=a.k,
        iters=a.iters,
        min_iters=a.min_iters,
        seconds=a.seconds,
        recall_queries=a.recall_queries,
        block_elems=a.block_elems,
        warmup=a.warmup,
        serving_n=a.serving_n,
        serving_queries=a.serving_queries,
        spec=ClusteredSpec(n_clusters=a.clusters, noise=a.noise, seed=a.seed),
        device=a.device,
    )
    out = a.out or Path(os.environ.get("OUT", ".")) / "gpu_knn.json"
    run(cfg, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
