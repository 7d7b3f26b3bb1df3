"""The shared-tower encoder: pooling, normalisation, truncation/freezing, the decoder path, save/load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.retrieval.model import DualEncoder, EncoderConfig, layer_stack, mean_pool

TEXTS = ["offshore wind turbines and grid storage", "hiring a senior data engineer", "a"]


@pytest.fixture(scope="module")
def minilm_2layer() -> DualEncoder:
    return DualEncoder(EncoderConfig(num_layers=2, max_len_member=32, max_len_post=16, special_tokens=False))


def test_mean_pool_ignores_padding() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # (1, 3, 2); last position is a pad
    mask = torch.tensor([[1, 1, 0]])
    assert torch.equal(mean_pool(hidden, mask), torch.tensor([[2.0, 3.0]]))


def test_encode_is_normalised_and_padding_invariant(minilm_2layer: DualEncoder) -> None:
    enc = minilm_2layer.eval()
    batch = enc.encode(TEXTS, "member")
    assert batch.shape == (3, 384)
    torch.testing.assert_close(batch.norm(dim=-1), torch.ones(3))
    alone = enc.encode([TEXTS[2]], "member")  # no padding at all
    torch.testing.assert_close(batch[2:], alone, atol=1e-5, rtol=1e-5)


def test_side_budgets_truncate(minilm_2layer: DualEncoder) -> None:
    long = " ".join(["solar"] * 200)
    assert minilm_2layer.tokenize([long], "member")["input_ids"].shape[1] == 32
    assert minilm_2layer.tokenize([long], "post")["input_ids"].shape[1] == 16
    with pytest.raises(AssertionError, match="side"):
        minilm_2layer.tokenize([long], "author")  # type: ignore[arg-type]


def test_embed_batches_match_one_batch(minilm_2layer: DualEncoder) -> None:
    minilm_2layer.eval()
    torch.testing.assert_close(
        minilm_2layer.embed(TEXTS, "post", batch_size=2),
        minilm_2layer.embed(TEXTS, "post", batch_size=64),
        atol=1e-5,
        rtol=1e-5,
    )


def test_truncate_and_freeze_stop_backward_at_the_frozen_part() -> None:
    enc = DualEncoder(EncoderConfig(num_layers=3, freeze_layers=2, max_len_member=16, special_tokens=False))
    stack = layer_stack(enc.backbone)
    assert len(stack) == 3
    assert enc.backbone.config.num_hidden_layers == 3
    enc.encode(TEXTS, "member").sum().backward()
    assert all(p.grad is None for p in enc.backbone.embeddings.parameters())
    assert all(p.grad is None for p in stack[:2].parameters())
    assert all(p.grad is not None for p in stack[2].parameters())


def test_decoder_backbone_gets_pad_token_and_right_padding(tiny_decoder_path: Path) -> None:
    cfg = EncoderConfig(backbone=str(tiny_decoder_path), max_len_member=24, special_tokens=False)
    enc = DualEncoder(cfg).eval()
    assert type(enc.backbone).__name__ == "LlamaModel"
    assert enc.tokenizer.pad_token is not None
    assert enc.backbone.get_input_embeddings().num_embeddings >= len(enc.tokenizer)
    out = enc.encode(TEXTS, "member")
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3))
    # causal attention + right padding: the short text's embedding does not depend on its batch's pads
    torch.testing.assert_close(out[2:], enc.encode([TEXTS[2]], "member"), atol=1e-5, rtol=1e-5)


def test_decoder_truncates(tiny_decoder_path: Path) -> None:
    enc = DualEncoder(EncoderConfig(backbone=str(tiny_decoder_path), num_layers=1, special_tokens=False))
    assert len(layer_stack(enc.backbone)) == 1
    assert enc.encode(["x y z"], "post").shape == (1, 32)


def test_save_load_round_trip(minilm_2layer: DualEncoder, tmp_path: Path) -> None:
    minilm_2layer.eval()
    minilm_2layer.save(tmp_path / "v1", extra={"version": "v1"})
    loaded = DualEncoder.load(tmp_path / "v1").eval()
    assert len(layer_stack(loaded.backbone)) == 2  # the truncation is baked into the saved weights
    torch.testing.assert_close(loaded.embed(TEXTS, "member"), minilm_2layer.embed(TEXTS, "member"))


def test_missing_backbone_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a local Hugging Face checkpoint"):
        DualEncoder(EncoderConfig(backbone=str(tmp_path / "nope")))
    with pytest.raises(FileNotFoundError, match="not a saved retrieval model"):
        DualEncoder.load(tmp_path)


def test_percentile_tags_are_single_tokens_after_resize() -> None:
    prompts = pytest.importorskip("training.prompts")
    enc = DualEncoder(EncoderConfig(num_layers=1, special_tokens=True))
    assert enc.backbone.get_input_embeddings().num_embeddings == len(enc.tokenizer)
    for tag in prompts.SPECIAL_TOKENS:
        assert len(enc.tokenizer.tokenize(tag)) == 1, tag
    ids = enc.tokenizer("<view_percentile>71</view_percentile>", add_special_tokens=False)["input_ids"]
    assert len(ids) == 3  # open tag, the number, close tag
