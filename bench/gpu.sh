#!/usr/bin/env bash
# GPU benchmark (issue 10, goal 5): char-rnn and char-concat, their lesson recipes on Nietzsche,
# on CUDA with mixed precision (bf16 autocast, --amp) and without (--no-amp), each also with the
# step replayed as one CUDA graph (--cuda-graph); prints seconds per
# epoch and training chars/s from each run's training.json, then sampling speed from those runs. The lesson's 2018 GPU took 11.6 s per
# char-rnn epoch and 12.7 s per char-concat epoch; the goal is <= 1 s per epoch.
#
#   bench/gpu.sh                        # data: ../shared/data/nietzsche.txt if present, else zoo's `nietzsche`
#   bench/gpu.sh /path/nietzsche.txt    # or any corpus
#   OUT=gpu-runs bench/gpu.sh           # keep the runs (default: a temporary folder, removed at the end)
#   MODELS=char-rnn bench/gpu.sh        # fewer models
#   DEVICE=cpu MODELS=char-rnn bench/gpu.sh small.txt   # try the script itself on a machine without a GPU
#
# Without CUDA it prints one line and exits with status 0. It needs a CUDA build of torch with zoo
# installed: $PYTHON (default .venv/bin/python, else python3), and the zoo command beside it or on PATH.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

PYTHON="${PYTHON:-$root/.venv/bin/python}"
if [[ ! -x "$PYTHON" ]]; then
    PYTHON="$(command -v python3 || true)"
fi
if [[ -z "$PYTHON" ]]; then
    echo "gpu.sh: no Python found (set PYTHON=/path/to/python); nothing to run"
    exit 0
fi
if ! "$PYTHON" -c "import torch, zoo" 2>/dev/null; then
    echo "gpu.sh: torch and zoo are not both installed for $PYTHON (make setup, or pip install -e .); nothing to run"
    exit 0
fi
DEVICE="${DEVICE:-cuda}"
if [[ "$DEVICE" == cuda* ]] && ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu.sh: no CUDA device here (torch $("$PYTHON" -c 'import torch; print(torch.__version__)'): torch.cuda.is_available() is False); nothing to run"
    exit 0
fi
ZOO="$(dirname "$PYTHON")/zoo"
if [[ ! -x "$ZOO" ]]; then
    ZOO="$(command -v zoo || true)"
fi
if [[ -z "$ZOO" ]]; then
    echo "gpu.sh: no zoo command beside $PYTHON or on PATH" >&2
    exit 1
fi

DATA="${1:-}"
if [[ -z "$DATA" ]]; then
    if [[ -f "$root/../shared/data/nietzsche.txt" ]]; then
        DATA="$(cd "$root/../shared/data" && pwd)/nietzsche.txt"
    else
        DATA="nietzsche"  # zoo downloads it once (sha256-checked) into $ZOO_CACHE_DIR
    fi
fi
MODELS="${MODELS:-char-rnn char-concat}"
if [[ -n "${OUT:-}" ]]; then
    mkdir -p "$OUT"
else
    OUT="$(mktemp -d "${TMPDIR:-/tmp}/zoo-gpu-bench.XXXXXX")"
    trap 'rm -rf "$OUT"' EXIT
fi

"$PYTHON" - <<'PY'
import platform

import torch

if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"device: {p.name} ({p.total_memory / 2**30:.0f} GiB), torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"bf16: {torch.cuda.is_bf16_supported()}, python {platform.python_version()}")
else:
    print(f"device: CPU ({platform.processor() or platform.machine()}), torch {torch.__version__}, python {platform.python_version()}")
PY
echo "data: $DATA; device $DEVICE; runs in $OUT"

runs="$OUT/runs.txt"
: > "$runs"
# Each model four ways: bf16 autocast on and off, each with the step launched kernel by kernel and as one
# replayed CUDA graph (--cuda-graph). GRAPHS=0 skips the graph runs (they need a CUDA device).
configs="amp no-amp"
if [[ "${GRAPHS:-1}" != 0 && "$DEVICE" == cuda* ]]; then
    configs="$configs amp+graph no-amp+graph"
fi
for model in $MODELS; do
    for config in $configs; do
        flags=(--"${config%+graph}")
        [[ "$config" == *+graph ]] && flags+=(--cuda-graph)
        dir="$OUT/$model-$config"
        rm -rf "$dir"
        echo "training $model ${flags[*]} ..." >&2
        start=${EPOCHREALTIME:-$(date +%s.%N)}  # bash 5; date otherwise
        ZOO_PROGRESS=0 "$ZOO" train "$model" --device "$DEVICE" "${flags[@]}" --data "$DATA" --out "$dir" --seed 0 -q
        echo "$model $config $start ${EPOCHREALTIME:-$(date +%s.%N)} $dir" >> "$runs"
    done
done

# One line per run, from its training.json: each epoch's seconds (the training loop; validation
# excluded), their median, the median chars/s over the epochs (the first epoch also pays CUDA's
# warm-up), the final validation loss, and the wall time of the whole command (start-up,
# validation and checkpoints included).
"$PYTHON" - "$runs" <<'PY'
import json
import statistics
import sys

print(f"{'model':<12} {'config':<13} {'epochs':>6}  {'s/epoch, each':<28} {'median s/epoch':>14} {'chars/s':>10} {'val loss':>8} {'wall s':>7}")
for line in open(sys.argv[1]).read().splitlines():
    model, amp, start, end, path = line.split(" ", 4)
    history = json.load(open(f"{path}/training.json"))["history"]
    seconds = [h["seconds"] for h in history]
    rate = statistics.median(h["chars_per_s"] for h in history)
    each = " ".join(f"{s:.2f}" for s in seconds)
    print(f"{model:<12} {amp:<13} {len(history):>6}  {each:<28} {statistics.median(seconds):>14.2f} {rate:>10,.0f} "
          f"{history[-1]['val_loss']:>8.3f} {float(end) - float(start):>7.1f}")
PY

# Sampling from the trained runs: 2,000 characters at temperature 0.8, batch 1 and 64 at once, on the
# run's device and on the CPU (median of 3 after a warm-up), and the text itself (same seed, same text);
# the graph runs are left out (the same weights).
"$PYTHON" - "$runs" "$DEVICE" <<'PY'
import statistics
import sys
import time

import zoo

device = sys.argv[2]
print(f"{'model':<12} {'config':<13} {'device':<7} {'batch':>5} {'chars/s':>10}")
seen = set()
for line in open(sys.argv[1]).read().splitlines():
    model, amp, _, _, path = line.split(" ", 4)
    if amp.endswith("+graph"):
        continue  # the same weights as the run without the graph: sampling them again says nothing new
    for dev in (device, "cpu"):
        m = zoo.load(path, device=dev)
        for n in (1, 64):
            m.sample("for thos", length=200, seed=0, num_samples=n)  # warm-up
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                m.sample("for thos", length=2000, seed=0, num_samples=n)
                times.append(time.perf_counter() - t0)
            print(f"{model:<12} {amp:<13} {dev:<7} {n:>5} {2000 * n / statistics.median(times):>10,.0f}")
    if model not in seen:
        seen.add(model)
        print(f"  {model} ({amp}) on {device}, seed 0: for thos{zoo.load(path, device=device).sample('for thos', length=300, seed=0)!r}")
PY
