"""Data-quality gate: Great Expectations suites that every published Delta table must pass.

GX itself is imported lazily inside the functions that run it (its import costs ~3 s).
"""

from pipelines.quality.gate import (
    GateResult,
    QuarantinedBatch,
    gate_and_publish,
    list_quarantined,
    validate_published,
)
from pipelines.quality.suites import GateConfig

__all__ = [
    "GateConfig",
    "GateResult",
    "QuarantinedBatch",
    "gate_and_publish",
    "list_quarantined",
    "validate_published",
]
