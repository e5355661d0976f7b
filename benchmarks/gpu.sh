#!/usr/bin/env bash
# One prepared run for a session lent a GPU (the device tool): GPU tests, the ResNet-18 overhead
# benchmark, and the throughput of the paper presets of fig2-fig4 on stand-in data of the right
# shapes. Uses the machine's own python3 (with torch) and the source tree; installs nothing.
# Usage (from the repository root):  OUT=/some/dir bash benchmarks/gpu.sh    (~8 minutes)
set -u
out="${OUT:-gpu_out}"
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
py=python3
{ nvidia-smi; $py -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"; } > "$out/machine.txt" 2>&1
timeout 120 $py -m pytest -q -p no:cacheprovider tests/test_injection.py tests/test_ecosystem.py \
    tests/test_curvature.py -k "gpu or cuda or two_devices or compile" > "$out/gpu_tests.txt" 2>&1
timeout 150 $py benchmarks/overhead.py --device all --pairs 9 --json "$out/overhead.json" > "$out/overhead.txt" 2>&1
run() {  # name, then --set arguments; a few hundred steps each, to measure steps per second
  local name="$1"; shift
  timeout 100 $py -m noisereg.cli run "$name" --preset paper --device cuda --quiet --out "$out/$name" \
      --set seeds=0 --set checkpoint_every=0 "$@" > "$out/$name.txt" 2>&1
}
run fig2 --set epochs=2000
run fig3 --set dataset=standin:fashion_mnist --set epochs=300 --set eval_every=300 --set sigmas=0.05 --set amp=true
run fig4 --set dataset=standin:fashion_mnist --set epochs=300 --set eval_every=300
$py - "$out" > "$out/throughput.txt" 2>&1 <<'PY'
import json, pathlib, sys
for f in sorted(pathlib.Path(sys.argv[1]).glob("*/results.json")):
    r = json.loads(f.read_text())
    for run in r["runs"]:
        steps = run["history"][-1]["step"]
        print(f"{r['experiment']:6} {run['id']:28} {steps:6d} steps {run['seconds']:8.2f} s "
              f"{steps / max(run['seconds'], 1e-9):9.1f} steps/s")
PY
cat "$out"/machine.txt "$out"/gpu_tests.txt "$out"/overhead.txt "$out"/throughput.txt
