"""How requests become forward passes: encoding, grouping, batching, reading scored positions.

Backends that run a model in-process (hf) expose a small `TokenModel`; everything about batching
lives here, so a faster scheduler replaces this package without touching tasks or backends.
"""

from lmgauge.engine.generate import generate_until
from lmgauge.engine.loglikelihood import score_loglikelihood, score_rolling
from lmgauge.engine.protocol import TokenModel

__all__ = ["TokenModel", "score_loglikelihood", "score_rolling", "generate_until"]
