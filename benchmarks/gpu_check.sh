#!/usr/bin/env bash
# The GPU checks of one device session, in one command (see benchmarks/README.md):
# the CUDA tests, then training throughput of the reference models, eager and compiled.
# Results go to $OUT (default /tmp/gpu-check). Python packages the GPU image lacks travel as
# wheels in .whl/ (optuna and its database layer).
set -uo pipefail
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, optuna; print('torch', torch.__version__, 'optuna', optuna.__version__)" \
    | tee -a "$OUT/gpu.txt"
timeout 200 python3 -m pytest -q -p no:cacheprovider -o addopts="" \
    tests/test_training_cuda.py tests/test_zero_cost_cuda.py 2>&1 | tee "$OUT/tests.log"
timeout 150 python3 benchmarks/trainer_throughput.py --device cuda \
    --out "$OUT/trainer_cuda.json" 2>&1 | tee "$OUT/throughput.log"
timeout 200 python3 benchmarks/trainer_throughput.py --device cuda --models nb201-32 \
    mobileone_s0-32 --compile nb201-32 mobileone_s0-32 --out "$OUT/trainer_cuda_compile.json" \
    2>&1 | tee "$OUT/compile.log"
