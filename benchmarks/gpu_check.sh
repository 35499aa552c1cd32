#!/usr/bin/env bash
# The CUDA checks in one run, for a machine with a GPU (the test suite itself never needs one):
#   the whole test suite with the GPU visible, decoding speed (fp32 and bf16 weights) with a trained
#   run directory, training speed, and the main job trained and used on the GPU.
#
#   bash benchmarks/gpu_check.sh RUN_DIR [LOG_DIR]
#
# RUN_DIR: a run directory of the reference Ding config (`s2s train -c configs/ding_en_de_reference.yaml`);
# data/ding-en-de must hold the splits (data_scripts/). Logs go to LOG_DIR (default gpu_check_logs);
# the last lines of each part are printed. Each part has a time limit, so one hang cannot eat the rest.
set -uo pipefail
cd "$(dirname "$0")/.."
RUN=${1:?usage: bash benchmarks/gpu_check.sh RUN_DIR [LOG_DIR]}
LOGS=${2:-gpu_check_logs}
mkdir -p "$LOGS"
export PYTHONUNBUFFERED=1 HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1
T0=$(date +%s)
part() { echo "=== [$(($(date +%s) - T0)) s] $1"; }

part environment
if ! python3 -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
  echo "no CUDA device here: these checks need one (the CPU paths are the test suite's)" >&2
  exit 1
fi
nvidia-smi -L
python3 -c "import torch, sentencepiece as s; print('torch', torch.__version__, 'CUDA', torch.version.cuda,
'cuDNN', torch.backends.cudnn.version(), torch.cuda.get_device_name(), 'sentencepiece', s.__version__)"

part "tests with the GPU visible (the CUDA tests run instead of skipping)"
workers=$(python3 -c "import importlib.util as u; print('-n 8 --dist loadfile' if u.find_spec('xdist') else '')")
# shellcheck disable=SC2086  # $workers is empty or several words
timeout 600 python3 -m pytest tests -p no:cacheprovider -q -rfE $workers >"$LOGS/tests.log" 2>&1
tail -12 "$LOGS/tests.log"

part "decoding, fp32 weights"
timeout 300 python3 benchmarks/translate_speed.py "$RUN" --device cuda >"$LOGS/translate_fp32.log" 2>&1
tail -8 "$LOGS/translate_fp32.log" | grep -v '^{'

part "decoding, bf16 weights"
timeout 300 python3 benchmarks/translate_speed.py "$RUN" --device cuda --dtype bfloat16 \
  >"$LOGS/translate_bf16.log" 2>&1
tail -8 "$LOGS/translate_bf16.log" | grep -v '^{'

for precision in 32-true bf16-mixed; do
  part "training speed, $precision"
  timeout 300 python3 benchmarks/train_speed.py --accelerator gpu --precision "$precision" --steps 150 \
    --warmup 20 >"$LOGS/train_$precision.log" 2>&1
  tail -1 "$LOGS/train_$precision.log"
done

part "main job on the GPU, then a translation with it"
out=$(mktemp -d)
timeout 300 s2s train --config configs/quickstart.yaml --accelerator gpu --set training.max_time=1 \
  --set "training.out_dir=$out" --set training.progress_bar=false >"$LOGS/quickstart.log" 2>&1
tail -3 "$LOGS/quickstart.log"
echo "In the beginning God created the heaven and the earth." |
  timeout 60 s2s translate --checkpoint "$out" --device cuda
part done
