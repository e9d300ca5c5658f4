"""The BigGAN eval job: one checkpoint, a truncation sweep (untruncated first) -> one JSON with
a setting per threshold, curve PNG, best pointer, TensorBoard scalars. A stand-in feature space
keeps it fast (the real ones are tested in test_metrics / test_digits_classifier)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from biggan import eval as biggan_eval
from biggan import sample
from biggan.train_step import create_train_state
from configs.biggan.digits import get_config
from gencore import checkpoint, evaluation, reference_stats, sharding


class PixelFeatures:
    """Mean colour of 4x4 patches: features [B, 16]; logits = the first 10 features."""

    name = "pixels"
    feature_dim = 16
    num_classes = 10
    data_specific = True

    def features(self, images):
        b, h, w, c = images.shape
        pooled = jnp.mean(images.reshape(b, 4, h // 4, 4, w // 4, c), axis=(2, 4, 5))
        flat = pooled.reshape(images.shape[0], 16)
        return flat, flat[:, :10]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(config, workdir) of a tiny model's checkpoint at step 7."""
    config = get_config()
    config.model.update(g_ch=4, d_ch=4, z_dim=48, shared_dim=8)
    config.eval.update(num_samples=32, batch_size=16, standing_stats_passes=2,
                       truncations=(None, 0.5, 1.0))
    workdir = tmp_path_factory.mktemp("run")
    state = create_train_state(config, sharding.make_mesh())
    with checkpoint.Checkpointer(workdir, config=config) as ckpt:
        ckpt.save(7, state, force=True)
    return config, workdir


def test_truncation_sweep_on_a_checkpoint(run, tmp_path, monkeypatch):
    config, workdir = run

    rng = np.random.default_rng(0)
    real = rng.normal(size=(64, 16)).astype(np.float32)
    mu, sigma = reference_stats.metrics.gaussian_statistics(real)
    reference = reference_stats.ReferenceStats(mu, sigma, real, "digits", "train", 32, "pixels",
                                               64)
    monkeypatch.setattr(evaluation, "feature_spaces", lambda config: [PixelFeatures()])
    monkeypatch.setattr(reference_stats, "load_or_compute_reference_stats",
                        lambda *args, **kwargs: reference)

    eval_dir = tmp_path / "eval"
    [result] = evaluation.run_eval(config, str(workdir), biggan_eval.model_eval,
                                   eval_dir=str(eval_dir), step=7)
    saved = json.loads((eval_dir / "metrics_00000007.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert [e["setting"] for e in saved["settings"]] == [
        {"truncation": None}, {"truncation": 0.5}, {"truncation": 1.0}]   # None: w/o
    assert "pixels/fid/truncation_none" in evaluation.scalars(result)
    assert saved["details"] == {"standing_stats_passes": 2, "latent": config.train.latent}
    for entry in saved["settings"]:
        assert {"fid", "is_mean", "kid_mean", "precision", "recall", "class_accuracy"} <= set(
            entry["pixels"])
        assert np.isfinite(entry["pixels"]["fid"])
    assert saved["feature_spaces"]["pixels"]["data_specific"]
    assert (eval_dir / "truncation_curve_00000007.png").read_bytes()[:4] == b"\x89PNG"
    best = json.loads((eval_dir / evaluation.BEST_FILE).read_text())
    fids = [e["pixels"]["fid"] for e in saved["settings"]]
    assert best["step"] == 7 and best["fid"] == min(fids)
    assert best["setting"] == saved["settings"][int(np.argmin(fids))]["setting"]
    assert list(eval_dir.glob("events.out.tfevents.*"))
    assert jax.device_count() == 8     # evaluated on 8 devices, checkpoint device-count agnostic


def test_sample_from_a_workdir(run, tmp_path):
    config, workdir = run
    res = config.model.resolution
    generator = sample.checkpoint_generator(str(workdir), 0.5)   # saved config, latest step
    z = sample.latents(2, config.model.z_dim, 0.5, seed=0, latent=config.train.latent)
    interp = sample.interpolation_sheet(generator, [3, 8], 2, 4, 0.5, seed=0, fixed_z=True)
    interp = interp.reshape(2, 4, res, res, 3)
    # The ends of a class interpolation at fixed z are the two classes' ordinary samples.
    np.testing.assert_allclose(interp[:, 0], generator(z, np.array([3, 3])), atol=1e-5)
    np.testing.assert_allclose(interp[:, -1], generator(z, np.array([8, 8])), atol=1e-5)
    assert np.abs(interp[:, 1] - interp[:, 0]).max() > 1e-4
    pairs = sample.run_checkpoint(generator, "interp_pairs", [3, 8], 2, 0.5, 0,
                                  str(tmp_path / "pairs.png"), steps=4)
    np.testing.assert_allclose(pairs[0], interp[0, 0], atol=1e-5)      # same z0, same class
    assert not np.allclose(pairs[3], interp[0, -1], atol=1e-3)         # z1 differs from z0
    assert Image.open(tmp_path / "pairs.png").size == (4 * (res + 2) + 2, 2 * (res + 2) + 2)
    sample.run_checkpoint(generator, "classwise", [1, 2], 4, 0.5, 0, str(tmp_path / "c.npz"))
    saved = np.load(tmp_path / "c_class2.npz")
    assert saved["images"].shape == (4, res, res, 3) and list(saved["labels"]) == [2] * 4
    untruncated = sample.checkpoint_generator(str(workdir), sample.parse_truncation("None"))
    images = untruncated(sample.latents(2, config.model.z_dim, None, seed=0,
                                        latent=config.train.latent), np.array([1, 2]))
    assert images.shape == (2, res, res, 3) and np.all(np.isfinite(images))
    for bad in ("0", "-1", "x"):
        with pytest.raises(ValueError, match="--truncation"):
            sample.parse_truncation(bad)
    np.testing.assert_allclose(saved["images"], generator(saved["z"], saved["labels"]),
                               atol=1e-5)
