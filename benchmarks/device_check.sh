#!/usr/bin/env bash
# What a lent GPU machine runs as it is, from the repository root, in under 8 minutes: the GPU,
# the device tests, then the device benchmark (row by row), with its figures under $OUT when set.
#
#   bash benchmarks/device_check.sh                # OUT=... to keep the figures
#
# Needs only CUDA torch and numpy (pytest if present; without it the tests run as a script).
# BENCH_ARGS="--device cpu --quick" checks the script itself on a machine without a GPU.
# With build/baseline/proxies present (made by `bash benchmarks/device_baseline.sh COMMIT`
# before the lease, carried to the machine), the main row is measured first on that commit's
# step, so one lease gives the step's figure before and after a change.
set -u
cd "$(dirname "$0")/.."
out=${OUT:-build/device_check}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$PWD/build/inductor}
py=${PYTHON:-python}
say() { echo "== $(date +%H:%M:%S) $*"; }

say "device"
nvidia-smi -L 2>/dev/null || true
$py - <<'PY' | tee "$out/device.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(torch.cuda.get_device_name(0), f"{p.total_memory / 2**30:.1f} GiB", "capability",
          torch.cuda.get_device_capability(0))
import torch.nn.functional as F
print("grouped_mm", hasattr(F, "grouped_mm"))
PY

if [ -d build/baseline/proxies ]; then
    say "baseline: the main row on $(cat build/baseline/COMMIT 2>/dev/null)'s step (150 s at most)"
    PYTHONPATH=build/baseline timeout 150 $py benchmarks/gpu_speed.py ${BENCH_ARGS:-} --rows pack \
        --out "$out/baseline.jsonl" 2>&1 | tee "$out/baseline.log" | grep -v "^{"
fi

say "device tests (150 s at most)"
if $py -c "import pytest" 2>/dev/null; then
    timeout 150 $py -m pytest -q -m gpu -p no:cacheprovider -o addopts="" -W default \
        tests/test_gpu.py 2>&1 | tee "$out/tests.log" | tail -n 40
else
    timeout 150 $py tests/test_gpu.py 2>&1 | tee "$out/tests.log" | tail -n 40
fi

say "benchmark (330 s at most; each row is in $out/gpu_speed.jsonl as it finishes)"
timeout 330 $py benchmarks/gpu_speed.py ${BENCH_ARGS:-} --out "$out/gpu_speed.jsonl" 2>&1 \
    | tee "$out/gpu_speed.log" | grep -v "^{"
tail -n 1 "$out/gpu_speed.log" | grep "^{" > "$out/gpu_speed.json" || true
say "done"
