"""Compression-aware evaluation: a model before and after quantization in one run (docs/compression.md)."""
