#!/usr/bin/env bash
# Reproduce the embedded default model, fomm_model/weights/default.safetensors, from scratch:
#   bash recipes/default-model/train.sh
# It writes the synthetic training data, trains in eight phases with `fomm train`, exports the
# inference weights, and scores them on videos of an unseen seed. Each phase resumes where it
# stopped (--resume) when run again.
#   1. config.yaml, batch 8, 7000 steps (of the config's 8000): about 4 hours on a 2-core CPU
#      (one thread per process trains fastest there).
#   2. finetune-1.yaml, batch 32, 11800 steps from phase 1's weights: 7 minutes on one H200.
#   3. finetune-2.yaml, batch 32, 5000 steps from phase 2's weights: 3 minutes on one H200.
#   4. finetune-3.yaml, batch 8 with batch norm frozen, 2000 steps from phase 3's weights as
#      exported in fp16: about an hour on a 2-core CPU.
#   5. finetune-4.yaml, the same at a higher learning rate, 1600 steps from phase 4's weights
#      as exported in fp16: about 50 minutes on a 2-core CPU.
#   6. finetune-5.yaml, a sharper generator (one down block instead of two) started by
#      transplant.py from phase 5's weights as exported in fp16, batch 64, 3900 steps:
#      6.5 minutes on one H200 (sharing it with a second run).
#   7. finetune-6.yaml, batch 64, 877 steps from phase 6's weights at a tenth of the rate:
#      1.5 minutes on the same H200.
#   8. finetune-7.yaml, phase 5's schedule (batch 8, batch norm frozen), 1600 steps from phase 7's weights:
#      17 minutes on a 2-core CPU (with 2 threads, on a fast day of that shared machine).
# torch uses a GPU when it sees one; phases 2, 3, 6 and 7 on a CPU take days.
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS=${STEPS:-7000}          # phase 1 length (8000 finishes its schedule)
WORKERS=${WORKERS:-1}         # data loading processes (12 fed the H200)
PYTHON=${PYTHON:-python}      # the Python fomm is installed in (runs transplant.py)
"$PYTHON" -c 'import fomm_model' 2>/dev/null ||
  { echo "train.sh: $PYTHON cannot import fomm_model; set PYTHON to the one fomm is installed in (PYTHON=.venv/bin/python)" >&2; exit 1; }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

[ -d data/synthetic-default ] || fomm make-synthetic data/synthetic-default --num-videos 400 --seed 0 --workers "$WORKERS"

phase() {  # phase OUT_DIR CONFIG [fomm train options...]
  local out=$1 config=$2; shift 2
  fomm train --config "$config" --data data/synthetic-default --out "$out" --workers "$WORKERS" "$@" \
    $([ -f "$out/checkpoint.pth.tar" ] && echo --resume)
}
phase runs/default-model recipes/default-model/config.yaml --max-steps "$STEPS"
phase runs/default-model-2 recipes/default-model/finetune-1.yaml --checkpoint runs/default-model/model.safetensors
phase runs/default-model-3 recipes/default-model/finetune-2.yaml --checkpoint runs/default-model-2/model.safetensors
[ -f runs/default-model-3/half.safetensors ] ||
  fomm convert runs/default-model-3/model.safetensors runs/default-model-3/half.safetensors --inference-only --half
phase runs/default-model-4 recipes/default-model/finetune-3.yaml --checkpoint runs/default-model-3/half.safetensors --max-steps 2000
[ -f runs/default-model-4/half.safetensors ] ||
  fomm convert runs/default-model-4/model.safetensors runs/default-model-4/half.safetensors --inference-only --half
phase runs/default-model-5 recipes/default-model/finetune-4.yaml --checkpoint runs/default-model-4/half.safetensors
[ -f runs/default-model-5/half.safetensors ] ||
  fomm convert runs/default-model-5/model.safetensors runs/default-model-5/half.safetensors --inference-only --half
[ -f runs/default-model-6-start.safetensors ] ||
  "$PYTHON" recipes/default-model/transplant.py runs/default-model-5/half.safetensors \
    recipes/default-model/finetune-5.yaml runs/default-model-6-start.safetensors
phase runs/default-model-6 recipes/default-model/finetune-5.yaml --checkpoint runs/default-model-6-start.safetensors --max-steps 3900
phase runs/default-model-7 recipes/default-model/finetune-6.yaml --checkpoint runs/default-model-6/model.safetensors --max-steps 877
phase runs/default-model-8 recipes/default-model/finetune-7.yaml --checkpoint runs/default-model-7/model.safetensors

fomm convert runs/default-model-8/model.safetensors fomm_model/weights/default.safetensors --inference-only --half
[ -d data/synthetic-heldout ] || fomm make-synthetic data/synthetic-heldout --num-videos 41 --test-videos 40 --seed 1
fomm reconstruct --checkpoint default --data data/synthetic-heldout --out runs/default-model-8/heldout
