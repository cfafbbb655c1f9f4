#!/usr/bin/env bash
# Rebuild the bundled baseline and its text-only comparisons from the bundled sample, offline.
#
#   bash baseline_models/build.sh [WORK_DIR] [SEEDS]      (default: runs/baseline, "13")
#
# 1. collect the bundled sample into a store and write the sample's hand-made gold spans into it as
#    its gold (adjudication rows, method `sample`): they are the training data;
# 2. write from-scratch encoders: a BERT (2 layers, width 128) whose WordPiece tokenizer is trained
#    on the train split's texts only, and a CLIP vision tower (2 layers, width 64, 64 px);
# 3. train 2m-ner, text-crf and text-linear the same way (same encoders, data, split, settings);
# 4. evaluate each on the validation and test splits (reports under WORK_DIR/store/reports).
# The 2m-ner model of the first seed is copied to mmner_data/bundled_models/mmner-tiny-2m-ner (package data).
set -euo pipefail
WORK=${1:-runs/baseline}
SEEDS=${2:-13}
HERE=$(cd "$(dirname "$0")" && pwd)
export MMNER_PSEUDONYM_SALT=${MMNER_PSEUDONYM_SALT:-baseline-salt}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

[ -f "$WORK/store/corpus.sqlite" ] ||
  mmner-data collect -r "$HERE/../recipes/sample.yaml" --store "$WORK/store" --no-progress --json >/dev/null
python -m mmner_data.labels sample-gold --store "$WORK/store" >/dev/null
[ -d "$WORK/encoders/text" ] ||
  python -m mmner_data.models.scratch text --data "$WORK/store" --split train \
    --out "$WORK/encoders/text" --vocab-size 3000 --hidden 128 --layers 2 --heads 4
[ -d "$WORK/encoders/vision" ] ||
  python -m mmner_data.models.scratch vision --out "$WORK/encoders/vision" \
    --image-size 64 --patch-size 16 --hidden 64 --layers 2 --heads 2

mkdir -p "$WORK/models" "$WORK/reports"
for seed in $SEEDS; do
  for model in 2m-ner text-crf text-linear; do
    out="$WORK/models/$model-s$seed"
    [ -f "$out/training_log.json" ] ||
      mmner-data train --data "$WORK/store" --output "$out" --model "$model" \
        --text-encoder "$WORK/encoders/text" --image-encoder "$WORK/encoders/vision" --tune-image \
        --epochs 40 --patience 10 --batch-size 8 --lr-encoder 1e-3 --lr-head 1e-3 \
        --seed "$seed" --device cpu --no-progress --json >"$out.train.json"
    for split in validation test; do
      mmner-data evaluate --model "$out" --data "$WORK/store" --split "$split" \
        --output "$WORK/reports" --no-progress --json >"$out.$split.json"
    done
  done
done

first=${SEEDS%% *}
dest="$HERE/../mmner_data/bundled_models/mmner-tiny-2m-ner"
rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
cp -r "$WORK/models/2m-ner-s$first"/{config.json,labels.json,model.safetensors,tokenizer,text_encoder,image_encoder,training_args.json,training_log.json} "$dest.tmp/"
cp "$WORK/reports/evaluate_2m-ner-s${first}_"{validation,test}.{json,md,png} "$dest.tmp/"
rm -rf "$dest" && mv "$dest.tmp" "$dest"
python "$HERE/summarise.py" "$WORK" $SEEDS
