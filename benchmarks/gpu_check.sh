#!/usr/bin/env bash
# One run on one GPU (H100 / H200) in at most 8 minutes; everything goes under OUT_DIR.
#
#   bash benchmarks/gpu_check.sh OUT_DIR [--smoke]
#
# Parts, each with its own time budget (a command gets at most what is left of its part's):
#   a  digits main jobs of both families, each followed by its eval and sample commands
#   b  our train steps at the papers' per-device settings, precision default / highest / bf16
#      (benchmarks/our_step.py: images/s, step FLOPs, fraction of the GPU's peak)
#   c  benchmarks/side_by_side.py --device=cuda (the 32 px settings), when BIGGAN_PYTORCH_DIR and
#      IMPROVED_DIFFUSION_DIR name checkouts and $REFERENCE_PYTHON (default python3) has torch
#   d  sampling: BigGAN-deep 128 G at batch 256, DDPM 50- and 1000-step sampling
# A failed or timed-out command is logged and the script goes on; it ends with a summary
# (OUT_DIR/summary.txt) and exits 1 when anything failed.
# --smoke: the same on the CPU, with tiny step counts, batches and widths.
set -u
out=${1:?usage: gpu_check.sh OUT_DIR [--smoke]}
smoke=${2:-}
if [[ -n $smoke && $smoke != --smoke ]]; then
  echo "gpu_check.sh: unknown argument $smoke (the only option is --smoke)" >&2
  exit 2
fi
cd "$(dirname "$0")/.." || exit 2
mkdir -p "$out"
out=$(cd "$out" && pwd)
log=$out/log.txt
summary=$out/summary.txt
: > "$summary"
python=${PYTHON:-python3}
reference_python=${REFERENCE_PYTHON:-$python}
export REFERENCE_PYTHON=$reference_python

note() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$log"; }

part_end=0
part() {  # part NAME SECONDS
  part_end=$((SECONDS + $2))
  note "=== part $1 (budget $2 s)"
}

run() {  # run NAME CAP_SECONDS COMMAND...: stdout to OUT/NAME.out, stderr to the log
  local name=$1 cap=$(($2 * cap_scale))
  shift 2
  local left=$((part_end - SECONDS))
  if ((left < 5)); then
    note "SKIP $name: the part's budget is spent"
    echo "SKIP $name" >> "$summary"
    return 1
  fi
  ((cap > left)) && cap=$left
  note "RUN $name (limit $cap s): $*"
  local start=$SECONDS
  timeout --kill-after=10 "$cap" "$@" > "$out/$name.out" 2>> "$log"
  local rc=$?
  if ((rc == 0)); then
    note "PASS $name in $((SECONDS - start)) s"
    echo "PASS $name $((SECONDS - start))s" >> "$summary"
  else
    note "FAIL $name: exit $rc after $((SECONDS - start)) s"
    echo "FAIL $name rc=$rc $((SECONDS - start))s" >> "$summary"
  fi
  return $rc
}

digits_jobs() {  # digits_jobs NAME PACKAGE: the main job, then its eval (of the last
  # checkpoint) and sample commands; their config overrides and sample flags are the arrays
  # NAME_overrides and NAME_sample.
  local name=$1 package=$2 config=configs/$2/digits.py workdir=$out/$1
  local -n overrides=${name}_overrides sample=${name}_sample
  if run "${name}_main" 120 "$python" -m "$package.main" --config="$config" \
      --workdir="$workdir" "${overrides[@]}"; then
    run "${name}_eval" 60 "$python" -m "$package.eval" --config="$config" \
      --workdir="$workdir" --latest "${overrides[@]}"
    run "${name}_sample" 30 "$python" -m "$package.sample" --workdir="$workdir" \
      --out="$out/${name}_sheet.png" "${sample[@]}"
  fi
}

biggan_digits_sample=(--classes=0,1,2,3,4,5,6,7,8,9 --truncation=0.5)
if [[ -n $smoke ]]; then
  export JAX_PLATFORMS=cpu
  device=cpu
  budget_a=600 budget_b=900 budget_c=600 budget_d=300
  biggan_digits_overrides=(--config.train.steps=4 --config.train.checkpoint_every=4
    --config.train.sample_every=4 --config.train.log_every=2 --config.eval.num_samples=40
    --config.eval.batch_size=20 --config.eval.standing_stats_passes=1)
  ddpm_digits_overrides=(--config.train.steps=4 --config.train.checkpoint_every=4
    --config.train.sample_every=4 --config.train.log_every=2 --config.eval.num_samples=20
    --config.eval.batch_size=10 --config.eval.sample_steps=2 --config.eval.bpd_examples=0)
  ddpm_digits_sample=(--num=1 --steps=4)
  cap_scale=10   # compiles on a loaded 2-core machine take minutes
  step_flags=(--smoke --steps=1)
  step_settings=(biggan_cifar10 ddpm_cifar10)
  precision_settings=(biggan_cifar10)
  side_by_side_flags=(--smoke --settings=biggan_cifar10,ddpm_cifar10)
  sample_batch=2 full_1000=()
else
  device=cuda
  budget_a=190 budget_b=170 budget_c=60 budget_d=60
  biggan_digits_overrides=() ddpm_digits_overrides=() ddpm_digits_sample=() cap_scale=1
  step_flags=(--steps=5)
  step_settings=(biggan_cifar10 biggan128 biggan_deep128 ddpm_cifar10 iddpm_cifar10_hybrid)
  precision_settings=("${step_settings[@]}")
  # The 32 px settings only, to fit the part's minute; the 128 px ones need a run of their own.
  side_by_side_flags=(--rounds=2 --steps=3 --settings=biggan_cifar10,ddpm_cifar10)
  sample_batch=256 full_1000=(--full_1000)
fi
note "gpu_check.sh ${smoke:-full} on $device; out $out; git $(git rev-parse --short HEAD 2>/dev/null)"
"$python" -c "import jax; print('jax', jax.__version__, jax.devices())" >> "$log" 2>&1

part a "$budget_a"
digits_jobs biggan_digits biggan
digits_jobs ddpm_digits diffusion

part b "$budget_b"
for setting in "${step_settings[@]}"; do
  run "step_${setting}_default" 60 "$python" benchmarks/our_step.py --setting="$setting" \
    --precision=default "${step_flags[@]}"
done
for precision in highest bf16; do
  for setting in "${precision_settings[@]}"; do
    run "step_${setting}_$precision" 60 "$python" benchmarks/our_step.py \
      --setting="$setting" --precision="$precision" "${step_flags[@]}"
  done
done
if [[ -z $smoke ]]; then  # a large BigGAN 128 per-device batch (BIGGAN128_BATCH, default 256)
  run "step_biggan128_default_batch${BIGGAN128_BATCH:-256}" 60 "$python" \
    benchmarks/our_step.py --setting=biggan128 --batch="${BIGGAN128_BATCH:-256}" \
    --precision=default "${step_flags[@]}"
fi

part c "$budget_c"
if [[ ! -f ${BIGGAN_PYTORCH_DIR:-}/train_fns.py ||
      ! -f ${IMPROVED_DIFFUSION_DIR:-}/improved_diffusion/train_util.py ]]; then
  note "SKIP side_by_side: set BIGGAN_PYTORCH_DIR and IMPROVED_DIFFUSION_DIR to the checkouts"
  echo "SKIP side_by_side (no reference checkouts)" >> "$summary"
elif ! "$reference_python" -c "import torch" 2>> "$log"; then
  note "SKIP side_by_side: $reference_python cannot import torch"
  echo "SKIP side_by_side (no torch)" >> "$summary"
else
  run side_by_side 100 "$python" benchmarks/side_by_side.py --device="$device" \
    "${side_by_side_flags[@]}"
fi

part d "$budget_d"
run sample_biggan_deep128 40 "$python" benchmarks/pretrained_sample.py --notorch \
  --batch="$sample_batch" --repeats=3
run sample_ddpm "$budget_d" "$python" benchmarks/diffusion_sample.py --batch="$sample_batch" \
  --repeats=1 "${full_1000[@]}"

note "=== summary"
tee -a "$log" < "$summary"
! grep -q '^FAIL' "$summary"
