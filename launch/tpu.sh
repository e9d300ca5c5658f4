#!/usr/bin/env bash
# Cloud TPU launcher for the BigGAN and diffusion training and eval jobs. See --help.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO
# On the workers, relative to the home directory (where `tpu-vm ssh --command` starts).
readonly REMOTE_DIR=biggan-diffusion-jax
readonly DEFAULT_ZONE=europe-west4-a
readonly DEFAULT_EVAL_TYPE=v3-8

usage() {
  cat <<'EOF'
Usage: launch/tpu.sh <command> [options] [-- job args...]

Runs a training job on every worker of a Cloud TPU VM (or queued resource) and an eval job on a
second, small TPU VM. Every gcloud call is printed (prefixed with "+") before it runs.

Commands
  create    Create the TPU VM (or, with --queued, a queued resource). With --eval: the eval VM.
  setup     Copy this checkout (git-tracked and untracked, non-ignored files) to every worker
            with `tpu-vm scp --worker=all`, or clone --git-url there, then
            `pip install -e '.[tpu,tfds]'` on every worker (jax[tpu], TensorFlow, tfds).
  train     Start `python3 -m <model>.main --config=C --workdir=W --multihost [job args]` on all
            workers at once (--worker=all), in the background with nohup; the log goes to
            ~/train.log on each worker. Starting it again with the same --workdir (e.g. on a new
            VM after a preemption) resumes from the latest checkpoint.
  eval      Start `python3 -m <model>.eval --config=C --workdir=W --multihost [job args]` on the
            eval VM (log: ~/eval.log). It follows the checkpoints the train job writes.
  logs      Follow the log of one worker (--worker, default 0); with --eval, the eval job's.
  stop      Send SIGTERM to the job on every worker: it writes a checkpoint and exits cleanly.
  status    Describe the TPU VM (or queued resource).
  delete    Delete the TPU VM (or queued resource, with --queued). With --eval: the eval VM.

Options (give the same ones to every command of one run)
  --name NAME              TPU VM / queued resource name (default: biggan-diffusion).
  --zone ZONE              Zone (default: europe-west4-a, which has v3 pods).
  --project PROJECT        Project (default: the one in `gcloud config`).
  --accelerator-type TYPE  TPU type, e.g. v3-128. Valid types:
                             v2-{8,32,128,256,512}
                             v3-{8,32,64,128,256,512,1024,2048}
                             v4-{8,16,32,64,128,256,512,1024,2048,4096}
                             v5litepod-{1,4,8,16,32,64,128,256} (alias v5e-N)
                             v5p-{8,16,32,64,128,256,512,1024,2048,4096,8192}
                             v6e-{1,4,8,16,32,64,128,256}
  --resolution R           Picks the paper's TPU when --accelerator-type is not given:
                           BigGAN 128 -> v3-128, 256 -> v3-256, 512 -> v3-512, <= 64 -> v3-8;
                           diffusion models -> v3-8 (DDPM trained every model on a v3-8).
                           Default: data.resolution of --config (read with python3).
  --version VERSION        TPU software version (default: tpu-ubuntu2204-base for v2-v4,
                           v2-alpha-tpuv5-lite for v5e, v2-alpha-tpuv5 for v5p,
                           v2-alpha-tpuv6e for v6e).
  --spot                   Spot VM (preemptible at any time; resume with the same --workdir).
  --preemptible            Preemptible VM (TPU VMs only; queued resources take --spot).
  --queued                 create/delete/status a queued resource instead of a plain TPU VM.
  --config FILE[:ROW]      Config file relative to the repo root, e.g.
                           configs/biggan/imagenet128.py:row8 (train, eval).
  --workdir gs://BUCKET/DIR  Run directory shared by all workers and the eval job (train, eval).
  --model biggan|diffusion Job package (default: diffusion for configs/diffusion/*, else biggan).
  --batch N                Global batch size, passed as --config.train.batch_size=N.
  --git-url URL            setup: clone this repository on the workers instead of copying.
  --git-ref REF            setup: branch, tag or commit to check out after cloning.
  --eval                   Make create/setup/logs/stop/status/delete act on the eval VM.
  --eval-name NAME         Eval VM name (default: <name>-eval).
  --eval-accelerator-type TYPE  Eval VM type (default: v3-8).
  --worker N               logs: which worker (default 0).
  --dry-run                Print the commands without running anything.
  -h, --help               This help.
  -- ARGS...               Passed to the python job, e.g. -- --config.train.steps=100000

Validation (before any gcloud call): the accelerator type must be one of the above, and the
global batch (--batch, or --config.train.batch_size=N after --, or the config's
train.batch_size) must be divisible by the number of JAX devices of the TPU:
  v2-N, v3-N: N devices (N counts TensorCores, one JAX device each);
  v4-N, v5p-N: N/2 devices (N counts TensorCores, two per chip form one megacore device);
  v5litepod-N, v6e-N: N devices (N counts chips, one core each).

Example (BigGAN 128, Table 1 row 8, on a spot v3-128):
  R="--name bg128 --config configs/biggan/imagenet128.py:row8 --workdir gs://my-bucket/bg128"
  launch/tpu.sh create $R --spot && launch/tpu.sh setup $R && launch/tpu.sh train $R
  launch/tpu.sh create $R --eval && launch/tpu.sh setup $R --eval && launch/tpu.sh eval $R
  launch/tpu.sh logs $R;  launch/tpu.sh stop $R;  launch/tpu.sh delete $R [--eval]
After a preemption: delete, create, setup and train again with the same options.
EOF
}

die() {
  echo "tpu.sh: error: $*" >&2
  exit 2
}

# Prints its argument, in single quotes unless it is made of plain characters only.
quote() {
  if [[ "$1" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# Prints a command, copy-pastable into a shell, then runs it unless --dry-run.
run() {
  printf '+'
  local arg
  for arg in "$@"; do
    printf ' %s' "$(quote "$arg")"
  done
  printf '\n'
  if [[ "$DRY_RUN" == 0 ]]; then
    "$@"
  fi
}

# Like run, for a local shell pipeline given as one string.
run_shell() {
  printf '+ %s\n' "$1"
  if [[ "$DRY_RUN" == 0 ]]; then
    bash -c "$1"
  fi
}

valid_sizes() {
  case "$1" in
    v2) echo "8 32 128 256 512" ;;
    v3) echo "8 32 64 128 256 512 1024 2048" ;;
    v4) echo "8 16 32 64 128 256 512 1024 2048 4096" ;;
    v5litepod | v6e) echo "1 4 8 16 32 64 128 256" ;;
    v5p) echo "8 16 32 64 128 256 512 1024 2048 4096 8192" ;;
    *) return 1 ;;
  esac
}

all_types() {
  local generation
  for generation in v2 v3 v4 v5litepod v5p v6e; do
    printf '  %s-{%s}\n' "$generation" "$(valid_sizes "$generation" | tr ' ' ',')"
  done
}

# Checks a type (v5e-N becomes v5litepod-N) and prints it.
check_type() {
  local type="${1/#v5e-/v5litepod-}"
  local generation="${type%-*}" size="${type##*-}"
  if [[ "$type" != *-* ]] || ! valid_sizes "$generation" >/dev/null ||
    [[ " $(valid_sizes "$generation") " != *" $size "* ]]; then
    die "unknown accelerator type '$1'. Valid types:
$(all_types)"
  fi
  echo "$type"
}

# Number of JAX devices of a (valid) type; see --help.
device_count() {
  local generation="${1%-*}" size="${1##*-}"
  case "$generation" in
    v4 | v5p) echo $((size / 2)) ;;
    *) echo "$size" ;;
  esac
}

software_version() {
  case "${1%-*}" in
    v5litepod) echo v2-alpha-tpuv5-lite ;;
    v5p) echo v2-alpha-tpuv5 ;;
    v6e) echo v2-alpha-tpuv6e ;;
    *) echo tpu-ubuntu2204-base ;;
  esac
}

# Prints "<data.resolution> <train.batch_size>" of --config, or fails.
config_values() {
  (cd "$REPO" && PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" python3 - "$CONFIG" 2>/dev/null) <<'PY'
import sys
from gencore.config_util import load_config
config = load_config(sys.argv[1])
print(config.data.resolution, config.train.batch_size)
PY
}

default_type() {
  local resolution="$1"
  if [[ "$MODEL" == diffusion || "$resolution" -le 64 ]]; then
    echo v3-8
  elif [[ "$resolution" -le 128 ]]; then
    echo v3-128
  elif [[ "$resolution" -le 256 ]]; then
    echo v3-256
  else
    echo v3-512
  fi
}

# Sets TYPE from --accelerator-type, --resolution or the config's data.resolution.
resolve_type() {
  if [[ -n "$ACCELERATOR_TYPE" ]]; then
    TYPE="$(check_type "$ACCELERATOR_TYPE")"
    return
  fi
  local resolution="$RESOLUTION"
  if [[ -z "$resolution" ]]; then
    [[ -n "$CONFIG" ]] || die "give --accelerator-type, --resolution or --config"
    local values
    values="$(config_values)" ||
      die "could not read data.resolution from --config=$CONFIG with python3; give --accelerator-type or --resolution"
    resolution="${values% *}"
  fi
  [[ "$resolution" =~ ^[0-9]+$ ]] || die "--resolution must be a number, got '$resolution'"
  TYPE="$(default_type "$resolution")"
}

# Fails unless the global batch divides over the TPU's devices.
check_batch() {
  local batch="$BATCH" source="--batch"
  if [[ -z "$batch" ]]; then
    local values
    values="$(config_values)" || {
      echo "tpu.sh: warning: could not read train.batch_size of $CONFIG; batch not checked" >&2
      return 0
    }
    batch="${values#* }" source="train.batch_size of $CONFIG"
  fi
  [[ "$batch" =~ ^[0-9]+$ && "$batch" -gt 0 ]] || die "$source must be a positive integer, got '$batch'"
  local devices
  devices="$(device_count "$TYPE")"
  if ((batch % devices)); then
    die "$source=$batch is not divisible by the $devices JAX devices of $TYPE; use a multiple of $devices (e.g. $(((batch / devices + 1) * devices)))"
  fi
}

require_run_options() {
  [[ -n "$CONFIG" ]] || die "$COMMAND needs --config FILE[:ROW]"
  [[ -f "$REPO/${CONFIG%%:*}" ]] || die "config file '${CONFIG%%:*}' not found under $REPO"
  [[ "$WORKDIR" == gs://* ]] ||
    die "$COMMAND needs --workdir gs://BUCKET/DIR (shared by all workers and the eval job), got '$WORKDIR'"
}

gcloud_tpu() {
  run gcloud compute tpus "$@" --zone="$ZONE" ${PROJECT:+--project="$PROJECT"}
}

ssh_workers() {
  local workers="$1" command="$2"
  gcloud_tpu tpu-vm ssh "$TARGET" --worker="$workers" --command="$command"
}

cmd_create() {
  local version="${VERSION:-$(software_version "$TYPE")}"
  if [[ "$QUEUED" == 1 ]]; then
    [[ "$PREEMPTIBLE" == 0 ]] || die "queued resources take --spot, not --preemptible"
    gcloud_tpu queued-resources create "$TARGET" --node-id="$TARGET" \
      --accelerator-type="$TYPE" --runtime-version="$version" ${SPOT:+--spot}
  else
    gcloud_tpu tpu-vm create "$TARGET" --accelerator-type="$TYPE" --version="$version" \
      ${SPOT:+--spot} ${PREEMPTIBLE_FLAG:+--preemptible}
  fi
}

cmd_setup() {
  local install="cd $REMOTE_DIR && python3 -m pip install -e '.[tpu,tfds]'"
  if [[ -n "$GIT_URL" ]]; then
    local clone
    clone="rm -rf $REMOTE_DIR && git clone $(printf %q "$GIT_URL") $REMOTE_DIR"
    [[ -z "$GIT_REF" ]] || clone+=" && git -C $REMOTE_DIR checkout $(printf %q "$GIT_REF")"
    ssh_workers all "$clone && $install"
  else
    local archive="${TMPDIR:-/tmp}/$TARGET-code.tgz"
    run_shell "git -C $(printf %q "$REPO") ls-files -z --cached --others --exclude-standard | tar -C $(printf %q "$REPO") --null -T - -czf $(printf %q "$archive")"
    gcloud_tpu tpu-vm scp "$archive" "$TARGET:code.tgz" --worker=all
    ssh_workers all "rm -rf $REMOTE_DIR && mkdir -p $REMOTE_DIR && tar -xzf code.tgz -C $REMOTE_DIR && $install"
  fi
}

# Starts `python3 -m <module> ...` on all workers of TARGET in the background; $1: log name.
start_job() {
  local name="$1" module="$2" job
  job="$(printf '%q ' python3 -m "$module" --config="$CONFIG" --workdir="$WORKDIR" --multihost \
    ${BATCH:+--config.train.batch_size="$BATCH"} "${JOB_ARGS[@]+"${JOB_ARGS[@]}"}")"
  local pid="\$HOME/$name.pid"
  # `nohup ... &` alone is backgrounded, so $! is the job's own pid (stop sends it SIGTERM).
  ssh_workers all "cd $REMOTE_DIR || exit 1; if [ -f $pid ] && kill -0 \"\$(cat $pid)\" 2>/dev/null; then echo '$name job already running' >&2; exit 1; fi; nohup ${job}> \$HOME/$name.log 2>&1 < /dev/null & echo \$! > $pid"
}

cmd_train() {
  require_run_options
  resolve_type
  check_batch
  start_job train "$MODEL.main"
}

cmd_eval() {
  require_run_options
  start_job eval "$MODEL.eval"
}

cmd_logs() {
  ssh_workers "$WORKER" "tail -n 200 -F \$HOME/$LOG_NAME.log"
}

cmd_stop() {
  local pid="\$HOME/$LOG_NAME.pid"
  ssh_workers all "if [ -f $pid ]; then kill -TERM \"\$(cat $pid)\" 2>/dev/null || true; fi"
}

cmd_status() {
  if [[ "$QUEUED" == 1 ]]; then
    gcloud_tpu queued-resources describe "$TARGET"
  else
    gcloud_tpu tpu-vm describe "$TARGET"
  fi
}

cmd_delete() {
  if [[ "$QUEUED" == 1 ]]; then
    gcloud_tpu queued-resources delete "$TARGET" --force --quiet
  else
    gcloud_tpu tpu-vm delete "$TARGET" --quiet
  fi
}

main() {
  COMMAND="" NAME=biggan-diffusion ZONE="$DEFAULT_ZONE" PROJECT="" ACCELERATOR_TYPE=""
  RESOLUTION="" VERSION="" SPOT="" PREEMPTIBLE=0 PREEMPTIBLE_FLAG="" QUEUED=0 CONFIG=""
  WORKDIR="" MODEL="" BATCH="" GIT_URL="" GIT_REF="" EVAL=0 EVAL_NAME=""
  EVAL_TYPE="$DEFAULT_EVAL_TYPE" WORKER=0 DRY_RUN=0 JOB_ARGS=()
  while (($#)); do
    local option="$1" value=""
    if [[ "$option" == --*=* ]]; then
      value="${option#*=}" option="${option%%=*}"
    elif [[ $# -ge 2 ]]; then
      value="$2"
    fi
    case "$option" in
      -h | --help) usage; exit 0 ;;
      --dry-run) DRY_RUN=1 ;;
      --spot) SPOT=1 ;;
      --preemptible) PREEMPTIBLE=1 PREEMPTIBLE_FLAG=1 ;;
      --queued) QUEUED=1 ;;
      --eval) EVAL=1 ;;
      --) shift; JOB_ARGS=("$@"); break ;;
      --name | --zone | --project | --accelerator-type | --resolution | --version | --config | \
        --workdir | --model | --batch | --git-url | --git-ref | --eval-name | \
        --eval-accelerator-type | --worker)
        [[ -n "$value" ]] || die "$option needs a value"
        case "$option" in
          --name) NAME="$value" ;;
          --zone) ZONE="$value" ;;
          --project) PROJECT="$value" ;;
          --accelerator-type) ACCELERATOR_TYPE="$value" ;;
          --resolution) RESOLUTION="$value" ;;
          --version) VERSION="$value" ;;
          --config) CONFIG="$value" ;;
          --workdir) WORKDIR="${value%/}" ;;
          --model) MODEL="$value" ;;
          --batch) BATCH="$value" ;;
          --git-url) GIT_URL="$value" ;;
          --git-ref) GIT_REF="$value" ;;
          --eval-name) EVAL_NAME="$value" ;;
          --eval-accelerator-type) EVAL_TYPE="$value" ;;
          --worker) WORKER="$value" ;;
        esac
        [[ "$1" == --*=* ]] || shift
        ;;
      -*) die "unknown option '$option' (see --help)" ;;
      *)
        [[ -z "$COMMAND" ]] || die "unexpected argument '$option' (see --help)"
        COMMAND="$option"
        ;;
    esac
    shift
  done
  [[ -n "$COMMAND" ]] || { usage >&2; exit 2; }
  [[ "$SPOT" != 1 || "$PREEMPTIBLE" != 1 ]] || die "give --spot or --preemptible, not both"

  local arg
  for arg in "${JOB_ARGS[@]+"${JOB_ARGS[@]}"}"; do
    if [[ "$arg" == --config.train.batch_size=* ]]; then
      [[ -z "$BATCH" ]] || die "give the batch either as --batch or after --, not both"
      BATCH="${arg#*=}"
    fi
  done
  if [[ -z "$MODEL" && "$CONFIG" == configs/diffusion/* ]]; then
    MODEL=diffusion
  fi
  MODEL="${MODEL:-biggan}"
  [[ "$MODEL" == biggan || "$MODEL" == diffusion ]] || die "--model must be biggan or diffusion, got '$MODEL'"

  TARGET="$NAME" LOG_NAME=train
  if [[ "$EVAL" == 1 || "$COMMAND" == eval ]]; then
    TARGET="${EVAL_NAME:-$NAME-eval}" LOG_NAME=eval
  fi

  case "$COMMAND" in
    create)
      if [[ "$EVAL" == 1 ]]; then
        TYPE="$(check_type "$EVAL_TYPE")"
      else
        resolve_type
      fi
      cmd_create
      ;;
    setup | train | eval | logs | stop | status | delete) "cmd_$COMMAND" ;;
    *) die "unknown command '$COMMAND' (see --help)" ;;
  esac
}

main "$@"
