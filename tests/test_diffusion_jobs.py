"""The sampling and eval commands on a tiny trained diffusion run: ``python -m diffusion.sample``
writes an npz and a PNG sheet of the requested classes; ``python -m diffusion.eval`` follows the
run's checkpoints and writes one metrics JSON per checkpoint with the digits-classifier figures
per guidance scale and bits/dim, ``--latest`` evaluates the newest only, and an unreadable
bits/dim split is refused up front. A random-weight digits classifier stands in for the trained
one (test_digits_classifier checks that one), so no classifier is trained here."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import config_with
from PIL import Image

from diffusion import eval as diffusion_eval
from diffusion import train
from gencore import digits_classifier, reference_stats
from gencore.images import image_grid

JOB_TIMEOUT_S = 600
RES = 16
RUN = {"data.resolution": RES, "model.ch": 32, "model.ch_mult": (1,), "model.num_res_blocks": 1,
       "model.attn_resolutions": (), "model.dropout": 0.0, "diffusion.num_steps": 20,
       "train.batch_size": 16, "train.steps": 4, "train.warmup": 0, "train.ema_start": 1,
       "train.log_every": 2, "train.checkpoint_every": 2, "train.sample_every": 4,
       "eval.num_samples": 20, "eval.batch_size": 8, "eval.sample_steps": 2,
       "eval.bpd_examples": 10,
       "eval.bpd_split": "train"}   # 'heldout' would need data.train_fraction < 1
"""A 16x16 one-level U-Net on the digits, checkpoints at steps 2 and 4."""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ddpm_run")
    train.train_and_evaluate(config_with("configs/diffusion/digits.py", RUN), str(workdir))
    return workdir


def run_command(module, *flags, env=None):
    """Runs ``python -m <module> <flags>``; asserts exit status 0 and returns its stdout."""
    done = subprocess.run([sys.executable, "-m", module, *flags], capture_output=True,
                          text=True, timeout=JOB_TIMEOUT_S, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow   # a tiny training run + subprocesses: minutes on 2 shared cores
def test_sample_writes_npz_and_sheet_of_the_requested_classes(workdir, tmp_path):
    flags = ["--sampler=ddim", "--steps=2", "--guidance=2", "--classes=1,7", "--num=3",
             "--seed=5"]
    run_command("diffusion.sample", f"--workdir={workdir}", *flags,
                f"--out={tmp_path / 'samples.npz'}")
    saved = np.load(tmp_path / "samples.npz")
    images, labels = saved["images"], saved["labels"]
    assert images.shape == (6, RES, RES, 3) and images.dtype == np.float32
    assert labels.tolist() == [1, 1, 1, 7, 7, 7]
    assert np.all(np.isfinite(images)) and np.abs(images).max() <= 1.0
    assert images.std() > 0.01
    run_command("diffusion.sample", f"--workdir={workdir}", *flags,
                f"--out={tmp_path / 'sheet.png'}")
    sheet = np.asarray(Image.open(tmp_path / "sheet.png"))
    expected = image_grid(images, columns=3)    # same seed: the npz's images, 2 rows of 3
    assert sheet.shape == expected.shape == (2 * (RES + 2) + 2, 3 * (RES + 2) + 2, 3)
    np.testing.assert_allclose(sheet.astype(int), expected.astype(int), atol=1)


@pytest.mark.slow   # a tiny training run + subprocesses: minutes on 2 shared cores
def test_eval_follows_checkpoints_and_writes_json(workdir, tmp_path):
    classifier = tmp_path / "classifier.npz"
    params = digits_classifier.DigitsCNN().init(
        jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
    digits_classifier.save_classifier(params, {"test_accuracy": 0.0}, classifier)
    env = {**os.environ, digits_classifier.CACHE_ENV_VAR: str(classifier),
           reference_stats.CACHE_ENV_VAR: str(tmp_path / "reference_stats")}
    run_command("diffusion.eval", f"--workdir={workdir}", "--guidance=1,3",
                "--poll_seconds=0.1", "--timeout_seconds=5", env=env)
    eval_dir = workdir / "eval"
    assert sorted(p.name for p in eval_dir.glob("metrics_*.json")) == [
        "metrics_00000002.json", "metrics_00000004.json"]
    metrics = ("fid", "kid_mean", "precision", "recall", "class_accuracy")
    for step in (2, 4):
        saved = json.loads((eval_dir / f"metrics_{step:08d}.json").read_text())
        assert saved["step"] == step and saved["num_samples"] == 20
        assert [e["setting"] for e in saved["settings"]] == [
            {"sampler": "ddim", "steps": 2, "guidance": g} for g in (1.0, 3.0)]
        for entry in saved["settings"]:
            for name in metrics:
                assert np.isfinite(entry["digits_classifier"][name]), name
        # A bound on an NLL of dequantized 8-bit data: positive (689 for this barely trained
        # T = 20 model); a missing dequantization or decoder term can make it negative.
        bpd = saved["step_metrics"]["bits_per_dim"]
        assert np.isfinite(bpd) and bpd > 1.0
    assert json.loads((eval_dir / "best_fid.json").read_text())["step"] in (2, 4)
    assert list(eval_dir.glob("events.out.tfevents.*"))
    latest = tmp_path / "latest"
    run_command("diffusion.eval", f"--workdir={workdir}", "--latest", "--guidance=1",
                f"--eval_dir={latest}", env=env)
    assert [p.name for p in latest.glob("metrics_*.json")] == ["metrics_00000004.json"]


def test_unreadable_bpd_split_fails_before_sampling():
    config = config_with("configs/diffusion/digits.py", {**RUN, "eval.bpd_split": "test"})
    with pytest.raises(ValueError, match=r"config.eval.bpd_split='test' cannot be read .*'digits'"):
        diffusion_eval.check_bpd_split(config)
