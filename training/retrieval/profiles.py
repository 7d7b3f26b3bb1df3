"""Frozen training profiles for ``feed train retrieval --profile tiny|cpu|gpu``.

Each preset reproduces one documented run (docs/retrieval.md has the measured throughput behind the CPU one):

- ``tiny``: tests and smoke runs — MiniLM cut to its first 2 layers, 24-token prompts, seconds on 2 cores.
- ``cpu``:  a meaningful run in well under an hour on 2 cores — MiniLM cut to 4 layers with the lower 2 (and
            the embeddings) frozen, 128-token members / 64-token posts. Measured on this machine:
            the full 6-layer model at 128/128 trains at ≈4.8 examples/s, this preset at ≈20 examples/s (one
            example = 1 member + 3 post prompts), so 1,000 steps × 16 take ≈14 min on a quiet machine.
- ``gpu``:  the full backbone, bf16 autocast, long prompts, batch 64 × 4 accumulation steps.

The configs are frozen dataclasses; a run overrides a field with ``dataclasses.replace`` (the CLI does that
for ``--steps`` / ``--backbone``), never by mutation.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from training.retrieval.model import EncoderConfig
from training.retrieval.train import TrainConfig


@dataclass(frozen=True)
class Profile:
    encoder: EncoderConfig
    train: TrainConfig
    description: str


PROFILES: MappingProxyType[str, Profile] = MappingProxyType(
    {
        "tiny": Profile(
            encoder=EncoderConfig(max_len_member=24, max_len_post=24, num_layers=2, freeze_layers=0),
            train=TrainConfig(
                steps=20,
                batch_size=16,
                grad_accum=1,
                lr=2e-4,  # high: 20 steps must visibly move a 2-layer stack
                warmup_steps=3,
                temperature=0.05,
                n_hard=1,
                n_easy=1,
                checkpoint_every=0,
                seed=0,
            ),
            description="test-size: 2-layer MiniLM, 24 tokens, 20 steps (seconds)",
        ),
        "cpu": Profile(
            encoder=EncoderConfig(max_len_member=128, max_len_post=64, num_layers=4, freeze_layers=2),
            train=TrainConfig(
                steps=1000,  # 16k examples: ≈ 14 min at 20 examples/s (≈ 40 min if the cores are shared)
                batch_size=16,
                grad_accum=1,
                lr=5e-5,
                warmup_steps=30,
                temperature=0.05,
                n_hard=1,
                n_easy=1,
                checkpoint_every=200,
                seed=0,
            ),
            description="2 CPU cores, < 1 h: MiniLM truncated to 4 layers, lower 2 frozen, 128/64 tokens",
        ),
        "gpu": Profile(
            encoder=EncoderConfig(max_len_member=512, max_len_post=128),
            train=TrainConfig(
                steps=2000,
                batch_size=64,
                grad_accum=4,  # 256 examples per optimizer step; in-batch negatives stay per micro-batch
                lr=3e-5,
                warmup_steps=100,
                temperature=0.05,
                n_hard=2,
                n_easy=2,
                bf16=True,
                checkpoint_every=250,
                seed=0,
            ),
            description="one GPU (or torchrun DDP): full backbone, bf16, 512/128 tokens, 64×4 batch",
        ),
    }
)


def get_profile(name: str) -> Profile:
    """The preset called ``name``; unknown names get an error listing the choices."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown retrieval profile {name!r}; choose one of {sorted(PROFILES)}") from None
