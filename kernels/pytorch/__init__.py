"""PyTorch reference implementations of the ops in ``kernels/``."""
