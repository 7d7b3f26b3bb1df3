"""MovieLens under the HSTU protocol (training/ranking/sequential.py, sasrec.py): readers of the real formats,
the leave-one-out split, full ranking with the history excluded, hand-computed metrics, and a short training
run beating popularity where the next item is predictable."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from training.ranking.sasrec import SASRec, SASRecConfig
from training.ranking.sequential import (
    GRNextItem,
    SASRecJagged,
    Sequences,
    SequentialConfig,
    build_sequences,
    hit_and_ndcg,
    rank_users,
    read_ratings,
    run_movielens,
    run_sequences,
    sampled_softmax_loss,
    target_ranks,
    train_windows,
)

# (user, item, rating, ts): user 7 has a timestamp tie (items 30 and 10 at t=200 → 10 first); user 9 has two
# ratings only (dropped: no train/validation/test split); rows are deliberately out of order.
RATINGS = [
    (7, 30, 4.0, 200),
    (7, 20, 3.0, 100),
    (7, 10, 5.0, 200),
    (7, 50, 2.0, 400),
    (7, 40, 1.0, 300),
    (5, 10, 4.0, 50),
    (5, 60, 4.0, 70),
    (5, 20, 3.0, 60),
    (9, 10, 5.0, 10),
    (9, 20, 5.0, 20),
]
USER7 = [20, 10, 30, 40, 50]  # chronological, tie broken by item id
USER5 = [10, 20, 60]


def write_atomic(folder: Path) -> Path:
    """RecBole's ML-100K atomic ``.inter`` file (the real file's header and tab layout)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    lines += [f"{u}\t{i}\t{r:g}\t{t}" for u, i, r, t in RATINGS]
    (folder / "ml-100k.inter").write_text("\n".join(lines) + "\n")
    return folder


def write_dat(folder: Path) -> Path:
    """ML-1M's ``ratings.dat``: ``UserID::MovieID::Rating::Timestamp``, no header."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.dat").write_text("".join(f"{u}::{i}::{int(r)}::{t}\n" for u, i, r, t in RATINGS))
    return folder


def raw_sequences(seqs: Sequences) -> dict[int, list[int]]:
    return {
        int(u): seqs.item_ids[seqs.items[seqs.offsets[k] : seqs.offsets[k + 1]]].tolist()
        for k, u in enumerate(seqs.user_ids)
    }


@pytest.mark.parametrize("writer", [write_atomic, write_dat], ids=["ml-100k-atomic", "ml-1m-dat"])
def test_reads_real_formats_into_chronological_sequences(writer, tmp_path: Path) -> None:
    seqs = build_sequences(*read_ratings(writer(tmp_path / "ml")))
    assert raw_sequences(seqs) == {5: USER5, 7: USER7}
    assert seqs.dropped_users == 1
    assert seqs.n_items == 6
    assert seqs.item_ids[0] == -1
    assert sorted(seqs.item_ids[1:].tolist()) == [10, 20, 30, 40, 50, 60]
    assert seqs.stats()["interactions"] == 8


def test_leave_one_out_split_and_train_windows(tmp_path: Path) -> None:
    seqs = build_sequences(*read_ratings(write_atomic(tmp_path / "ml")))
    raw = seqs.item_ids
    # user order: 5, 7. Validation = second-to-last item, test = last item.
    valid = seqs.offsets[1:] - 2
    test = seqs.offsets[1:] - 1
    assert raw[seqs.items[valid]].tolist() == [20, 40]
    assert raw[seqs.items[test]].tolist() == [60, 50]
    # Training windows: inputs are training items but the last; targets the following training item.
    idx, off = train_windows(seqs, np.array([1]), max_len=200)
    assert raw[seqs.items[idx]].tolist() == [20, 10]
    assert raw[seqs.items[idx + 1]].tolist() == [10, 30]  # never reaches 40 (validation) or 50 (test)
    # max_len caps the window at the newest items.
    idx, off = train_windows(seqs, np.array([1]), max_len=1)
    assert raw[seqs.items[idx]].tolist() == [10]
    assert raw[seqs.items[idx + 1]].tolist() == [30]
    # A user with one training item has no next-item target.
    idx, off = train_windows(seqs, np.array([0]), max_len=200)
    assert idx.size == 0
    assert off.tolist() == [0, 0]


def test_target_ranks_and_metrics_by_hand() -> None:
    scores = torch.tensor(
        [
            [float("-inf"), 0.9, 0.1, 0.5, 0.7],  # target 3 (0.5): two items above → rank 2
            [float("-inf"), 0.2, 0.2, 0.9, 0.1],  # target 1 (0.2): item 3 above, item 2 tied → rank 2
            [float("-inf"), 0.3, 0.8, 0.1, 0.2],  # target 2: best → rank 0
        ]
    )
    ranks = target_ranks(scores, torch.tensor([3, 1, 2]))
    assert ranks.tolist() == [2, 2, 0]
    hit, ndcg = hit_and_ndcg(ranks, k=10)
    assert hit.tolist() == [1.0, 1.0, 1.0]
    torch.testing.assert_close(ndcg, torch.tensor([1 / math.log2(4), 1 / math.log2(4), 1.0]))
    hit, ndcg = hit_and_ndcg(ranks, k=2)
    assert hit.tolist() == [0.0, 0.0, 1.0]
    assert ndcg.tolist() == [0.0, 0.0, 1.0]


def test_full_ranking_excludes_the_whole_history(tmp_path: Path) -> None:
    seqs = build_sequences(*read_ratings(write_atomic(tmp_path / "ml")))
    # Scores rise with the raw item id, so without exclusion user 7's test target (50) would sit below 60
    # only; user 5's test target (60) is the best item anyway.
    by_id = torch.tensor([0.0] + [float(r) for r in seqs.item_ids[1:]])
    seen: list[list[int]] = []

    def score(idx: np.ndarray, off: np.ndarray, users: np.ndarray) -> torch.Tensor:
        seen.extend(seqs.item_ids[seqs.items[idx[off[k] : off[k + 1]]]].tolist() for k in range(len(users)))
        return by_id.expand(len(users), -1).clone()

    got = rank_users(seqs, "test", score, max_len=2, batch_users=1)
    assert seen == [[10, 20], [30, 40]]  # the newest max_len items before the test target
    # user 5: 60 is rank 0; user 7: only 60 is above 50 (10–40 are history) → rank 1 → NDCG 1/log2(3)
    assert got["hr_at_10"] == 1.0
    assert got["ndcg_at_10"] == pytest.approx((1.0 + 1 / math.log2(3)) / 2)
    # Validation: user 5's target 20 (10 is history; 30, 40, 50, 60 above → rank 4); user 7's target 40
    # (10, 20, 30 are history; 50 and 60 above → rank 2). The test target is never excluded from validation.
    got = rank_users(seqs, "valid", score, max_len=200, batch_users=8)
    assert got["ndcg_at_10"] == pytest.approx((1 / math.log2(6) + 1 / math.log2(4)) / 2)


def test_sampled_softmax_masks_accidental_hits_and_full_softmax_matches_cross_entropy() -> None:
    torch.manual_seed(0)
    out, table = torch.randn(5, 8), torch.randn(4, 8)
    targets = torch.tensor([1, 2, 3, 1, 2])
    user, items = torch.nn.functional.normalize(out, dim=-1), torch.nn.functional.normalize(table, dim=-1)
    expected = torch.nn.functional.cross_entropy(user @ items[1:].T / 0.5, targets - 1)
    full = sampled_softmax_loss(out, targets, table, negatives=0, temperature=0.5)
    torch.testing.assert_close(full, expected)
    # With every item drawn as a negative many times the loss is the full softmax's (hits masked, duplicates
    # of the other items add log-multiplicity terms only), so it is finite and ≥ the full softmax loss.
    sampled = sampled_softmax_loss(out, targets, table, negatives=64, temperature=0.5)
    assert torch.isfinite(sampled)
    assert sampled >= full


def test_sasrec_jagged_matches_padding_to_max_len() -> None:
    cfg = SequentialConfig(d_model=16, n_heads=2, n_layers=2, max_len=6, dropout=0.0)
    model = SASRecJagged(9, cfg).eval()
    items = torch.tensor([3, 4, 5, 1, 2, 9, 8, 7])
    offsets = torch.tensor([0, 3, 8])
    out = model(items, torch.zeros_like(items), offsets)  # (T, d)
    padded = torch.tensor([[0, 0, 0, 3, 4, 5], [0, 1, 2, 9, 8, 7]])
    ref = model.sasrec(padded)  # (B, max_len, d)
    torch.testing.assert_close(out[:3], ref[0, 3:])
    torch.testing.assert_close(out[3:], ref[1, 1:])


@pytest.mark.parametrize("name", ["gr", "sasrec"])
def test_models_are_causal(name: str) -> None:
    cfg = SequentialConfig(d_model=16, n_heads=2, n_layers=2, max_len=8, dropout=0.0)
    model = (GRNextItem if name == "gr" else SASRecJagged)(9, cfg).eval()
    items = torch.tensor([3, 4, 5, 6, 1, 2])
    ts = torch.tensor([0, 60, 120, 180, 0, 60])
    offsets = torch.tensor([0, 4, 6])
    a = model(items, ts, offsets)
    changed = items.clone()
    changed[3] = 7  # the last item of sequence 0 (same timestamp: recency and age encodings do not move)
    b = model(changed, ts, offsets)
    torch.testing.assert_close(a[:3], b[:3])  # earlier positions never see a later item
    assert not torch.allclose(a[3], b[3])
    torch.testing.assert_close(a[4:], b[4:])  # the other sequence never sees sequence 0


def test_sasrec_padded_window_is_causal() -> None:
    model = SASRec(SASRecConfig(n_items=9, d_model=16, n_heads=2, n_layers=2, max_len=5, dropout=0.0)).eval()
    x = torch.tensor([[0, 3, 4, 5, 6]])
    y = x.clone()
    y[0, 4] = 8
    torch.testing.assert_close(model(x)[0, :4], model(y)[0, :4])
    assert torch.all(model(x)[0, 0] == model.ln_out(torch.zeros(16)))  # the padded slot carries nothing


def cyclic_sequences(n_users: int = 160, n_items: int = 60, seed: int = 0) -> Sequences:
    """Each user walks the item ring from a random start (item t+1 = item t + 1 mod n): the next item is fully
    predictable from the last one, while every item is equally popular."""
    rng = np.random.default_rng(seed)
    users, items, ts = [], [], []
    for u in range(n_users):
        n = int(rng.integers(8, 20))
        start = int(rng.integers(0, n_items))
        users += [u] * n
        items += [(start + t) % n_items + 1 for t in range(n)]
        ts += [1_000_000 + 3600 * t for t in range(n)]
    return build_sequences(np.array(users), np.array(items), np.array(ts))


@pytest.mark.parametrize("name", ["gr", "sasrec"])
def test_short_training_beats_popularity_on_predictable_sequences(name: str) -> None:
    torch.set_num_threads(1)
    seqs = cyclic_sequences()
    cfg = SequentialConfig(
        d_model=32,
        n_heads=2,
        n_layers=1,
        max_len=20,
        dropout=0.0,
        lr=5e-3,
        batch_size=32,
        epochs=12,
        negatives=32,
        eval_every=4,
        device="cpu",
        models=(name,),
    )
    result = run_sequences(seqs, cfg, dataset="toy")
    pop, model = result["models"]["popularity"], result["models"][name]
    assert pop["hr_at_10"] < 0.4  # ≈ 10 / (60 − history) when popularity is flat
    assert model["hr_at_10"] > pop["hr_at_10"] + 0.4
    assert model["ndcg_at_10"] > pop["ndcg_at_10"] + 0.4
    assert model["steps"] == 12 * math.ceil(160 / 32)
    assert result["summary"][f"toy{'' if name == 'gr' else '_sasrec'}_hr_at_10"] == model["hr_at_10"]


def test_run_movielens_end_to_end_on_a_tiny_file(tmp_path: Path) -> None:
    cfg = SequentialConfig(d_model=8, n_heads=1, n_layers=1, max_len=4, epochs=1, device="cpu")
    folder = write_dat(tmp_path / "some-folder")
    (folder / "users.dat").write_text("5::F::1::10::48067\n7::M::56::16::70072\n")
    result = run_movielens(folder, cfg)
    assert result["dataset"] == "ml-1m"  # from the files (ratings.dat + users.dat), not the folder's name
    assert set(result["models"]) == {"popularity", "gr", "sasrec"}
    for name in ("gr", "sasrec"):
        r = result["models"][name]
        keys = {"hr_at_10", "ndcg_at_10", "val_hr_at_10", "val_ndcg_at_10", "steps", "seconds", "params"}
        assert keys <= set(r)
        assert r["steps"] == 1  # one trainable user (user 7), one batch, one epoch
    assert set(result["summary"]) >= {"ml1m_hr_at_10", "ml1m_ndcg_at_10", "ml1m_sasrec_hr_at_10"}
    assert result["config"]["epochs"] == 1
    assert result["data"]["users"] == 2


# --- the command (feed/commands/ranking_eval.py), wired as feed/cli.py wires commands ------------------


def command_app(home: Path, data_dir: Path | None) -> typer.Typer:
    from feed.commands.ranking_eval import eval_movielens
    from feed.config import FeedSettings

    app = typer.Typer()

    @app.callback()
    def root(ctx: typer.Context) -> None:
        ctx.obj = FeedSettings(home=home, data_dir=data_dir)

    app.command("eval-movielens")(eval_movielens)
    return app


TINY = ["--epochs", "1", "--d-model", "8", "--n-heads", "1", "--n-layers", "1", "--device", "cpu"]


def test_command_runs_ml1m_from_feed_data_dir(tmp_path: Path) -> None:
    (tmp_path / "ml-1m" / "users.dat").parent.mkdir()
    (tmp_path / "ml-1m" / "users.dat").write_text("5::F::1::10::48067\n7::M::56::16::70072\n")
    app = command_app(tmp_path, write_dat(tmp_path / "ml-1m"))
    result = CliRunner().invoke(app, ["eval-movielens", *TINY])
    assert result.exit_code == 0, result.output
    assert "ml-1m: 2 users, 6 items, 8 interactions" in result.output
    for name in ("popularity", "gr", "sasrec"):
        assert f"  {name} " in result.output


def test_command_uses_fetched_ml100k_and_refuses_what_it_cannot_get(tmp_path: Path) -> None:
    write_atomic(tmp_path / "data" / "external" / "ml-100k")  # already fetched: no download
    runner = CliRunner()
    result = runner.invoke(command_app(tmp_path, None), ["eval-movielens", *TINY, "--models", "gr"])
    assert result.exit_code == 0, result.output
    assert "ml-100k: 2 users" in result.output
    assert "sasrec" not in result.output.split("ml-100k:")[1].split("published")[0]
    result = runner.invoke(command_app(tmp_path, None), ["eval-movielens", "--dataset", "ml-1m"])
    assert result.exit_code == 2
    assert "FEED_DATA_DIR" in result.output
    ml1m = write_dat(tmp_path / "ml-1m-plain")  # ratings.dat without users.dat reads as ML-10M
    result = runner.invoke(command_app(tmp_path, ml1m), ["eval-movielens", "--dataset", "ml-100k"])
    assert result.exit_code == 2
    assert "not ml-100k" in result.output
