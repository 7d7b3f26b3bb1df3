"""training.checkpoint: snapshots are taken at save() time, files are complete and pruned, writer errors
surface, nothing half-written is left behind — for the sync writer and both async writers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from training.checkpoint import (
    AsyncCheckpointer,
    CheckpointWriteError,
    SyncCheckpointer,
    checkpoint_path,
    latest,
    list_checkpoints,
    load,
    write_checkpoint,
)

Factory = Callable[[Path], SyncCheckpointer | AsyncCheckpointer]
FACTORIES: dict[str, Factory] = {
    "sync": lambda d: SyncCheckpointer(d, keep=2, fsync=False),
    "thread": lambda d: AsyncCheckpointer(d, keep=2, mode="thread", fsync=False),
    "process": lambda d: AsyncCheckpointer(d, keep=2, mode="process", fsync=False),
}


@pytest.fixture(params=list(FACTORIES))
def make(request: pytest.FixtureRequest) -> Iterator[Factory]:
    made: list[SyncCheckpointer | AsyncCheckpointer] = []

    def factory(directory: Path) -> SyncCheckpointer | AsyncCheckpointer:
        made.append(FACTORIES[request.param](directory))
        return made[-1]

    yield factory
    for ckpt in made:
        ckpt.__exit__(RuntimeError, None, None)  # close without raising


def train_state(model: nn.Module, opt: torch.optim.Optimizer, step: int) -> dict:
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "note": ["a", 1]}


def one_step(model: nn.Module, opt: torch.optim.Optimizer) -> None:
    opt.zero_grad()
    model(torch.randn(8, 16)).square().mean().backward()
    opt.step()


def test_snapshot_is_the_state_at_save_time_even_if_params_change_right_after(
    make: Factory, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    one_step(model, opt)  # optimizer state exists
    ckpt = make(tmp_path)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    exp_avg = opt.state[model[0].weight]["exp_avg"].clone()
    ckpt.save(1, train_state(model, opt, 1))
    with torch.no_grad():  # in place, immediately, while the write may still be running
        for p in model.parameters():
            p.add_(100.0)
    one_step(model, opt)
    ckpt.wait()
    got = load(checkpoint_path(tmp_path, 1))
    assert got["step"] == 1
    assert got["note"] == ["a", 1]
    for k, v in expected.items():
        torch.testing.assert_close(got["model"][k], v, rtol=0, atol=0)
    torch.testing.assert_close(got["optimizer"]["state"][0]["exp_avg"], exp_avg, rtol=0, atol=0)
    restored = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    restored.load_state_dict(got["model"])
    opt2 = torch.optim.AdamW(restored.parameters(), lr=0.1)
    opt2.load_state_dict(got["optimizer"])  # a loadable optimizer state, not just tensors


def test_files_are_complete_pruned_and_no_tmp_is_left(make: Factory, tmp_path: Path) -> None:
    (tmp_path / "step_0000099.pt.tmp").write_bytes(b"half a file from a crashed run")
    ckpt = make(tmp_path)
    assert not list(tmp_path.glob("*.tmp"))  # stale temporaries removed on open
    weights = torch.arange(10_000, dtype=torch.float32)
    for step in (5, 10, 15, 20):
        weights += 1  # in place, between saves: the buffers are reused, each snapshot must still differ
        ckpt.save(step, {"w": weights, "step": step})
    ckpt.close()
    assert [s for s, _ in list_checkpoints(tmp_path)] == [15, 20]
    assert latest(tmp_path) == checkpoint_path(tmp_path, 20)
    assert not list(tmp_path.glob("*.tmp"))
    for step, path in list_checkpoints(tmp_path):
        doc = load(path)
        assert doc["step"] == step
        torch.testing.assert_close(doc["w"], torch.arange(10_000, dtype=torch.float32) + step // 5)
    assert [s.step for s in ckpt.stats] == [5, 10, 15, 20]
    assert all(s.bytes and s.bytes > 40_000 for s in ckpt.stats)
    assert all(s.write_s is not None and s.write_s > 0 for s in ckpt.stats)
    assert ckpt.tally.stall_s >= 0


def test_tied_weights_stay_one_tensor(make: Factory, tmp_path: Path) -> None:
    emb = torch.randn(5, 3)
    with make(tmp_path) as ckpt:
        ckpt.save(1, {"in": emb, "out": emb})
    got = load(checkpoint_path(tmp_path, 1))
    assert got["in"].untyped_storage().data_ptr() == got["out"].untyped_storage().data_ptr()


def test_a_failing_write_surfaces_on_the_next_call(make: Factory, tmp_path: Path) -> None:
    ckpt = make(tmp_path)
    (tmp_path / "step_0000001.pt.tmp").mkdir()  # the writer cannot open its temporary file
    if isinstance(ckpt, SyncCheckpointer):
        with pytest.raises(IsADirectoryError):
            ckpt.save(1, {"w": torch.ones(3)})
    else:
        ckpt.save(1, {"w": torch.ones(3)})  # returns at once; the error is the writer's
        with pytest.raises(CheckpointWriteError, match="step 1"):
            ckpt.wait()
        ckpt.save(1, {"w": torch.ones(3)})
        with pytest.raises(CheckpointWriteError, match=r"IsADirectoryError|Is a directory"):
            ckpt.save(2, {"w": torch.ones(3)})  # the next save raises the previous write's error …
        ckpt.wait()  # … once, and saves nothing itself: a call that raised did not happen
        assert latest(tmp_path) is None
        ckpt.save(2, {"w": torch.ones(3)})
        ckpt.wait()
        assert latest(tmp_path) == checkpoint_path(tmp_path, 2)
    assert not checkpoint_path(tmp_path, 1).exists()


def test_at_most_one_write_in_flight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from training import checkpoint as mod

    running, peak, lock = [0], [0], threading.Lock()
    real = mod.write_checkpoint

    def slow_write(*args: object, **kw: object) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        threading.Event().wait(0.2)
        try:
            return real(*args, **kw)  # type: ignore[arg-type]
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(mod, "write_checkpoint", slow_write)
    with AsyncCheckpointer(tmp_path, keep=5, mode="thread", fsync=False) as ckpt:
        for step in range(3):
            ckpt.save(step, {"w": torch.ones(4)})
    assert peak[0] == 1
    assert ckpt.stats[1].wait_s > 0.1  # the second save waited for the first write: counted as stall
    assert len(list_checkpoints(tmp_path)) == 3


def test_bad_arguments_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep"):
        AsyncCheckpointer(tmp_path, keep=0)
    with pytest.raises(ValueError, match="mode"):
        AsyncCheckpointer(tmp_path, mode="fork")  # type: ignore[arg-type]
    ckpt = AsyncCheckpointer(tmp_path, mode="thread")
    ckpt.close()
    with pytest.raises(RuntimeError, match="closed"):
        ckpt.save(1, {})
    assert latest(tmp_path / "missing") is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mode", ["thread", "process"])
def test_cuda_snapshot_is_taken_before_the_next_kernels(tmp_path: Path, mode: str) -> None:
    w = torch.randn(4096, 4096, device="cuda")
    expected = w.cpu()
    with AsyncCheckpointer(tmp_path, keep=1, mode=mode, fsync=False) as ckpt:  # type: ignore[arg-type]
        ckpt.save(1, {"w": w})
        w.mul_(2)  # queued after the non-blocking copy on the same stream
    torch.testing.assert_close(load(checkpoint_path(tmp_path, 1))["w"], expected, rtol=0, atol=0)


def test_pruning_never_removes_the_checkpoint_just_written(tmp_path: Path) -> None:
    """A directory still holding newer steps of an earlier run: writing step 1 keeps step 1."""
    for step in (4, 5):
        write_checkpoint(tmp_path, step, {"step": step}, keep=2)
    size = write_checkpoint(tmp_path, 1, {"step": 1}, keep=2)
    assert size > 0
    assert (tmp_path / "step_0000001.pt").is_file()
