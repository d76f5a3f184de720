"""lmgauge: measure language models — benchmark accuracy, perplexity and speed."""

__version__ = "0.1.0"
