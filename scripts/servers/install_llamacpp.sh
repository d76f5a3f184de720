#!/usr/bin/env bash
# Builds llama-cpp-python[server] (CPU) from source into its own venv,
# ${LMGAUGE_SERVERS:-~/.cache/lmgauge-servers}/llama-cpp-python-<ver>, and prints the venv path.
# Exits at once when that venv is already complete.
source "$(dirname "$0")/_venv_lib.sh"
LLAMACPP_VERSION=0.3.36

_install_llamacpp() {
  local venv="$1" c="$SERVERS_SCRIPTS/constraints.txt"
  "$venv/bin/pip" install -c "$c" --upgrade pip
  # CPU build; portable (not -march=native) so a cached venv survives a move to another CPU model.
  # LLAVA_BUILD=OFF skips the multimodal (mtmd) library, ~30% of the compile; text serving never
  # loads it (llama_cpp imports mtmd_cpp only for llava/mtmd chat formats).
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_CUDA=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF}" \
  CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
    "$venv/bin/pip" install -c "$c" --no-binary llama-cpp-python "llama-cpp-python[server]==$LLAMACPP_VERSION"
  "$venv/bin/python" -c "import llama_cpp, llama_cpp.server; print('llama_cpp', llama_cpp.__version__)"
}

venv_install "llama-cpp-python-$LLAMACPP_VERSION" _install_llamacpp
