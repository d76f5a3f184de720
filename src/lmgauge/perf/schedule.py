"""When each request of an open-loop benchmark arrives: `vllm bench serve`'s schedule.

Gaps between arrivals are gamma-distributed with shape = burstiness and scale = 1 / (rate x burstiness)
(mean 1/rate; burstiness 1 is a Poisson process, below 1 burstier, above 1 more regular, `inf` a
fixed gap). As vLLM does for a fixed number of requests, the cumulative times are then rescaled so
the last arrival falls at exactly N / rate (throughput figures from different seeds stay comparable).
Rate `inf`: every request at 0. The same seed gives the same schedule.
"""

from __future__ import annotations

import math

import numpy as np


def arrival_times(n: int, rate: float, burstiness: float = 1.0, seed: int = 0, rescale: bool = True) -> list[float]:
    """Seconds after the start at which requests 0..n-1 arrive."""
    if n < 1:
        return []
    if not rate > 0:
        raise ValueError(f"--request-rate must be positive (or inf), got {rate}")
    if not burstiness > 0:
        raise ValueError(f"--burstiness must be positive, got {burstiness}")
    if math.isinf(rate):
        return [0.0] * n
    if math.isinf(burstiness):
        gaps = np.full(n, 1.0 / rate)
    else:
        rng = np.random.default_rng(seed)
        gaps = rng.gamma(shape=burstiness, scale=1.0 / (rate * burstiness), size=n)
    times = np.cumsum(gaps)
    if rescale and times[-1] > 0:
        times = times * (n / rate) / times[-1]
    return [float(t) for t in times]
