"""Data sets for demos and benchmarks: the Complete Journey federation and synthetic scale data."""

from loyalfed.datasets.complete_journey import build_complete_journey_federation
from loyalfed.datasets.synthetic import SynthConfig, SynthResult, generate_synthetic_federation

__all__ = ["SynthConfig", "SynthResult", "build_complete_journey_federation", "generate_synthetic_federation"]
