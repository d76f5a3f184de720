"""scripts/servers/serve.py's llama.cpp command: threads pinned for decode and prefill alike."""

from pathlib import Path

from servers import serve


def test_llamacpp_threads_are_half_the_cores_for_decode_and_prefill(monkeypatch):
    for cores, want in ((1, 1), (2, 1), (3, 1), (4, 2), (8, 4), (64, 4)):
        monkeypatch.setattr(serve.os, "sched_getaffinity", lambda _pid, n=cores: set(range(n)))
        cmd = serve.server_command("llamacpp", Path("/venv"), Path("/m.gguf"), 8001, "m")
        # both given: llama_cpp.server's own default for n_threads_batch is every core
        assert cmd[cmd.index("--n_threads") + 1] == str(want), cores
        assert cmd[cmd.index("--n_threads_batch") + 1] == str(want), cores
