#!/usr/bin/env bash
# One GPU against `torchrun --nproc-per-node N` for `ssmzoo eval`, same data, same run.
#
#   benchmarks/eval_scaling.sh PHOTOS_DIR [COPIES] [NPROC] [MODEL]
#
# PHOTOS_DIR holds an ImageNet val tree (val/<synset>/*.JPEG, broken files welcome). Each photo is
# copied COPIES times (distinct file names, so every copy is decoded again) to make a set big enough
# for the speed to show; the weights are a random-init checkpoint (speed and sharding only: the
# accuracy of random weights means nothing). A short untimed run first fills the Triton kernel cache,
# so neither timed run pays for compiling kernels. Prints both summaries, the wall times and whether
# both runs predicted the same for every file.
set -euo pipefail
photos=${1:?usage: eval_scaling.sh PHOTOS_DIR [COPIES] [NPROC] [MODEL]}
copies=${2:-30}
nproc=${3:-2}
model=${4:-groupmamba_tiny}
work=$(mktemp -d)

for dir in "$photos"/val/*/; do
  synset=$(basename "$dir")
  mkdir -p "$work/val/$synset"
  for f in "$dir"*; do
    name=$(basename "$f")
    for i in $(seq 1 "$copies"); do cp "$f" "$work/val/$synset/${i}_$name"; done
  done
done
echo "dataset: $(find "$work/val" -type f | wc -l) files in $work/val"

python - "$model" "$work/weights.safetensors" <<'EOF'
import sys, timm, torch, ssmzoo  # noqa: F401  (ssmzoo registers the models with timm)
from safetensors.torch import save_file
torch.manual_seed(0)
model = timm.create_model(sys.argv[1])
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, sys.argv[2])
EOF

common=(eval --dataset imagenet --data-dir "$work" --model "$model" --weights "$work/weights.safetensors"
        --dtype bf16 --batch-size 128)
python -m ssmzoo "${common[@]}" --limit 256 > /dev/null 2>&1  # warm-up: Triton/cuDNN caches
start=$(date +%s.%N)
python -m ssmzoo "${common[@]}" --output "$work/one.json" --per-sample "$work/one.csv"
one=$(python -c "import sys; print(round($(date +%s.%N) - $start, 1))")
start=$(date +%s.%N)
torchrun --standalone --nproc-per-node "$nproc" -m ssmzoo "${common[@]}" --output "$work/many.json" \
  --per-sample "$work/many.csv"
many=$(python -c "import sys; print(round($(date +%s.%N) - $start, 1))")

echo "wall, whole command: 1 process ${one} s; torchrun ${nproc} processes ${many} s"
python - "$work/one.json" "$work/many.json" "$work/one.csv" "$work/many.csv" <<'EOF'
import csv, json, sys
one, many = (json.load(open(p)) for p in sys.argv[1:3])
print(json.dumps({"one": one, "many": many}, indent=1))
runs = [{r["path"]: r for r in csv.DictReader(open(p))} for p in sys.argv[3:5]]
same_items = runs[0].keys() == runs[1].keys()
fields = [k for k in next(iter(runs[0].values())) if k != "probability"]
differ = [p for p in runs[0] if p in runs[1] and any(runs[0][p][k] != runs[1][p][k] for k in fields)]
prob_diff = max((abs(float(runs[0][p]["probability"] or 0) - float(runs[1][p]["probability"] or 0))
                 for p in runs[0] if p in runs[1]), default=0.0)
print(f"same files in both runs: {same_items} ({len(runs[0])} rows); rows differing in anything but the "
      f"probability: {len(differ)}; max |probability difference|: {prob_diff:.2e} (bf16: batches differ by rank)")
EOF
