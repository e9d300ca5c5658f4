"""The eval job: one checkpoint, a truncation sweep -> JSON per threshold, curve PNG, best pointer,
TensorBoard scalars. A stand-in feature space keeps it fast (the real ones are tested in
test_metrics / test_digits_classifier)."""

import json

import jax
import jax.numpy as jnp
import numpy as np

from biggan import eval as biggan_eval
from biggan.train_step import create_train_state
from common import checkpoint, reference_stats, sharding
from configs.biggan.digits import get_config


class PixelFeatures:
    """Mean colour of 4x4 patches: features [B, 16]; logits = the first 10 features."""

    name = "pixels"
    feature_dim = 16
    num_classes = 10
    data_specific = True

    def features(self, images):
        pooled = jnp.mean(images.reshape(images.shape[0], 4, 8, 4, 8, 3), axis=(2, 4, 5))
        flat = pooled.reshape(images.shape[0], 16)
        return flat, flat[:, :10]


def test_truncation_sweep_on_a_checkpoint(tmp_path, monkeypatch):
    config = get_config()
    config.model.update(g_ch=4, d_ch=4, z_dim=32, shared_dim=8)
    config.eval.update(num_samples=32, batch_size=16, standing_stats_passes=2,
                       truncations=(0.5, 1.0))
    workdir = tmp_path / "run"
    state = create_train_state(config, sharding.make_mesh())
    with checkpoint.Checkpointer(workdir, config=config) as ckpt:
        ckpt.save(7, state, force=True)

    rng = np.random.default_rng(0)
    real = rng.normal(size=(64, 16)).astype(np.float32)
    mu, sigma = reference_stats.metrics.gaussian_statistics(real)
    reference = reference_stats.ReferenceStats(mu, sigma, real, "digits", "train", 32, "pixels",
                                               64)
    monkeypatch.setattr(biggan_eval, "feature_spaces", lambda config: [PixelFeatures()])
    monkeypatch.setattr(reference_stats, "load_or_compute_reference_stats",
                        lambda *args, **kwargs: reference)

    eval_dir = tmp_path / "eval"
    [result] = biggan_eval.run_eval(config, str(workdir), str(eval_dir), step=7)
    saved = json.loads((eval_dir / "metrics_00000007.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert [e["truncation"] for e in saved["truncations"]] == [0.5, 1.0]
    for entry in saved["truncations"]:
        assert {"fid", "is_mean", "kid_mean", "precision", "recall", "class_accuracy"} <= set(
            entry["pixels"])
        assert np.isfinite(entry["pixels"]["fid"])
    assert saved["feature_spaces"]["pixels"]["data_specific"]
    assert (eval_dir / "truncation_curve_00000007.png").read_bytes()[:4] == b"\x89PNG"
    best = json.loads((eval_dir / biggan_eval.BEST_FILE).read_text())
    fids = [e["pixels"]["fid"] for e in saved["truncations"]]
    assert best["step"] == 7 and best["fid"] == min(fids)
    assert list(eval_dir.glob("events.out.tfevents.*"))
    assert jax.device_count() == 8     # evaluated on 8 devices, checkpoint device-count agnostic
