#!/usr/bin/env bash
# Reproduce the embedded default model, fomm_model/weights/default.safetensors, from scratch:
#   bash recipes/default-model/train.sh
# It writes the synthetic training data, trains in thirty-four phases with `fomm train`, exports the
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
#   9. finetune-8.yaml, a generator with no down block started by transplant.py from phase 8's
#      weights as exported in fp16, keypoint detector at 1e-4, batch 64, 3916 steps: 6 minutes
#      on one H200 (sharing it with a second run).
#  10. finetune-9.yaml, batch 64, 3630 steps from phase 9's weights at a tenth of the rate:
#      6 minutes on the same H200.
#  11. finetune-7.yaml's schedule for that generator (finetune-10.yaml), 1600 steps from phase
#      10's weights: 17 minutes on a 2-core CPU.
#  12. finetune-7.yaml again, from phase 8's generator (as exported in fp16) with phase 11's
#      keypoint detector and dense motion network (transplant.py with a motion model), 1600
#      steps: 17 minutes on a 2-core CPU.
#  13. finetune-7.yaml once more, from phase 12's weights: 17 minutes on a 2-core CPU.
#  14. finetune-7.yaml once more, from phase 13's weights: 17 minutes on a 2-core CPU.
#  15. finetune-11.yaml, phase 14's model with its dense motion network at 64x64 instead of
#      32x32 (transplant.py from phase 14's weights as exported in fp16), phase 8's schedule:
#      22 minutes on a 2-core CPU.
#  16. finetune-11.yaml once more, from phase 15's weights: 22 minutes on a 2-core CPU.
#  17. finetune-11.yaml once more, from phase 16's weights: 22 minutes on a 2-core CPU.
#  18. finetune-11.yaml once more, from phase 17's weights: 22 minutes on a 2-core CPU.
#  19-21. finetune-12.yaml, finetune-13.yaml and finetune-14.yaml: phase 18's model at batch 64
#      with 1e-4, then 1e-5, then 1e-6, 1698, 894 and 507 steps, each from the phase before's
#      weights: 3.7, 1.9 and 1.1 minutes on one H200 (sharing it with a second run).
#  22-24. The same three once more from phase 21's weights, 718, 280 and 118 steps: 1.5, 0.6
#      and 0.3 minutes on the same H200.
#  25. finetune-11.yaml once more, from phase 24's weights: 21 minutes on a 2-core CPU.
#  26. finetune-15.yaml, batch 32 at 1e-5 with the pixel loss on the full-size frame alone,
#      1200 steps from phase 25's weights: 55 minutes on a 2-core CPU (2 threads).
#  27-30. finetune-16.yaml (the same at 3e-5), then finetune-15.yaml, twice over, 400 steps
#      each from the phase before's weights: 17 to 18 minutes each on a 2-core CPU (2 threads).
#  31-34. finetune-17.yaml: the generator also weighs, per pixel, the source warped by the
#      flow against its decoded frame (blend_warped_source), started by transplant.py from
#      phase 30's weights; 400 steps at 3e-5, then finetune-18.yaml, the same at 1e-5, 400
#      steps; twice over, each from the phase before's weights: about 20 minutes each on a
#      2-core CPU (2 threads).
# torch uses a GPU when it sees one; phases 2, 3, 6, 7, 9, 10 and 19 to 24 on a CPU take days.
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
half() {  # half RUN_DIR: its model as inference weights in fp16, as the embedded one ships
  [ -f "$1/half.safetensors" ] || fomm convert "$1/model.safetensors" "$1/half.safetensors" --inference-only --half
}
transplant() {  # transplant FROM CONFIG OUT [MOTION]
  [ -f "$3" ] || "$PYTHON" recipes/default-model/transplant.py "$@"
}
R=recipes/default-model
phase runs/default-model $R/config.yaml --max-steps "$STEPS"
phase runs/default-model-2 $R/finetune-1.yaml --checkpoint runs/default-model/model.safetensors
phase runs/default-model-3 $R/finetune-2.yaml --checkpoint runs/default-model-2/model.safetensors
half runs/default-model-3
phase runs/default-model-4 $R/finetune-3.yaml --checkpoint runs/default-model-3/half.safetensors --max-steps 2000
half runs/default-model-4
phase runs/default-model-5 $R/finetune-4.yaml --checkpoint runs/default-model-4/half.safetensors
half runs/default-model-5
transplant runs/default-model-5/half.safetensors $R/finetune-5.yaml runs/default-model-6-start.safetensors
phase runs/default-model-6 $R/finetune-5.yaml --checkpoint runs/default-model-6-start.safetensors --max-steps 3900
phase runs/default-model-7 $R/finetune-6.yaml --checkpoint runs/default-model-6/model.safetensors --max-steps 877
phase runs/default-model-8 $R/finetune-7.yaml --checkpoint runs/default-model-7/model.safetensors
half runs/default-model-8
transplant runs/default-model-8/half.safetensors $R/finetune-8.yaml runs/default-model-9-start.safetensors
phase runs/default-model-9 $R/finetune-8.yaml --checkpoint runs/default-model-9-start.safetensors --max-steps 3916
phase runs/default-model-10 $R/finetune-9.yaml --checkpoint runs/default-model-9/model.safetensors --max-steps 3630
phase runs/default-model-11 $R/finetune-10.yaml --checkpoint runs/default-model-10/model.safetensors
transplant runs/default-model-8/half.safetensors $R/finetune-7.yaml runs/default-model-12-start.safetensors \
  runs/default-model-11/model.safetensors
phase runs/default-model-12 $R/finetune-7.yaml --checkpoint runs/default-model-12-start.safetensors
phase runs/default-model-13 $R/finetune-7.yaml --checkpoint runs/default-model-12/model.safetensors
phase runs/default-model-14 $R/finetune-7.yaml --checkpoint runs/default-model-13/model.safetensors
half runs/default-model-14
transplant runs/default-model-14/half.safetensors $R/finetune-11.yaml runs/default-model-15-start.safetensors
phase runs/default-model-15 $R/finetune-11.yaml --checkpoint runs/default-model-15-start.safetensors
phase runs/default-model-16 $R/finetune-11.yaml --checkpoint runs/default-model-15/model.safetensors
phase runs/default-model-17 $R/finetune-11.yaml --checkpoint runs/default-model-16/model.safetensors
phase runs/default-model-18 $R/finetune-11.yaml --checkpoint runs/default-model-17/model.safetensors
phase runs/default-model-19 $R/finetune-12.yaml --checkpoint runs/default-model-18/model.safetensors --max-steps 1698
phase runs/default-model-20 $R/finetune-13.yaml --checkpoint runs/default-model-19/model.safetensors --max-steps 894
phase runs/default-model-21 $R/finetune-14.yaml --checkpoint runs/default-model-20/model.safetensors --max-steps 507
phase runs/default-model-22 $R/finetune-12.yaml --checkpoint runs/default-model-21/model.safetensors --max-steps 718
phase runs/default-model-23 $R/finetune-13.yaml --checkpoint runs/default-model-22/model.safetensors --max-steps 280
phase runs/default-model-24 $R/finetune-14.yaml --checkpoint runs/default-model-23/model.safetensors --max-steps 118
phase runs/default-model-25 $R/finetune-11.yaml --checkpoint runs/default-model-24/model.safetensors
phase runs/default-model-26 $R/finetune-15.yaml --checkpoint runs/default-model-25/model.safetensors --max-steps 1200
phase runs/default-model-27 $R/finetune-16.yaml --checkpoint runs/default-model-26/model.safetensors --max-steps 400
phase runs/default-model-28 $R/finetune-15.yaml --checkpoint runs/default-model-27/model.safetensors --max-steps 400
phase runs/default-model-29 $R/finetune-16.yaml --checkpoint runs/default-model-28/model.safetensors --max-steps 400
phase runs/default-model-30 $R/finetune-15.yaml --checkpoint runs/default-model-29/model.safetensors --max-steps 400
transplant runs/default-model-30/model.safetensors $R/finetune-17.yaml runs/default-model-31-start.safetensors
phase runs/default-model-31 $R/finetune-17.yaml --checkpoint runs/default-model-31-start.safetensors --max-steps 400
phase runs/default-model-32 $R/finetune-18.yaml --checkpoint runs/default-model-31/model.safetensors --max-steps 400
phase runs/default-model-33 $R/finetune-17.yaml --checkpoint runs/default-model-32/model.safetensors --max-steps 400
phase runs/default-model-34 $R/finetune-18.yaml --checkpoint runs/default-model-33/model.safetensors --max-steps 400

fomm convert runs/default-model-34/model.safetensors fomm_model/weights/default.safetensors --inference-only --half
[ -d data/synthetic-heldout ] || fomm make-synthetic data/synthetic-heldout --num-videos 41 --test-videos 40 --seed 1
fomm reconstruct --checkpoint default --data data/synthetic-heldout --out runs/default-model-34/heldout
