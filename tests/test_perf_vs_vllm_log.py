"""benchmarks/perf_vs_vllm.py reads llama-cpp-python's verbose log: prompt and output tokens per completion."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "perf_vs_vllm.py"
spec = importlib.util.spec_from_file_location("perf_vs_vllm", SCRIPT)
perf_vs_vllm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(perf_vs_vllm)

# two completions as llama-cpp-python 0.3.36 logs them: a fresh 128-token prompt with 32 tokens out,
# then the same prompt again (cached but for its last token, which llama.cpp counts as a decode run)
LOG = """\
llama_perf_context_print:        load time =    1367.35 ms
llama_perf_context_print: prompt eval time =    2178.43 ms /   128 tokens (   17.02 ms per token,    58.76 tokens per second)
llama_perf_context_print:        eval time =     883.10 ms /    31 runs   (   28.49 ms per token,    35.10 tokens per second)
llama_perf_context_print:       total time =    3100.00 ms /   159 tokens
INFO:     127.0.0.1:55944 - "POST /v1/completions HTTP/1.1" 200 OK
Llama.generate: 127 prefix-match hit, remaining 1 prompt tokens to eval
llama_perf_context_print:        load time =    1367.35 ms
llama_perf_context_print: prompt eval time =       0.00 ms /     1 tokens (    0.00 ms per token,      inf tokens per second)
llama_perf_context_print:        eval time =     911.00 ms /    32 runs   (   28.47 ms per token,    35.13 tokens per second)
llama_perf_context_print:       total time =    1064.73 ms /    33 tokens
Llama.generate: 100 prefix-match hit, remaining 28 prompt tokens to eval
llama_perf_context_print: prompt eval time =     500.00 ms /    28 tokens (   17.02 ms per token,    58.76 tokens per second)
llama_perf_context_print:        eval time =     300.00 ms /     9 runs   (   28.49 ms per token,    35.10 tokens per second)
"""


def test_counts_per_completion_with_prefix_cache_hits():
    c = perf_vs_vllm.llamacpp_counts(LOG)
    assert c == {"completions": 3, "prompt_tokens": [128, 128, 128], "output_tokens": [32, 32, 10]}
