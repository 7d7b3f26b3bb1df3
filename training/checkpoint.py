"""Checkpoints that do not stall the step loop: snapshot on the caller's thread, write in the background.

``AsyncCheckpointer.save(step, state)`` copies every tensor of ``state`` (model/optimizer ``state_dict()``s,
plain Python values) into CPU buffers before it returns, so the next optimizer step may update parameters in
place; the ``torch.save`` + fsync + atomic rename then runs on a writer thread (default) or process.
At most one write is in flight: a save that finds the previous write still running waits for it, and that
wait is part of the stall the step loop sees. An error in the writer is raised (once) by the next ``save()``
or ``wait()``; a ``save()`` that raises it has saved nothing, so the caller may simply call it again.
``SyncCheckpointer`` has the same interface and does everything on the caller's thread.

Files are ``<directory>/step_<step:07d>.pt``, written as ``.pt.tmp`` and renamed, so a reader (``latest``)
never sees a partial file; only the newest ``keep`` are kept. One writer per directory is assumed: stale
``.tmp`` files from a crashed run are removed when a checkpointer opens the directory.

Thread vs process (``bench/checkpoint.py`` measures both). The bulk of ``torch.save`` is C++ (copy + CRC32
+ write per storage), but torch's ``PyTorchFileWriter.write_record`` binding does not release the GIL, so a
writer thread holds it for each whole tensor record and the training thread cannot launch its next op
meanwhile — the reason torch.distributed.checkpoint grew a process-based async writer. A process avoids
that, at the cost of a spawned interpreter (seconds, once, at construction), the snapshot in shared memory
(/dev/shm must hold one checkpoint; allocated once, reused) and a synchronous D2H copy (below). On the
2-core CPU box shared with other jobs, three bench runs ranked thread and process differently (the load of
the other jobs swung the no-save loop time by ±20 %, more than the effect), and neither beat the sync
writer there: with no idle core, the background write's CPU work lands on the steps and takes 2× longer.
The thread is the default (fewer moving parts, pinned non-blocking copies on CUDA); re-measure on a GPU
host, where the step loop leaves CPU cores idle and the GIL is what is left to compare.

CUDA, thread writer: tensors are copied into pinned CPU buffers with ``non_blocking=True`` on the current
stream and an event is recorded; the writer waits on the event, not the caller. Later kernels on the same
stream (the next optimizer step) are ordered after the copies, so the snapshot is consistent without a host
sync. The process writer copies into shared (pageable) memory instead, so its D2H copy is synchronous
(pinning the shared buffers with cudaHostRegister would fix that; untested here, no GPU).
"""

from __future__ import annotations

import contextlib
import copy
import os
import queue
import re
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import torch

CHECKPOINT_RE = re.compile(r"^step_(\d+)\.pt$")
TMP_SUFFIX = ".tmp"
Mode = Literal["thread", "process"]


class CheckpointWriteError(RuntimeError):
    """A background checkpoint write failed; raised by the next ``save()``/``wait()``."""


def checkpoint_path(directory: Path, step: int) -> Path:
    return Path(directory) / f"step_{step:07d}.pt"


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``directory`` as (step, path), oldest first (``.tmp`` files excluded)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := CHECKPOINT_RE.match(p.name))]
    return sorted(found)


def latest(directory: Path) -> Path | None:
    """The newest complete checkpoint in ``directory``, or None."""
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def load(path: Path, map_location: str | torch.device = "cpu", *, weights_only: bool = True) -> Any:
    """Read a checkpoint back (tensors, containers and plain Python values only, unless ``weights_only``
    is turned off for trusted files holding other objects)."""
    return torch.load(path, map_location=map_location, weights_only=weights_only)


def write_checkpoint(directory: Path, step: int, state: Any, keep: int, *, fsync: bool = True) -> int:
    """``torch.save`` to ``step_….pt.tmp``, fsync, rename into place, prune to ``keep``; returns the size.
    The fsync makes the rename a durable commit point (a crash leaves the old file or the new, never half)."""
    final = checkpoint_path(directory, step)
    tmp = final.with_name(final.name + TMP_SUFFIX)
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    size = final.stat().st_size
    for _, old in list_checkpoints(directory)[:-keep]:
        if old != final:  # a directory with newer steps from an earlier run must not prune this one
            old.unlink(missing_ok=True)
    return size


@dataclass
class SaveStats:
    """One save, as the caller's thread and the writer saw it (seconds)."""

    step: int
    wait_s: float = 0.0  # inside save(), waiting for the previous write to finish
    snapshot_s: float = 0.0  # inside save(), copying tensors to CPU buffers (0 for SyncCheckpointer)
    write_s: float | None = None  # torch.save + fsync + rename (background for async); None until done
    bytes: int | None = None

    @property
    def stall_s(self) -> float:
        return self.wait_s + self.snapshot_s


@dataclass
class _Tally:
    saves: list[SaveStats] = field(default_factory=list)
    wait_s: float = 0.0  # time inside wait() calls (draining at the end, or explicit waits)

    @property
    def stall_s(self) -> float:
        return sum(s.stall_s for s in self.saves) + self.wait_s


class _Checkpointer:
    def __init__(self, directory: Path, keep: int, fsync: bool) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = Path(directory)
        self.keep = keep
        self.fsync = fsync
        self.tally = _Tally()
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob(f"step_*.pt{TMP_SUFFIX}"):
            stale.unlink(missing_ok=True)

    @property
    def stats(self) -> list[SaveStats]:
        return self.tally.saves

    def save(self, step: int, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def wait(self) -> None:
        """Block until no write is in flight; raise the writer's error, if any."""

    def close(self) -> None:
        self.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:  # do not mask the caller's exception with a writer error
            with contextlib.suppress(Exception):
                self.close()


class SyncCheckpointer(_Checkpointer):
    """``torch.save`` on the caller's thread: the step loop stalls for the whole write (the baseline)."""

    def __init__(self, directory: Path, keep: int = 3, *, fsync: bool = True) -> None:
        super().__init__(directory, keep, fsync)

    def save(self, step: int, state: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        size = write_checkpoint(self.directory, step, state, self.keep, fsync=self.fsync)
        write_s = time.perf_counter() - t0
        # all of the write is stall; report it as write_s and wait_s so stall_s adds up the same way
        self.tally.saves.append(SaveStats(step, wait_s=write_s, write_s=write_s, bytes=size))


# --- snapshots ---------------------------------------------------------------------------------------------


class _Snapshotter:
    """Deep-copies a state tree, tensors into reusable CPU buffers (pinned for CUDA sources, shared memory
    for the process writer). Buffers are keyed by the tensor's place in the tree, so steady-state saves
    allocate nothing; the caller guarantees the previous write is done before the next snapshot."""

    def __init__(self, shared: bool) -> None:
        self.shared = shared
        self.buffers: dict[tuple[Any, ...], torch.Tensor] = {}
        self.new_keys: list[tuple[Any, ...]] = []  # buffers created by the last snapshot

    def _buffer(self, key: tuple[Any, ...], t: torch.Tensor) -> torch.Tensor:
        full = (key, tuple(t.shape), t.dtype)
        buf = self.buffers.get(full)
        if buf is None:
            pin = t.is_cuda and not self.shared and torch.cuda.is_available()
            buf = torch.empty(t.shape, dtype=t.dtype, pin_memory=pin)
            if self.shared:
                buf.share_memory_()
            self.buffers[full] = buf
            self.new_keys.append(full)
        return buf

    def snapshot(self, state: Any) -> tuple[Any, torch.cuda.Event | None]:
        self.new_keys = []
        memo: dict[tuple[Any, ...], torch.Tensor] = {}
        saw_cuda: list[bool] = []
        tree = self._copy(state, (), memo, saw_cuda)
        event = None
        if saw_cuda:
            event = torch.cuda.Event()
            event.record()  # the writer waits on this, not the caller
        return tree, event

    def _copy(self, obj: Any, key: tuple[Any, ...], memo: dict, saw_cuda: list[bool]) -> Any:
        if isinstance(obj, torch.Tensor):
            t = obj.detach()
            # two views of the same memory (tied weights) stay one tensor in the snapshot
            ident = (
                t.device,
                t.untyped_storage().data_ptr(),
                t.storage_offset(),
                t.shape,
                t.stride(),
                t.dtype,
            )
            if ident in memo:
                return memo[ident]
            buf = self._buffer(key, t)
            buf.copy_(t, non_blocking=t.is_cuda and buf.is_pinned())
            if t.is_cuda:
                saw_cuda.append(True)
            memo[ident] = buf
            return buf
        if isinstance(obj, dict):
            out = copy.copy(obj)  # keeps OrderedDict and friends (and their metadata attribute)
            for k, v in obj.items():
                out[k] = self._copy(v, (*key, k), memo, saw_cuda)
            return out
        if isinstance(obj, list | tuple) and type(obj) in (list, tuple):
            return type(obj)(self._copy(v, (*key, i), memo, saw_cuda) for i, v in enumerate(obj))
        return copy.deepcopy(obj)  # ints, floats, strings, and anything else, by value


# --- the async checkpointer --------------------------------------------------------------------------------


class AsyncCheckpointer(_Checkpointer):
    """Snapshot on the caller's thread, write in a background thread (``mode="thread"``, the default) or
    process (``mode="process"``: the writer does not take the GIL). See the module docstring."""

    def __init__(self, directory: Path, keep: int = 3, *, mode: Mode = "thread", fsync: bool = True) -> None:
        if mode not in ("thread", "process"):
            raise ValueError(f"mode must be 'thread' or 'process', got {mode!r}")
        super().__init__(directory, keep, fsync)
        self.mode = mode
        self._snap = _Snapshotter(shared=mode == "process")
        self._pending: Future[tuple[float, int]] | None = None
        self._pending_stats: SaveStats | None = None
        self._closed = False
        self._writer: _ThreadWriter | _ProcessWriter = (
            _ThreadWriter() if mode == "thread" else _ProcessWriter(self._snap)
        )

    def save(self, step: int, state: dict[str, Any]) -> None:
        if self._closed:
            raise RuntimeError("checkpointer is closed")
        stats = SaveStats(step)
        t0 = time.perf_counter()
        self._drain()  # at most one write in flight; raises the previous write's error
        t1 = time.perf_counter()
        tree, event = self._snap.snapshot(state)
        stats.wait_s, stats.snapshot_s = t1 - t0, time.perf_counter() - t1
        self.tally.saves.append(stats)
        self._pending_stats = stats
        self._pending = self._writer.submit(self.directory, step, tree, event, self.keep, self.fsync)

    def _drain(self) -> None:
        pending, stats = self._pending, self._pending_stats
        if pending is None:
            return
        self._pending, self._pending_stats = None, None
        try:
            write_s, size = pending.result()
        except Exception as exc:
            step = stats.step if stats else "?"
            raise CheckpointWriteError(f"writing the checkpoint of step {step} failed: {exc}") from exc
        if stats is not None:
            stats.write_s, stats.bytes = write_s, size

    def wait(self) -> None:
        t0 = time.perf_counter()
        try:
            self._drain()
        finally:
            self.tally.wait_s += time.perf_counter() - t0

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.wait()
        finally:
            self._closed = True
            self._writer.close()


class _ThreadWriter:
    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-writer")

    def submit(
        self, directory: Path, step: int, tree: Any, event: Any, keep: int, fsync: bool
    ) -> Future[tuple[float, int]]:
        return self._pool.submit(_timed_write, directory, step, tree, event, keep, fsync)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _timed_write(
    directory: Path, step: int, tree: Any, event: Any, keep: int, fsync: bool
) -> tuple[float, int]:
    t0 = time.perf_counter()
    if event is not None:
        event.synchronize()  # the D2H copies into the pinned buffers have landed
    size = write_checkpoint(directory, step, tree, keep, fsync=fsync)
    return time.perf_counter() - t0, size


# --- the process writer ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _BufferRef:
    """Stands in for a shared-memory buffer the writer process already holds (sent once, reused)."""

    index: int


def _map_leaves(obj: Any, fn: Callable[[Any], Any]) -> Any:
    """``obj`` with ``fn`` applied to every leaf of its dict / list / tuple tree (dict types kept)."""
    if isinstance(obj, dict):
        out = copy.copy(obj)
        for k, v in obj.items():
            out[k] = _map_leaves(v, fn)
        return out
    if type(obj) in (list, tuple):
        return type(obj)(_map_leaves(v, fn) for v in obj)
    return fn(obj)


def _replace_buffers(obj: Any, ids: dict[int, int]) -> Any:
    return _map_leaves(obj, lambda x: _BufferRef(ids[id(x)]) if isinstance(x, torch.Tensor) else x)


def _resolve_buffers(obj: Any, buffers: dict[int, torch.Tensor]) -> Any:
    return _map_leaves(obj, lambda x: buffers[x.index] if isinstance(x, _BufferRef) else x)


def _process_main(requests: Any, replies: Any) -> None:
    """Writer process loop: (new buffers, directory, step, tree, keep, fsync) in → ("ok"|"error", …) out."""
    buffers: dict[int, torch.Tensor] = {}
    while True:
        msg = requests.get()
        if msg is None:
            return
        new, directory, step, tree, keep, fsync = msg
        try:
            buffers.update(new)
            t0 = time.perf_counter()
            size = write_checkpoint(directory, step, _resolve_buffers(tree, buffers), keep, fsync=fsync)
            replies.put(("ok", time.perf_counter() - t0, size))
        except Exception as exc:
            replies.put(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))


class _ProcessWriter:
    """One spawned writer process (spawn, not fork: forking a process with CUDA or torch threads is unsafe).
    The snapshot buffers live in shared memory; each is sent once, later saves send only the tree with
    ``_BufferRef`` placeholders."""

    def __init__(self, snap: _Snapshotter) -> None:
        import torch.multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._snap = snap
        self._ids: dict[int, int] = {}  # id(buffer) → index known to the writer
        self._requests = ctx.Queue()
        self._replies = ctx.Queue()
        self._proc = ctx.Process(target=_process_main, args=(self._requests, self._replies), daemon=True)
        self._proc.start()
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-reply")

    def submit(
        self, directory: Path, step: int, tree: Any, event: Any, keep: int, fsync: bool
    ) -> Future[tuple[float, int]]:
        if event is not None:
            event.synchronize()  # shared buffers are pageable: the copies were synchronous anyway
        new: dict[int, torch.Tensor] = {}
        for full in self._snap.new_keys:
            buf = self._snap.buffers[full]
            if id(buf) not in self._ids:
                self._ids[id(buf)] = len(self._ids)
                new[self._ids[id(buf)]] = buf
        self._requests.put((new, directory, step, _replace_buffers(tree, self._ids), keep, fsync))
        return self._reader.submit(self._reply)

    def _reply(self) -> tuple[float, int]:
        while True:
            try:
                msg = self._replies.get(timeout=1.0)
            except queue.Empty:
                if not self._proc.is_alive():
                    raise CheckpointWriteError(
                        f"checkpoint writer process died (exit code {self._proc.exitcode})"
                    ) from None
                continue
            if msg[0] == "ok":
                return float(msg[1]), int(msg[2])
            raise CheckpointWriteError(f"{msg[1]}\n--- writer process traceback ---\n{msg[2]}")

    def close(self) -> None:
        self._reader.shutdown(wait=True)
        if self._proc.is_alive():
            self._requests.put(None)
            self._proc.join(timeout=30)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join()
        self._requests.close()
        self._replies.close()
