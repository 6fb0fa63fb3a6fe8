#!/usr/bin/env bash
# Before a lease: build/baseline/proxies holds COMMIT's `proxies` package with this tree's
# proxies/timing.py beside it, so `benchmarks/device_check.sh` measures that commit's step with
# today's benchmark. Carry `build/baseline` to the device machine.
#
#   bash benchmarks/device_baseline.sh [COMMIT]   # default: the last commit before regional
#                                                 # compilation and the fused loss (6238fe2)
set -euo pipefail
cd "$(dirname "$0")/.."
commit=${1:-6238fe2}
rm -rf build/baseline
mkdir -p build/baseline
git archive "$commit" proxies | tar -x -C build/baseline
cp proxies/timing.py build/baseline/proxies/timing.py
git rev-parse --short "$commit" > build/baseline/COMMIT
echo "build/baseline: proxies at $(cat build/baseline/COMMIT)"
