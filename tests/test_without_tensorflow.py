"""The core runs without TensorFlow, tensorflow-datasets and clu: both digits main jobs train a
few steps in subprocesses where they cannot be imported (`run_restricted.py --no-tensorflow`), write
TensorBoard files that TensorBoard's own reader reads back, print progress lines and keep
orbax's log off the console; every entry point imports; a tfds dataset asks for the extra.
The eval and sample commands under the same blocker are in the slow tier."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from helpers import JOB_TIMEOUT_S, REPO, worker_env
from tensorboard.backend.event_processing import event_accumulator

from gencore import digits_classifier, reference_stats

RUNNER = str(REPO / "tests" / "run_restricted.py")
JOBS = {
    "biggan": ("configs/biggan/digits.py", {
        "model.g_ch": 4, "model.d_ch": 4, "model.z_dim": 24, "model.shared_dim": 8,
        "train.batch_size": 16, "train.steps": 4, "train.log_every": 2,
        "train.checkpoint_every": 2, "train.sample_every": 4, "train.ema_start": 1,
        "eval.num_samples": 20, "eval.batch_size": 10, "eval.standing_stats_passes": 1,
        "eval.truncations": "(1.0,)"}),
    "diffusion": ("configs/diffusion/digits.py", {
        "data.resolution": 8, "model.ch": 32, "model.ch_mult": "(1,)",
        "model.num_res_blocks": 1, "model.attn_resolutions": "()", "diffusion.num_steps": 10,
        "train.batch_size": 16, "train.steps": 4, "train.warmup": 0, "train.log_every": 2,
        "train.checkpoint_every": 2, "train.sample_every": 4, "train.ema_start": 1,
        "eval.num_samples": 20, "eval.batch_size": 10, "eval.sample_steps": 2,
        "eval.bpd_examples": 10, "eval.bpd_split": "train"}),
}
ENTRY_POINTS = ["biggan.main", "biggan.eval", "biggan.sample", "biggan.summary",
                "biggan.memorization", "biggan.plot_spectra", "biggan.convert_pretrained",
                "diffusion.main", "diffusion.eval", "diffusion.sample", "diffusion.summary",
                "gencore.reference_stats", "gencore.convert_inception",
                "gencore.digits_classifier"]


def run_blocked(module, *args, env=None):
    """``run_restricted.py --no-tensorflow <module> <args>``: asserts exit 0; (stdout, stderr)."""
    done = subprocess.run([sys.executable, RUNNER, "--no-tensorflow", module, *args],
                          capture_output=True,
                          text=True, timeout=JOB_TIMEOUT_S, env=env or worker_env(), cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, done.stderr


def train(family, workdir):
    config, overrides = JOBS[family]
    return run_blocked(f"{family}.main", f"--config={config}", f"--workdir={workdir}",
                       *(f"--config.{k}={v}" for k, v in overrides.items()))


def test_entry_points_import_without_tensorflow():
    code = "; ".join(f"import {m}" for m in ENTRY_POINTS)
    done = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(REPO / 'tests')!r}); "
         "import run_restricted; run_restricted.block_tensorflow(); "
         + code], capture_output=True, text=True, timeout=JOB_TIMEOUT_S, env=worker_env(),
        cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("family", ["biggan", "diffusion"])
def test_digits_main_job_runs_without_tensorflow(family, tmp_path):
    out, err = train(family, tmp_path)
    assert "step 2/4" in out and "step 4/4" in out and "ETA" in out
    assert "CheckpointManager" not in out + err          # orbax's INFO chatter: log file only
    assert "CheckpointManager" in (tmp_path / "logs" / "train.log").read_text()
    events = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    assert "steps_per_sec" in tags["scalars"] and "samples" in tags["images"]
    loss = "g_loss" if family == "biggan" else "loss"
    assert [e.step for e in events.Scalars(loss)] == [2, 4]
    assert (tmp_path / "samples" / "ema_00000004.png").exists()


@pytest.mark.slow   # two trainings, then eval and sample commands: minutes on 2 cores
@pytest.mark.parametrize("family", ["biggan", "diffusion"])
def test_eval_and_sample_run_without_tensorflow(family, tmp_path):
    train(family, tmp_path / "run")
    classifier = tmp_path / "classifier.npz"
    params = digits_classifier.DigitsCNN().init(
        jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
    digits_classifier.save_classifier(params, {"test_accuracy": 0.0}, classifier)
    env = {**worker_env(), digits_classifier.CACHE_ENV_VAR: str(classifier),
           reference_stats.CACHE_ENV_VAR: str(tmp_path / "reference_stats")}
    config, overrides = JOBS[family]
    config_flags = [f"--config={config}", *(f"--config.{k}={v}" for k, v in overrides.items())]
    run_blocked(f"{family}.eval", *config_flags, f"--workdir={tmp_path / 'run'}", "--step=4",
                env=env)
    events = event_accumulator.EventAccumulator(str(tmp_path / "run" / "eval"))
    events.Reload()
    assert events.Tags()["scalars"]
    run_blocked(f"{family}.sample", f"--workdir={tmp_path / 'run'}",
                f"--out={tmp_path / 'sheet.png'}", *(["--classes=1,2", "--truncation=1.0"]
                                                     if family == "biggan" else ["--steps=2"]),
                env=env)
    assert os.path.getsize(tmp_path / "sheet.png") > 0
