"""BigGAN training: sharded step equals the 1-device step, exact resume, 1 vs 2 processes,
losses, orthogonal regularization, EMA, and config errors raised before any compile."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    assert_resume_is_exact,
    assert_trees_close,
    config_with,
    largest_difference,
    restore_final_state,
    train_one_and_two_processes,
)
from helpers import run_steps as run_steps_of

from biggan import losses, train, train_step
from gencore import sharding
from gencore.data import DatasetNotFoundError

TINY = {"model.g_ch": 4, "model.d_ch": 4, "model.z_dim": 24, "model.shared_dim": 8,
        "train.batch_size": 16, "train.ema_start": 1, "train.num_d_steps": 2,
        # A large Adam eps makes the first update linear in the gradient, so the comparison
        # measures gradient differences instead of sign flips of near-zero gradients.
        "train.adam_eps": 1.0}
TOLERANCE = 1e-5   # parameters after sharded vs single-device steps (float32 reduction order)
# Shared by the sharded-step and EMA tests, so the second finds its step in the compile cache.
STEP_TEST = {"train.g_lr": 1e-2, "train.d_lr": 1e-2, "train.ema_decay": 0.5}


def tiny_config(**overrides):
    return config_with("configs/biggan/digits.py", {**TINY, **overrides})


def random_batch(config, seed=0):
    t = config.train
    rng = np.random.default_rng(seed)
    shape = (t.num_d_steps, t.grad_accum, t.batch_size // t.grad_accum)
    r = config.model.resolution
    return {"image": rng.uniform(-1, 1, (*shape, r, r, 3)).astype(np.float32),
            "label": rng.integers(0, 10, shape).astype(np.int32)}


def run_steps(config, devices, batches):
    return run_steps_of(train_step, config, devices, batches, train_step.UPDATE_SPEC)


def test_sharded_step_equals_single_device_step():
    """Catches double-counted or missing gradient reductions and per-device BN."""
    config = tiny_config(**STEP_TEST)
    batches = [random_batch(config, 0), random_batch(config, 1)]
    one, one_metrics, initial = run_steps(config, jax.devices()[:1], batches)
    eight, eight_metrics, _ = run_steps(config, jax.devices(), batches)
    for field in ("g_params", "d_params", "ema_params", "g_state", "d_state"):
        assert_trees_close(getattr(one, field), getattr(eight, field), TOLERANCE)
    assert_trees_close(one_metrics, eight_metrics, 1e-3)
    for field in ("g_params", "d_params"):   # the steps moved far more than the tolerance
        assert largest_difference(getattr(one, field), getattr(initial, field)) > 100 * TOLERANCE


def test_ema_follows_params_until_start_then_averages():
    config = tiny_config(**STEP_TEST)
    assert (config.train.ema_start, config.train.ema_decay) == (1, 0.5)
    batches = [random_batch(config, 0), random_batch(config, 1)]
    first, _, _ = run_steps(config, jax.devices()[:1], batches[:1])
    assert_trees_close(first.ema_params, first.g_params, 0)
    second, _, _ = run_steps(config, jax.devices()[:1], batches)
    expected = jax.tree_util.tree_map(lambda e, p: 0.5 * e + 0.5 * p, first.ema_params,
                                      second.g_params)
    assert_trees_close(second.ema_params, expected, 1e-6)


def test_loss_functions():
    real, fake = jnp.array([2.0, 0.5]), jnp.array([-2.0, 0.5])
    assert losses.hinge_d(real, fake) == (pytest.approx(0.25), pytest.approx(0.75))
    assert float(losses.hinge_g(fake)) == pytest.approx(0.75)
    lr, lf = losses.logistic_d(real, fake)
    assert float(lr) == pytest.approx(float(jnp.mean(-jnp.log(jax.nn.sigmoid(real)))), 1e-6)
    assert float(lf) == pytest.approx(float(jnp.mean(-jnp.log(1 - jax.nn.sigmoid(fake)))), 1e-6)
    assert float(losses.minimax_g(fake)) == pytest.approx(
        float(jnp.mean(jnp.log(1 - jax.nn.sigmoid(fake)))), 1e-6)
    with pytest.raises(ValueError, match=r"config.train.loss='wgan'"):
        losses.get_losses("wgan")


def test_orthogonal_regularization():
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(6, 4)))
    assert float(losses.orthogonal_regularization({"a": {"kernel": q}})) < 1e-10
    w = np.array([[1.0, 1.0], [0.0, 1.0]])          # W^T W = [[1, 1], [1, 2]]
    params = {"a": {"kernel": w, "bias": np.ones(2)},
              "shared_embedding": {"embedding": w}}  # skipped, as in BigGAN-PyTorch
    assert float(losses.orthogonal_regularization(params)) == pytest.approx(2.0)


@pytest.mark.parametrize("shape", [(20, 300), (3, 3, 8, 40), (300, 20), (16, 16)])
def test_small_gram_ortho_reg_equals_the_direct_formula(shape):
    """Through W W^T when W has fewer rows than columns: same value and gradient as
    ||W^T W (.) (1 - I)||^2 formed directly."""
    def direct(w):
        gram = w.reshape(-1, w.shape[-1]).T @ w.reshape(-1, w.shape[-1])
        return jnp.sum(jnp.square(gram * (1.0 - jnp.eye(gram.shape[0]))))

    w = jnp.asarray(np.random.default_rng(1).normal(size=shape), jnp.float32) / 4
    ours = jax.value_and_grad(lambda w: losses.orthogonal_regularization({"a": {"kernel": w}}))
    value, grad = ours(w)
    want_value, want_grad = jax.value_and_grad(direct)(w)
    np.testing.assert_allclose(value, want_value, rtol=1e-5)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-6 * float(abs(want_grad).max()))


@pytest.mark.parametrize("overrides,message", [
    ({"train.batch_size": 12}, r"batch_size=12 .*devices \(8\)"),
    ({"train.grad_accum": 3}, r"grad_accum=3"),
    ({"train.loss": "wgan"}, r"config.train.loss='wgan'"),
    ({"model.resolution": 48}, r"config.model.resolution=48"),
])
def test_bad_config_fails_before_compile(overrides, message):
    with pytest.raises(ValueError, match=message):
        train_step.make_train_step(tiny_config(**overrides), sharding.make_mesh())


def test_missing_dataset_is_reported_before_training(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    config = tiny_config(**{"data.name": "imagenet2012", "data.data_dir": str(tmp_path / "no")})
    with pytest.raises(DatasetNotFoundError, match="imagenet2012"):
        train.train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run" / "checkpoints").exists() or not any(
        (tmp_path / "run" / "checkpoints").iterdir())


def test_resume_is_exact(tmp_path):
    """4 steps in one go == 2 steps, stop, then resume to 4 (same workdir)."""
    overrides = {"train.checkpoint_every": 2, "train.log_every": 2, "train.sample_every": 2}
    assert_resume_is_exact(train.train_and_evaluate, train_step.create_train_state,
                           lambda steps: tiny_config(**overrides, **{"train.steps": steps}),
                           tmp_path)


def test_two_processes_equal_one_process(tmp_path):
    """2 processes x 4 CPU devices (jax.distributed over loopback) == 1 process x 8."""
    run = {"train.steps": 2, "train.log_every": 1, "train.checkpoint_every": 2,
           "train.sample_every": 2}
    one, two = train_one_and_two_processes("biggan.main", "configs/biggan/digits.py",
                                           {**TINY, **run}, tmp_path)
    config = tiny_config(**run)
    a = restore_final_state(train_step.create_train_state, config, one)
    b = restore_final_state(train_step.create_train_state, config, two)
    for field in ("g_params", "d_params", "ema_params"):
        assert_trees_close(getattr(a, field), getattr(b, field), TOLERANCE)
