"""Attention and metric ops: a PyTorch reference and a Triton kernel per op behind one public function.
Imports torch (and triton, inside the Triton path) only."""

from kernels.common import Kernel
from kernels.jagged_attention import cached_candidate_attention, check_layout, jagged_attention
from kernels.multilabel_auc import multilabel_auc

__all__ = ["Kernel", "cached_candidate_attention", "check_layout", "jagged_attention", "multilabel_auc"]
