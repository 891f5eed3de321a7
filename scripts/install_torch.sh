#!/usr/bin/env bash
# Install the right torch build into the interpreter given as $1 (default: python3).
#  - torch already importable: keep it.
#  - NVIDIA GPU present (nvidia-smi works): the default PyPI build (CUDA) plus gsplat for the CUDA rasterizer.
#  - otherwise a CPU build: a local wheel of torch==$TORCH_CPU_VERSION when pip's find-links has one
#    (no download), else the CPU wheel index, so a laptop never downloads the multi-GB CUDA build.
set -euo pipefail
PY=${1:-python3}
TORCH_CPU_VERSION=${TORCH_CPU_VERSION:-2.13.0}
TORCH_CPU_INDEX=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}

if "$PY" -c "import torch" 2>/dev/null; then
    echo "torch $("$PY" -c 'import torch; print(torch.__version__)') already installed"
    exit 0
fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "GPU found: installing CUDA torch and gsplat"
    "$PY" -m pip install "torch>=2.1" "gsplat>=1.4"
    exit 0
fi
local_wheel=""
for d in ${PIP_FIND_LINKS:-} $(pip config get global.find-links 2>/dev/null || true); do
    if ls "$d"/torch-"$TORCH_CPU_VERSION"*cpu*.whl >/dev/null 2>&1; then local_wheel=$d; fi
done
if [ -n "$local_wheel" ]; then
    echo "no GPU: installing CPU torch $TORCH_CPU_VERSION from $local_wheel"
    "$PY" -m pip install "torch==$TORCH_CPU_VERSION"
else
    echo "no GPU: installing CPU torch from $TORCH_CPU_INDEX"
    "$PY" -m pip install torch --index-url "$TORCH_CPU_INDEX"
fi
