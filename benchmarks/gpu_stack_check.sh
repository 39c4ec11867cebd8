#!/usr/bin/env bash
# The test suite on a GPU server's stack (the device machine: Python 3.12, torch with CUDA,
# the newest numpy and pandas), with nvidia-smi sampled every second.
#
# Run on the device machine from the repository root, carrying `.whl` (Python 3.12 wheels of
# what its image lacks: scvi-tools, anndata, mudata, muon, scanpy, ...; see the device
# README's `pip download` line) and `.data` (a copy of ../shared/data):
#   bash benchmarks/gpu_stack_check.sh            # results in $OUT (default ./gpu_check)
# Extra arguments go to pytest (e.g. a subset of tests).
set -uo pipefail
OUT=${OUT:-gpu_check}
mkdir -p "$OUT"
if [ -d .whl ] && ! python3 -c "import scvi" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD/src
fi
if [ -d .data ] && [ ! -e ../shared/data ]; then
    mkdir -p ../shared && ln -s "$PWD/.data" ../shared/data
fi
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 1 \
        > "$OUT/nvidia_smi.csv" 2>&1 &
    SMI=$!
fi
python3 -c "import torch, numpy, pandas, anndata, scvi; print('torch', torch.__version__, \
'cuda', torch.cuda.is_available(), 'numpy', numpy.__version__, 'pandas', pandas.__version__, \
'anndata', anndata.__version__, 'scvi-tools', scvi.__version__)" 2>&1 | tee "$OUT/versions.txt"
PYTHONUNBUFFERED=1 python3 -m pytest -q -p no:cacheprovider -o addopts="" -rfE \
    --durations=15 "$@" 2>&1 | tee "$OUT/pytest.log"
rc=${PIPESTATUS[0]}
[ -n "${SMI:-}" ] && kill "$SMI"
exit "$rc"
