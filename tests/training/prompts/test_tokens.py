"""Percentile tags are single special tokens and every bucket value stays one token."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from training.prompts import SPECIAL_TOKENS, STATS, add_special_tokens, percentile_tag, split_numbers


def test_special_tokens_cover_every_stat() -> None:
    assert len(SPECIAL_TOKENS) == 2 * len(STATS) == len(set(SPECIAL_TOKENS))
    assert "<view_percentile>" in SPECIAL_TOKENS
    assert "</follower_percentile>" in SPECIAL_TOKENS
    assert percentile_tag("like", 7) == "<like_percentile>7</like_percentile>"
    with pytest.raises(ValueError, match="unknown stat"):
        percentile_tag("clicks", 7)


def test_without_our_tokens_a_tag_is_many_pieces(raw_tokenizer: Any) -> None:
    # the reason add_special_tokens exists: the plain vocabulary shreds the tag
    assert len(raw_tokenizer.tokenize("<view_percentile>")) > 1


def test_tags_are_single_special_tokens(tokenizer: Any) -> None:
    special = set(tokenizer.all_special_tokens)
    for tag in SPECIAL_TOKENS:
        assert tag in special
        assert tokenizer.tokenize(tag) == [tag]
        assert tokenizer.convert_tokens_to_ids(tag) != tokenizer.unk_token_id
    # the uncased normaliser must not touch them, even next to other text
    assert tokenizer.tokenize("Views<view_percentile>") == ["views", "<view_percentile>"]


def test_every_percentile_is_one_token_inside_every_tag(tokenizer: Any) -> None:
    for stat in STATS:
        for n in range(1, 101):
            pieces = tokenizer.tokenize(percentile_tag(stat, n))
            assert pieces == [f"<{stat}_percentile>", str(n), f"</{stat}_percentile>"], (stat, n, pieces)
            assert tokenizer.convert_tokens_to_ids(str(n)) != tokenizer.unk_token_id
    assert split_numbers(tokenizer) == []


def test_minilm_needs_no_number_tokens(raw_tokenizer: Any) -> None:
    before = len(raw_tokenizer)
    added = add_special_tokens(raw_tokenizer)
    assert added == len(SPECIAL_TOKENS)  # BERT's vocabulary has 1..100 as whole words already
    assert len(raw_tokenizer) == before + len(SPECIAL_TOKENS)


def test_add_special_tokens_is_idempotent(tokenizer: Any) -> None:
    size = len(tokenizer)
    assert add_special_tokens(tokenizer) == 0
    assert len(tokenizer) == size


def test_other_special_tokens_survive(raw_tokenizer: Any) -> None:
    raw_tokenizer.add_special_tokens(
        {"extra_special_tokens": ["<keep_me>"]}, replace_extra_special_tokens=False
    )
    add_special_tokens(raw_tokenizer)
    assert "<keep_me>" in raw_tokenizer.all_special_tokens
    assert "[CLS]" in raw_tokenizer.all_special_tokens


def _tiny_bert(vocab_size: int) -> Any:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=64,
    )
    return BertModel(config).eval()


def test_model_embeddings_are_resized(raw_tokenizer: Any) -> None:
    model = _tiny_bert(len(raw_tokenizer))
    old = model.get_input_embeddings().weight.detach().clone()
    add_special_tokens(raw_tokenizer, model)
    weight = model.get_input_embeddings().weight
    assert weight.shape == (len(raw_tokenizer), 8)
    assert torch.equal(weight[: old.shape[0]], old)  # existing rows untouched
    assert model.config.vocab_size == len(raw_tokenizer)
    # the model runs on a prompt holding the new ids
    batch = raw_tokenizer(["stats: <view_percentile>71</view_percentile>"], return_tensors="pt")
    assert int(batch["input_ids"].max()) >= old.shape[0]
    with torch.no_grad():
        out = model(**batch).last_hidden_state
    assert torch.isfinite(out).all()
    # a second call with the model changes nothing
    assert add_special_tokens(raw_tokenizer, model) == 0
    assert model.get_input_embeddings().weight.shape[0] == len(raw_tokenizer)


def _digit_tokenizer() -> Any:
    """A WordPiece tokenizer whose vocabulary has single characters only: it splits "71" into "7", "##1"
    (as sentencepiece LLM tokenizers split digits)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "[PAD]": 3}
    for ch in "abcdefghijklmnopqrstuvwxyz0123456789<>/_:":
        vocab[ch] = len(vocab)
        vocab["##" + ch] = len(vocab)
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]"
    )


def test_split_numbers_are_added_as_whole_word_tokens() -> None:
    tok = _digit_tokenizer()
    assert tok.tokenize("71") == ["7", "##1"]
    model = _tiny_bert(len(tok))
    added = add_special_tokens(tok, model)
    assert added == len(SPECIAL_TOKENS) + 91  # 1..9 are single characters already; 10..100 are not
    assert split_numbers(tok) == []
    assert tok.tokenize(percentile_tag("share", 71)) == ["<share_percentile>", "71", "</share_percentile>"]
    assert tok.tokenize("views:71") == ["v", "##i", "##e", "##w", "##s", ":", "71"]
    # single_word: a number inside a longer number is left to the vocabulary, not cut into added tokens
    assert "71" not in tok.tokenize("1971")
    assert model.get_input_embeddings().weight.shape[0] == len(tok)
