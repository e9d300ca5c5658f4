"""The shared eval layer (gencore.evaluation) for both families: the same metrics on 1 device,
8 devices and 2 processes x 4 devices (samples are drawn per global index, features gathered
over processes), and diffusion.eval through the Inception path on mock CIFAR-10 with random
Inception weights. A random-weight digits classifier stands in for the trained one and the
reference statistics go to a temporary cache."""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from helpers import config_with, run_two_processes
from test_inception import _random_variables

from biggan import eval as biggan_eval
from biggan.train_step import create_train_state as biggan_state
from configs.biggan.digits import get_config as biggan_digits
from diffusion import eval as diffusion_eval
from diffusion.train_step import create_train_state as diffusion_state
from gencore import checkpoint, digits_classifier, evaluation, inception, reference_stats, sharding
from gencore.feature_extractors import extract_features

STEP = 3
TOLERANCE = 1e-5
"""Largest |difference| of any metric between device / process layouts (float32 features;
measured differences are below 1e-8)."""

DIFFUSION = {"data.resolution": 16, "model.ch": 32, "model.ch_mult": (1,),
             "model.num_res_blocks": 1, "model.attn_resolutions": (), "model.dropout": 0.0,
             "diffusion.num_steps": 20, "eval.num_samples": 20, "eval.batch_size": 8,
             "eval.sample_steps": 2, "eval.bpd_examples": 8, "eval.bpd_split": "train"}


def biggan_config():
    config = biggan_digits()
    config.model.update(g_ch=4, d_ch=4, z_dim=24, shared_dim=8)
    config.eval.update(num_samples=20, batch_size=8, standing_stats_passes=2,
                       truncations=(None, 0.5))
    return config


def diffusion_config(overrides=DIFFUSION):
    config = config_with("configs/diffusion/digits.py", overrides)
    evaluation.set_eval_field(config, "guidance", (1.0, 3.0))
    return config


FAMILIES = {"biggan": (biggan_config, biggan_state, biggan_eval.model_eval),
            "diffusion": (diffusion_config, diffusion_state, diffusion_eval.model_eval)}


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    """Environment of a random-weight digits classifier and an empty reference-stats cache."""
    root = tmp_path_factory.mktemp("caches")
    params = digits_classifier.DigitsCNN().init(
        jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
    digits_classifier.save_classifier(params, {"test_accuracy": 0.0}, root / "classifier.npz")
    return {digits_classifier.CACHE_ENV_VAR: str(root / "classifier.npz"),
            reference_stats.CACHE_ENV_VAR: str(root / "reference_stats")}


def save_fresh_run(config, create_state, workdir):
    with checkpoint.Checkpointer(workdir, config=config) as ckpt:
        ckpt.save(STEP, create_state(config, sharding.make_mesh()), force=True)


def assert_same_metrics(a, b):
    assert a["feature_spaces"] == b["feature_spaces"] and a["details"] == b["details"]
    for x, y in zip(a["settings"], b["settings"], strict=True):
        assert x["setting"] == y["setting"]
        for space in a["feature_spaces"]:
            assert x[space].keys() == y[space].keys()
            for name in x[space]:
                assert abs(x[space][name] - y[space][name]) <= TOLERANCE, (space, name)
    for name, value in a["step_metrics"].items():
        assert abs(value - b["step_metrics"][name]) <= TOLERANCE, name


@pytest.mark.parametrize("family", FAMILIES)
def test_same_metrics_on_1_and_8_devices_and_2_processes(family, caches, tmp_path, monkeypatch):
    for name, value in caches.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(inception.WEIGHTS_ENV_VAR, raising=False)
    make_config, create_state, build = FAMILIES[family]
    config = make_config()
    workdir = tmp_path / "run"
    save_fresh_run(config, create_state, workdir)
    results = {}
    for devices in (1, 8):
        [results[devices]] = evaluation.run_eval(
            config, str(workdir), build, eval_dir=str(tmp_path / f"eval{devices}"), step=STEP,
            mesh=sharding.make_mesh(jax.devices()[:devices]))
    one = results[1]
    assert [space for space in one["feature_spaces"]] == ["digits_classifier"]
    assert len(one["settings"]) == 2 and one["num_samples"] == 20
    assert_same_metrics(one, results[8])
    # 2 processes x 4 devices, with the config saved in the checkpoint (no --config).
    run_two_processes(lambda i, port: [
        sys.executable, "-m", f"{family}.eval", f"--workdir={workdir}", f"--step={STEP}",
        f"--eval_dir={tmp_path / 'eval2x4'}", "--cpu_devices=4",
        f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"])
    two = json.loads((tmp_path / "eval2x4" / f"metrics_{STEP:08d}.json").read_text())
    assert_same_metrics(one, two)
    assert json.loads((tmp_path / "eval2x4" / evaluation.BEST_FILE).read_text())["step"] == STEP


def test_batch_not_dividing_the_devices_fails_before_compiling(tmp_path):
    config = diffusion_config({**DIFFUSION, "eval.batch_size": 10})
    with pytest.raises(ValueError, match=r"config.eval.batch_size=10 is not divisible .* \(8\)"):
        evaluation.run_eval(config, str(tmp_path), diffusion_eval.model_eval, step=STEP)


@pytest.mark.slow   # the Inception network at 299 px on CPU: about 3 minutes on a shared core
def test_diffusion_eval_through_inception_on_mock_cifar10(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setenv(reference_stats.CACHE_ENV_VAR, str(tmp_path / "reference_stats"))
    weights = inception.save_variables(
        traverse_util.unflatten_dict(_random_variables(), sep="/"), tmp_path / "inception.npz")
    config = diffusion_config({**DIFFUSION, "eval.num_samples": 16, "eval.bpd_examples": 0,
                               "eval.inception_weights": str(weights)})
    config.data.name = "cifar10"
    workdir = tmp_path / "run"
    save_fresh_run(config, diffusion_state, workdir)
    with tfds.testing.mock_data(num_examples=20):
        [result] = evaluation.run_eval(config, str(workdir), diffusion_eval.model_eval,
                                       step=STEP)
        [extractor] = evaluation.feature_spaces(config)
        reference = reference_stats.load_or_compute_reference_stats(config.data, extractor,
                                                                    "train")
        batches, _ = reference_stats.reference_pipeline(config.data, "train", 10)
        real = extract_features(extractor, batches, 20)
    saved = json.loads((workdir / "eval" / f"metrics_{STEP:08d}.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert set(saved) == {"step", "num_samples", "details", "feature_spaces", "settings",
                          "step_metrics"}
    assert saved["feature_spaces"] == {"inception": {
        "data_specific": False,
        "reference": "cifar10 split 'train' (20 images at 16px) in the inception feature space"}}
    assert [e["setting"] for e in saved["settings"]] == [
        {"sampler": "ddim", "steps": 2, "guidance": g} for g in (1.0, 3.0)]
    for entry in saved["settings"]:
        assert set(entry["inception"]) == {"fid", "is_mean", "is_std", "kid_mean", "kid_std",
                                           "precision", "recall"}
        assert entry["inception"]["fid"] > 1e-3
    # Real against real through the same scoring: FID ~ 0, KID ~ 0, precision = recall = 1.
    same = evaluation.score(extractor, reference, real)
    assert abs(same["fid"]) < 1e-3 * np.trace(reference.sigma)
    assert same["precision"] == same["recall"] == 1.0
