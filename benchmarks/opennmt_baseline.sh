#!/usr/bin/env bash
# The peer that our speed and quality ratios are taken against: OpenNMT-py 3.5.1 with the same LSTM
# model, the same data and the same SentencePiece pieces as `configs/ding_en_de_reference.yaml`.
#
#   bash benchmarks/opennmt_baseline.sh DATA_DIR SRC TGT SPM_MODEL [SECONDS] [OUT_DIR]
#
#   DATA_DIR   holds {train,valid,test}.{SRC,TGT}: raw text, one sentence a line (what
#              data_scripts/ding_en_de.py writes to data/ding-en-de)
#   SPM_MODEL  our SentencePiece model (RUN_DIR/tokenizer/spm.model), so both toolkits see one
#              segmentation and their token counts and BLEU scores compare
#   SECONDS    wall-clock training time (default 300); the last checkpoint is decoded
#   OUT_DIR    work directory (default runs/opennmt-baseline); emptied first if an earlier run of
#              this script made it, refused if it holds anything else
#
# Environment:
#   ONMT_VENV  virtualenv for OpenNMT-py (default runs/opennmt-venv), made on first use from PyPI
#   ONMT_TORCH torch requirement for that venv (default torch==2.13.0, the CPU wheel we test with)
#   BRNN=1     bidirectional encoder (for configs with model.bidirectional: true)
#   ONMT_SEED  OpenNMT-py's random seed (default 1234)
#   ONMT_EMB, ONMT_HIDDEN, ONMT_ENC_LAYERS, ONMT_DEC_LAYERS, ONMT_DROPOUT: another model size than the
#              reference's 256, 512, 2, 2, 0.3 (benchmarks/quality.py --peer-model ours sets them)
#   SKIP_BS1=1 skip the two batch-1 decodings (slow); BS1_LIMIT=N decodes only the first N
#              sentences at batch 1 (benchmarks/translate_speed.py's --bs1-limit, default 200 there)
#
# Prints one JSON line: training tokens/s (source pieces + target pieces with EOS, OpenNMT-py's own
# count), steps, peak memory; and for each of beam5_bs32, greedy_bs32, beam5_bs1, greedy_bs1:
# sentences/s, BLEU (sacreBLEU, detokenized with SPM_MODEL), mean output pieces and peak memory. Those
# keys are what `benchmarks/train_speed.py --onmt` and `benchmarks/translate_speed.py --onmt-json` read.
#
# Run it right before or after our own benchmark on the same cores (e.g. both under
# `OMP_NUM_THREADS=1 taskset -c 0`), with nothing else busy, and compare ratios rather than figures:
# shared machines drift. An undertrained checkpoint runs to the maximum length, so compare decoding
# speed on checkpoints trained for the same time and look at the mean output length too.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if (($# < 4 || $# > 6)); then
  echo "usage: bash benchmarks/opennmt_baseline.sh DATA_DIR SRC TGT SPM_MODEL [SECONDS] [OUT_DIR]" >&2
  exit 2
fi
DATA=$(realpath -m "$1") SRC=$2 TGT=$3 SPM=$(realpath -m "$4")
SECS=${5:-300}
OUT=$(realpath -m "${6:-$ROOT/runs/opennmt-baseline}")
VENV=$(realpath -m "${ONMT_VENV:-$ROOT/runs/opennmt-venv}")
PY=$VENV/bin/python
MARK=.opennmt-baseline  # marks a work directory this script may empty

for f in "$SPM" "$DATA"/{train,valid,test}.{"$SRC","$TGT"}; do
  [[ -f $f ]] || { echo "Error: $f does not exist" >&2; exit 1; }
done
[[ $SECS =~ ^[1-9][0-9]*$ ]] || { echo "Error: SECONDS must be a whole number > 0; got '$SECS'" >&2; exit 1; }

# OpenNMT-py 3.5.1 pins a torch older than any wheel for current Pythons, so it is installed without
# its dependencies and given the ones its imports need; its own venv keeps them away from ours.
if [[ ! -x $VENV/bin/onmt_train ]]; then
  echo "installing OpenNMT-py 3.5.1 into $VENV (once)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "${ONMT_TORCH:-torch==2.13.0}"
  "$VENV/bin/pip" install -q --no-deps OpenNMT-py==3.5.1
  "$VENV/bin/pip" install -q configargparse pyyaml sacrebleu six sentencepiece tensorboard numpy \
    "pyonmttok>=1.37,<2" rapidfuzz pyahocorasick fasttext-wheel spacy
fi
# OpenNMT-py's checkpoints pickle its options; torch >= 2.6 refuses that unless told otherwise
export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 PYTHONWARNINGS=ignore

if [[ -e $OUT ]]; then
  [[ -f $OUT/$MARK || -z $(ls -A "$OUT") ]] || {
    echo "Error: $OUT exists and was not made by this script; pass another OUT_DIR" >&2
    exit 1
  }
  rm -rf "$OUT"
fi
mkdir -p "$OUT/model"
touch "$OUT/$MARK"
cd "$OUT"

# 1. Our pieces: every split through SPM_MODEL, one space-separated line per sentence.
"$PY" - "$DATA" "$SRC" "$TGT" "$SPM" <<'EOF'
import sys
import sentencepiece as spm

data, src, tgt, model = sys.argv[1:]
sp = spm.SentencePieceProcessor(model_file=model)
for split in ("train", "valid", "test"):
    for lang in (src, tgt):
        with open(f"{data}/{split}.{lang}", encoding="utf-8") as f:
            lines = f.read().splitlines()
        with open(f"{split}.sp.{lang}", "w", encoding="utf-8") as f:
            f.writelines(" ".join(pieces) + "\n" for pieces in sp.encode(lines, out_type=str))
EOF

# 2. The reference model of configs/ding_en_de_reference.yaml in OpenNMT-py's words: 2x512 LSTMs, embeddings
# 256, Luong general attention with input feeding, dropout 0.3, Adam 1e-3, gradient norm 5, batches of
# 64 sentences. The vocabulary is whatever pieces occur (one shared list, as our joint model). It
# checkpoints every 50 steps so that stopping on time loses little; validation is off (it would
# steal training time).
ENCODER=rnn
[[ -n ${BRNN:-} ]] && ENCODER=brnn
cat >config.yaml <<EOF
save_data: model
src_vocab: model/vocab.src
tgt_vocab: model/vocab.tgt
share_vocab: true
src_vocab_size: 64000
tgt_vocab_size: 64000
overwrite: true
data:
  corpus_1: {path_src: train.sp.$SRC, path_tgt: train.sp.$TGT}
  valid: {path_src: valid.sp.$SRC, path_tgt: valid.sp.$TGT}
src_seq_length: 200
tgt_seq_length: 200
model_type: text
encoder_type: $ENCODER
decoder_type: rnn
rnn_type: LSTM
word_vec_size: ${ONMT_EMB:-256}
enc_layers: ${ONMT_ENC_LAYERS:-2}
dec_layers: ${ONMT_DEC_LAYERS:-2}
enc_hid_size: ${ONMT_HIDDEN:-512}
dec_hid_size: ${ONMT_HIDDEN:-512}
global_attention: general
input_feed: 1
dropout: [${ONMT_DROPOUT:-0.3}]
attention_dropout: [0.0]
param_init: 0.1
optim: adam
learning_rate: 0.001
decay_method: none
max_grad_norm: 5
batch_type: sents
batch_size: 64
valid_batch_size: 64
accum_count: [1]
train_steps: 100000000
valid_steps: 100000000
save_model: model/model
save_checkpoint_steps: 50
keep_checkpoint: 1
report_every: 25
seed: ${ONMT_SEED:-1234}
num_workers: 1
bucket_size: 16384
prefetch_factor: 50
log_file: train.log
EOF
"$VENV/bin/onmt_build_vocab" -config config.yaml -n_sample -1 >build_vocab.log 2>&1

# Run a command and write its peak resident memory (MiB, largest process) to FILE.
measured() {  # FILE COMMAND...
  local file=$1
  shift
  "$PY" -c 'import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:])
open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024))
sys.exit(rc)' "$file" "$@"
}

# 3. Train for SECONDS of wall time; `timeout` ends it (exit 124 is the expected way out).
echo "training OpenNMT-py for $SECS s in $OUT" >&2
measured train.rss timeout -s TERM "$SECS" "$VENV/bin/onmt_train" -config config.yaml >train.stdout 2>&1 || true
CKPT=$(ls -v model/model_step_*.pt 2>/dev/null | tail -1 || true)
[[ -n $CKPT ]] || { echo "Error: no checkpoint after $SECS s; train longer (see $OUT/train.stdout)" >&2; exit 1; }

# 4. Decode the test source in the four modes of benchmarks/translate_speed.py, on the CPU.
if ((${BS1_LIMIT:-0} > 0)); then
  head -n "$BS1_LIMIT" "test.sp.$SRC" >"test1.sp.$SRC"
else
  cp "test.sp.$SRC" "test1.sp.$SRC"
fi
decode() {  # MODE BEAM BATCH SOURCE
  measured "dec_$1.rss" "$VENV/bin/onmt_translate" -model "$CKPT" -src "$4" -output "pred_$1.sp" \
    -beam_size "$2" -batch_size "$3" -batch_type sents -report_time -gpu -1 >"dec_$1.log" 2>&1
}
decode beam5_bs32 5 32 "test.sp.$SRC"
decode greedy_bs32 1 32 "test.sp.$SRC"
if [[ -z ${SKIP_BS1:-} ]]; then
  decode beam5_bs1 5 1 "test1.sp.$SRC"
  decode greedy_bs1 1 1 "test1.sp.$SRC"
fi

# 5. One JSON line of figures.
"$PY" - "$SPM" "$DATA/test.$TGT" "$CKPT" "$SECS" <<'EOF'
import glob
import json
import os
import re
import sys

import sacrebleu
import sentencepiece as spm

model, ref_file, ckpt, secs = sys.argv[1:]
REPORT_EVERY = 25  # report_every in config.yaml
# "Step 50/100000000; acc: 5.1; ppl: 4000.2; xent: 8.3; lr: 0.00100; sents: 1600; bsz: 18/ 20/ 64;
#  1234/ 1300 tok/s; 30 sec;": bsz is mean source pieces / target pieces / sentences per batch
step = re.compile(
    r"Step (\d+)/\s*\d+;.*?xent:\s*([\d.]+);.*?bsz:\s*(\d+)/\s*(\d+)/\s*\d+;.*?tok/s;\s*(\d+) sec"
)
rows = [m.groups() for m in step.finditer(open("train.log", encoding="utf-8").read())]
if len(rows) < 2:
    sys.exit("Error: fewer than two training reports in train.log; train longer")
# tokens between the first and the last report, over the seconds between them (start-up excluded)
tokens = sum((int(r[2]) + int(r[3])) * REPORT_EVERY for r in rows[1:])
seconds = int(rows[-1][4]) - int(rows[0][4])
result = {
    "toolkit": "OpenNMT-py 3.5.1",
    "train_seconds": int(secs),
    "steps": int(rows[-1][0]),
    "train_tok_per_s": round(tokens / max(seconds, 1), 1),
    "train_peak_rss_mib": int(open("train.rss").read()),
    "xent_last": float(rows[-1][1]),
    "checkpoint": os.path.basename(ckpt),
}
sp = spm.SentencePieceProcessor(model_file=model)
with open(ref_file, encoding="utf-8") as f:
    refs = f.read().splitlines()
for log in sorted(glob.glob("dec_*.log")):
    mode = log[len("dec_") : -len(".log")]
    total = re.search(r"Total translation time \(s\): ([\d.]+)", open(log, encoding="utf-8").read())
    with open(f"pred_{mode}.sp", encoding="utf-8") as f:
        pieces = [line.split() for line in f.read().splitlines()]
    hyps = [sp.decode(p) for p in pieces]
    result[mode] = {
        "sentences": len(hyps),
        "sent_per_s": round(len(hyps) / float(total.group(1)), 1),
        "bleu": round(sacrebleu.corpus_bleu(hyps, [refs[: len(hyps)]]).score, 2),
        "mean_out_len": round(sum(map(len, pieces)) / len(pieces), 1),  # pieces, EOS not counted
        "peak_rss_mib": int(open(f"dec_{mode}.rss").read()),
    }
print(json.dumps(result))
EOF
