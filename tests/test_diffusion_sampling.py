"""Samplers on Gaussian data, where the optimal eps_theta is known in closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_diffusion_losses import exact_eps_fn

from diffusion.guidance import drop_labels, guided_model_fn
from diffusion.reverse import Parameterization, sample
from diffusion.schedules import get_betas, make_schedule, respace, spaced_timesteps
from gencore.sample_keys import example_keys

MEAN, STD = 0.3, 0.2
SHAPE = (256, 4, 4, 1)
FULL = make_schedule("linear", 1000)


def run(parameterization: Parameterization, schedule, key, extra=None, **kw) -> np.ndarray:
    fn = jax.jit(lambda k: sample(exact_eps_fn(FULL, MEAN, STD, extra), parameterization, schedule,
                                  example_keys(k, jnp.arange(SHAPE[0])),
                                  SHAPE, clip_denoised=False, **kw))
    return np.asarray(fn(key))


def assert_data_moments(x: np.ndarray, tol: float = 0.02) -> None:
    assert x.mean() == pytest.approx(MEAN, abs=tol)
    assert x.std() == pytest.approx(STD, abs=tol)


@pytest.mark.parametrize("var_type", ["fixedsmall", "fixedlarge"])
def test_ancestral_sampling_recovers_the_data_distribution(var_type: str) -> None:
    assert_data_moments(run(Parameterization("eps", var_type), FULL, jax.random.key(0)))


def test_ddim_eta0_is_deterministic_and_recovers_the_data() -> None:
    parameterization = Parameterization()
    x_T = jax.random.normal(jax.random.key(9), SHAPE)
    strided = respace(get_betas("linear", 1000), spaced_timesteps(1000, 50))
    a = run(parameterization, strided, jax.random.key(0), method="ddim", eta=0.0, x_T=x_T)
    b = run(parameterization, strided, jax.random.key(1), method="ddim", eta=0.0, x_T=x_T)
    np.testing.assert_array_equal(a, b)
    c = run(parameterization, strided, jax.random.key(1), method="ddim", eta=0.5, x_T=x_T)
    assert not np.allclose(a, c, atol=1e-3)  # eta > 0 injects noise
    # The deterministic ODE sampler reaches the data distribution as the steps get small.
    assert_data_moments(run(parameterization, FULL, jax.random.key(0), method="ddim", eta=0.0,
                            x_T=x_T))


def test_ddim_eta1_with_all_steps_is_ancestral_sampling() -> None:
    small = Parameterization("eps", "fixedsmall")
    ddim = run(small, FULL, jax.random.key(0), method="ddim", eta=1.0)
    # Same noise draws: the same process step by step, up to float32 rounding.
    np.testing.assert_allclose(ddim, run(small, FULL, jax.random.key(0)), atol=2e-4)
    # In distribution with independent noise.
    other = run(small, FULL, jax.random.key(1))
    assert ddim.mean() == pytest.approx(other.mean(), abs=0.03)
    assert ddim.std() == pytest.approx(other.std(), abs=0.03)


def test_strided_sampling_with_the_full_sequence_equals_unstrided() -> None:
    s = respace(get_betas("linear", 1000), np.arange(1000))
    parameterization = Parameterization("eps", "fixedlarge")
    np.testing.assert_allclose(run(parameterization, s, jax.random.key(3)),
                               run(parameterization, FULL, jax.random.key(3)), atol=1e-5)


def test_strided_ancestral_with_learned_variance() -> None:
    """learned_range with v = +1 is beta (fixedlarge), v = -1 is beta~ (fixedsmall)."""
    s = respace(get_betas("linear", 1000), spaced_timesteps(1000, 100))
    learned = Parameterization("eps", "learned_range")
    key = jax.random.key(4)
    for v, fixed in ((1.0, "fixedlarge"), (-1.0, "fixedsmall")):
        x = run(learned, s, key, extra=jnp.float32(v))
        np.testing.assert_allclose(x, run(Parameterization("eps", fixed), s, key), atol=1e-5)
        assert_data_moments(x, tol=0.03)


def test_classifier_free_guidance_mixes_mean_channels() -> None:
    table = jnp.array([1.0, 2.0, 5.0])  # label 2 is the null class

    def apply_fn(x: jnp.ndarray, t: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
        v = table[y][:, None, None, None] * jnp.ones_like(x)
        return jnp.concatenate([v, -v], axis=-1)

    x, t, y = jnp.zeros((2, 2, 2, 3)), jnp.zeros((2,)), jnp.array([0, 1])
    for scale in (0.0, 1.0, 3.0):
        out = guided_model_fn(apply_fn, y, scale, null_label=2)(x, t)
        want = 5.0 + scale * (table[y] - 5.0)
        np.testing.assert_allclose(out[..., :3], jnp.broadcast_to(want[:, None, None, None],
                                                                  (2, 2, 2, 3)))
        np.testing.assert_allclose(out[..., 3:], -apply_fn(x, t, y)[..., :3])


def test_label_dropout_rate() -> None:
    y = jnp.zeros((10000,), jnp.int32)
    dropped = drop_labels(jax.random.key(0), y, 0.2, null_label=10)
    assert set(np.unique(dropped)) == {0, 10}
    assert float(jnp.mean(dropped == 10)) == pytest.approx(0.2, abs=0.015)


@pytest.mark.parametrize("method", ["ancestral", "ddim"])
def test_a_sample_depends_only_on_its_own_key(method: str) -> None:
    parameterization = Parameterization("eps", "fixedsmall")
    strided = respace(get_betas("linear", 1000), spaced_timesteps(1000, 10))
    keys = example_keys(jax.random.key(3), jnp.arange(6))
    model_fn = exact_eps_fn(FULL, MEAN, STD, None)
    run = jax.jit(lambda k: sample(model_fn, parameterization, strided, k, (len(k), 4, 4, 1),
                                   method=method, eta=1.0))
    whole = np.asarray(run(keys))
    np.testing.assert_allclose(np.asarray(run(keys[2:5])), whole[2:5], atol=1e-6)
    assert not np.allclose(whole[0], whole[1], atol=1e-2)
