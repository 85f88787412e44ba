#!/usr/bin/env bash
# Train the two demo models on one GPU machine with no network access, in one go:
# build the demo corpus there (too large to carry), train the U-Net initializer and the
# epsilon network at once on the GPU through the bundle's own training configs, export both
# to $OUT/models, then run the GPU-marked tests and a CUDA timing of the speed benchmark.
#
# Expects (carried from the development machine): .carry/wheels/*.whl (monai, sigpy,
# pywavelets, nibabel, pydicom, pytorch-ignite, fire, termcolor) and .carry/template/ (the three
# MNI ICBM152 2009a files nilearn ships). Run from the repository root with $OUT set.
# Checkpoints go under $OUT/runs so a run cut short by the device time limit still brings
# back its last checkpoint (rerunning the same command with --output_dir there resumes).
set -uo pipefail
OUT=${OUT:?set OUT to the output folder}
C=bundles/ccdf_mri_recon/configs
SCORE_S=${SCORE_S:-240}
UNET_S=${UNET_S:-200}
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start )) s] $*"; }

python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $OUT/gpu.txt
python3 -c "import torch, monai; print('torch', torch.__version__, 'monai', monai.__version__)" | tee -a $OUT/gpu.txt

stamp "corpus"
python3 -m data_prep.make_demo_corpus --out demo_data/corpus --num-test 0 --template-dir .carry/template --quiet \
    > $OUT/corpus.log 2>&1 || { cat $OUT/corpus.log; exit 1; }
cp demo_data/corpus/corpus.json $OUT/ 2>/dev/null

stamp "training (U-Net ${UNET_S} s, epsilon network ${SCORE_S} s, concurrently)"
mkdir -p $OUT/models
python3 -m monai.bundle run --config_file $C/train_unet.json --dataset_dir demo_data/corpus \
    --num_workers 6 --max_epochs 100 --epoch_length 100 --batch_size 16 --learning_rate 0.001 \
    --time_limit_s $UNET_S --output_dir $OUT/runs/unet --model_path $OUT/models/unet.pt > $OUT/unet.log 2>&1 &
python3 -m monai.bundle run --config_file $C/train_score.json --dataset_dir demo_data/corpus \
    --num_workers 8 --max_epochs 100 --epoch_length 100 --batch_size 16 --patches_per_slice 4 \
    --patch_size "[128,128]" --learning_rate 0.0005 \
    --time_limit_s $SCORE_S --output_dir $OUT/runs/score --model_path $OUT/models/score_net.pt > $OUT/score.log 2>&1 &
wait
tail -n 3 $OUT/unet.log $OUT/score.log
ls -la $OUT/models
cp $OUT/models/* bundles/ccdf_mri_recon/models/ 2>/dev/null

stamp "GPU tests"
timeout 60 python3 -m pytest -q -p no:cacheprovider -m gpu tests > $OUT/gpu_tests.log 2>&1; tail -n 3 $OUT/gpu_tests.log

stamp "CUDA speed benchmark"
timeout 90 python3 -m benchmarks.speed --device cuda --quick --models bundles/ccdf_mri_recon/models \
    --out $OUT/speed > $OUT/speed.log 2>&1; tail -n 5 $OUT/speed.log
stamp "done"
