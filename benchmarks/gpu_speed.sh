#!/usr/bin/env bash
# The speed issue's GPU check in one go: benchmarks/gpu_speed.py on SNARE-seq tiled 10x
# (103k cells), every model and MULTIVI, 2 epochs each, nvidia-smi sampled every 200 ms;
# then benchmarks/first_layer.py (dense vs sparse first layer on the GPU).
#
# Run on the device machine from the repository root, carrying `.whl` (Python 3.12 wheels of
# what its image lacks: scvi-tools, anndata, mudata, muon, scanpy, ...; see the device
# README's `pip download` line) and `.data` (a copy of ../shared/data):
#   bash benchmarks/gpu_speed.sh                  # results in $OUT (default ./gpu_speed)
# Extra arguments go to gpu_speed.py (e.g. --methods clue,multivi --tile 5).
set -uo pipefail
OUT=${OUT:-gpu_speed}
mkdir -p "$OUT"
if [ -d .whl ] && ! python3 -c "import scvi" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD/src
if [ -d .data ] && [ ! -e ../shared/data ]; then
    mkdir -p ../shared && ln -s "$PWD/.data" ../shared/data
fi
nvidia-smi > "$OUT/nvidia_smi_start.txt" 2>&1 || true
PYTHONUNBUFFERED=1 python3 benchmarks/gpu_speed.py --tile 10 --epochs 2 --out "$OUT" "$@" \
    2>&1 | tee "$OUT/gpu_speed.log"
rc=${PIPESTATUS[0]}
python3 benchmarks/first_layer.py > "$OUT/first_layer.md" 2>&1
exit "$rc"
