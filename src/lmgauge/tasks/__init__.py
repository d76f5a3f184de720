"""Benchmark definitions. Importing this package registers the built-in tasks."""

# each module registers its tasks when imported; the names are not used here, hence the noqa
from lmgauge.tasks import (  # noqa: F401
    arc,
    boolq,
    ceval,
    cmmlu,
    code,
    gsm8k,
    hellaswag,
    lambada,
    mmlu,
    piqa,
    text_ppl,
    triviaqa,
    winogrande,
)
from lmgauge.tasks.registry import REGISTRY, build, expand

__all__ = ["REGISTRY", "build", "expand"]
