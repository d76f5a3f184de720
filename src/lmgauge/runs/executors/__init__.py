"""Executors run the jobs of a plan: inline (this process), a local pool of worker processes with
device slots, or Slurm jobs; each registers itself by name (base.py says how to add one)."""

from __future__ import annotations

from lmgauge.runs.executors.base import (
    EXECUTORS,
    ExecutionContext,
    Executor,
    ExecutorOptions,
    Job,
    executor_class,
    lanes,
    register,
)

__all__ = ["EXECUTORS", "ExecutionContext", "Executor", "ExecutorOptions", "Job", "executor_class", "lanes", "register"]
