"""``feed train retrieval``: fine-tune the dual encoder with a frozen profile (tiny / cpu / gpu).

The examples come from a JSONL file of RetrievalExample dicts (member_text, positive_text,
hard_negative_texts, easy_negative_texts) until the training-set → prompts step is wired in. Under
``torchrun`` every rank runs this command; only rank 0 writes.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer


def train_retrieval(
    ctx: typer.Context,
    profile: Annotated[str, typer.Option(help="Preset: tiny (seconds), cpu (< 1 h on 2 cores), gpu")] = "cpu",
    examples: Annotated[
        Path | None, typer.Option(help="JSONL of RetrievalExample dicts (one per line)", dir_okay=False)
    ] = None,
    version: Annotated[
        str | None, typer.Option(help="Model version folder under artifacts/retrieval/ [default: time]")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Override the profile's optimizer steps", min=1)] = None,
    backbone: Annotated[
        str | None, typer.Option(help="Local Hugging Face checkpoint folder [default: shipped MiniLM]")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the version's last checkpoint")] = False,
) -> None:
    """Train a retrieval model version; it is NOT promoted (CURRENT changes only after the quality gate)."""
    import dataclasses
    import logging

    from training.retrieval.profiles import get_profile
    from training.retrieval.train import ExampleError, load_examples, train

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if examples is None:
        print("error: pass --examples PATH (a JSONL of RetrievalExample dicts)")
        raise typer.Exit(code=2)
    try:
        preset = get_profile(profile)
        rows, skipped = load_examples(examples)
    except (ValueError, ExampleError, OSError) as exc:
        print(f"error: {exc}")
        raise typer.Exit(code=2) from exc
    if sum(skipped.values()):
        print("skipped examples: " + ", ".join(f"{k}={v}" for k, v in skipped.items() if v))
    enc_cfg = preset.encoder if backbone is None else dataclasses.replace(preset.encoder, backbone=backbone)
    train_cfg = preset.train if steps is None else dataclasses.replace(preset.train, steps=steps)
    name = version or dt.datetime.now(dt.UTC).strftime("v%Y%m%d-%H%M%S")
    out_dir = ctx.obj.paths().artifacts / "retrieval" / name
    try:
        result = train(rows, enc_cfg, train_cfg, out_dir, resume=resume)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}")
        raise typer.Exit(code=2) from exc
    print(
        f"retrieval {name}: {result.step} steps on {len(rows):,} examples, loss {result.first_loss:.4f} → "
        f"{result.final_loss:.4f}, {result.examples_per_second:.1f} examples/s, {result.seconds:.0f} s"
    )
    print(f"wrote {out_dir} (not promoted)")
