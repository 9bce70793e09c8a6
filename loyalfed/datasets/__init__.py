"""Data sets for demos and benchmarks: the Complete Journey federation and synthetic scale data."""

from loyalfed.datasets.complete_journey import build_complete_journey_federation

__all__ = ["build_complete_journey_federation"]
