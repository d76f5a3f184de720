"""How fast a model runs: `lmgauge perf`.

In-process (`inprocess`): first-token and per-token latency per (input, output, batch) case, written
as inference SDKs write it. Against a server (`serving`): TTFT / TPOT / ITL / E2EL under a
concurrency or a request rate, with vLLM's metric definitions (`metrics`). docs/perf.md has the
conventions and the files.
"""
