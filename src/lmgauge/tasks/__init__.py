"""Benchmark definitions. Importing this package registers the built-in tasks."""

from lmgauge.tasks import arc, boolq, hellaswag, lambada, mmlu, piqa, text_ppl, winogrande  # noqa: F401
from lmgauge.tasks.registry import REGISTRY, build, expand

__all__ = ["REGISTRY", "build", "expand"]
