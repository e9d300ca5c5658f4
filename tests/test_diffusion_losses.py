"""Losses, the discretized decoder, importance sampling and bits/dim against analytic answers."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from diffusion.likelihood import bits_per_dim, prior_bpd
from diffusion.losses import (
    LossHistory,
    discretized_gaussian_log_likelihood,
    init_loss_history,
    normal_kl,
    sample_timesteps,
    timestep_probs,
    training_losses,
    update_loss_history,
    vb_terms_bpd,
)
from diffusion.reverse import Parameterization, v_target
from diffusion.schedules import MODEL_TIME_SCALE, Schedule, make_schedule


def exact_eps_fn(s: Schedule, mean: float, std: float, extra: jnp.ndarray | None = None):
    """E[eps | x_t] when x_0 ~ N(mean, std^2) per dimension (std = 0: a one-point dataset).

    `s` is the full (unrespaced) schedule; the model reads the original timestep from the model
    time as a network would. `extra` (if given) is appended as learned-variance channels.
    """

    def model_fn(x: jnp.ndarray, t: jnp.ndarray) -> jnp.ndarray:
        idx = jnp.round(t * s.num_steps / MODEL_TIME_SCALE).astype(jnp.int32)
        abar = s.alphas_cumprod[idx][:, None, None, None]
        eps = jnp.sqrt(1 - abar) * (x - jnp.sqrt(abar) * mean) / (abar * std**2 + 1 - abar)
        return eps if extra is None else jnp.concatenate([eps, jnp.broadcast_to(extra, x.shape)],
                                                         -1)

    return model_fn


def test_normal_kl_analytic() -> None:
    kl = normal_kl(jnp.array(0.0), jnp.array(0.0), jnp.array(1.0), jnp.log(jnp.array(4.0)))
    assert float(kl) == pytest.approx(math.log(2.0) + 2.0 / 8.0 - 0.5, rel=1e-6)
    assert float(normal_kl(jnp.array(0.3), jnp.array(-1.0), jnp.array(0.3), jnp.array(-1.0))) == 0


@pytest.mark.parametrize("mean, scale", [(0.1, 0.05), (-0.97, 0.002), (0.9, 1e-4), (0.0, 3.0)])
def test_discretized_decoder_is_a_distribution_over_256_levels(mean: float, scale: float) -> None:
    x = jnp.arange(256, dtype=jnp.float32) / 127.5 - 1.0
    logp = discretized_gaussian_log_likelihood(x, jnp.float32(mean), jnp.log(jnp.float32(scale)))
    assert np.all(np.asarray(logp) <= 1e-6)
    assert float(jnp.sum(jnp.exp(logp))) == pytest.approx(1.0, abs=1e-4)
    edges = np.concatenate([[-np.inf], (np.arange(255) + 0.5) / 127.5 - 1.0, [np.inf]])
    lo, hi = edges[:-1], edges[1:]
    want = np.where(lo > mean, norm.sf(lo, mean, scale) - norm.sf(hi, mean, scale),
                    norm.cdf(hi, mean, scale) - norm.cdf(lo, mean, scale))
    big = want > 1e-30
    np.testing.assert_allclose(np.asarray(logp)[big], np.log(want[big]), rtol=1e-3, atol=2e-3)


def one_point_data() -> jnp.ndarray:
    """One 2x2x3 image with edge (-1, 1) and interior pixel levels."""
    levels = np.array([0, 255, 3, 128, 200, 77, 255, 0, 10, 64, 190, 251])
    return jnp.asarray(levels.reshape(1, 2, 2, 3) / 127.5 - 1.0, jnp.float32)


def decoder_bits(x0: np.ndarray, sigma: float) -> float:
    """-log2 P(x0) per dim under N(x0, sigma^2) integrated over each pixel's bin, float64."""
    half = 1.0 / 255.0
    p = np.where(np.abs(x0) > 0.999, norm.cdf(half / sigma), 2 * norm.cdf(half / sigma) - 1)
    return float(np.mean(-np.log2(p)))


@pytest.mark.parametrize("var_type", ["fixedsmall", "fixedlarge"])
def test_vlb_of_true_eps_model_on_one_point_dataset(var_type: str) -> None:
    """With the true eps, p's mean equals q's posterior mean at every step, so:
    L_{t-1} = KL of the variances alone (0 for fixedsmall), L_0 = the decoder mass of the bin
    around x0 with mean x0, and L_T = KL(N(sqrt(abar_T) x0, 1 - abar_T) || N(0, 1))."""
    s = make_schedule("linear", 1000)
    x0 = one_point_data()
    parameterization = Parameterization("eps", var_type)
    res = jax.jit(lambda k: bits_per_dim(exact_eps_fn(s, x0, 0.0), parameterization, s, x0, k))(
        jax.random.key(0))
    x0n = np.asarray(x0, np.float64)
    abar = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    betas = np.linspace(1e-4, 0.02, 1000)
    post_var = betas[1:] * (1 - abar[:-1]) / (1 - abar[1:])
    var_p = post_var if var_type == "fixedsmall" else betas[1:]
    kl_var = 0.5 * (-1 + np.log(var_p / post_var) + post_var / var_p) / math.log(2)
    prior = np.mean(0.5 * (-1 - np.log(1 - abar[-1]) + (1 - abar[-1]) + abar[-1] * x0n**2))
    prior /= math.log(2)
    decoder = decoder_bits(x0n, math.sqrt(post_var[0]))  # both types use beta~_1 at t = 1
    vb = np.asarray(res["vb"])[0]
    assert vb[0] == pytest.approx(decoder, rel=1e-4)
    np.testing.assert_allclose(vb[1:], kl_var, atol=2e-6, rtol=1e-3)
    assert float(res["prior"][0]) == pytest.approx(prior, rel=1e-3, abs=1e-7)
    want = decoder + kl_var.sum() + prior
    assert float(res["total"][0]) == pytest.approx(want, rel=1e-4)
    assert float(prior_bpd(s, x0)[0]) == pytest.approx(prior, rel=1e-3, abs=1e-7)
    assert np.all(np.asarray(res["mse"]) < 1e-6)


@pytest.mark.parametrize("mean_type", ["eps", "x0", "v"])
def test_l_simple_is_zero_for_the_exact_prediction(mean_type: str) -> None:
    s = make_schedule("cosine", 100)
    x0 = one_point_data()
    parameterization = Parameterization(mean_type, "fixedlarge")
    i = jnp.array([37])
    noise = jax.random.normal(jax.random.key(0), x0.shape)
    exact = {"eps": noise, "x0": x0, "v": v_target(s, x0, i, noise)}[mean_type]
    terms = training_losses(lambda x, t: exact, parameterization, s, x0, i, noise)
    assert float(terms["loss"][0]) == pytest.approx(0.0, abs=1e-10)
    wrong = training_losses(lambda x, t: exact + 0.1, parameterization, s, x0, i, noise)
    assert float(wrong["loss"][0]) == pytest.approx(0.01, rel=1e-4)


def test_hybrid_loss_stops_the_vlb_gradient_at_the_mean() -> None:
    s = make_schedule("cosine", 400)
    x0 = one_point_data()
    parameterization = Parameterization("eps", "learned_range")
    i = jnp.array([120])
    noise = jax.random.normal(jax.random.key(0), x0.shape)
    out0 = jax.random.normal(jax.random.key(1), x0.shape[:-1] + (6,)) * 0.5

    def term(out: jnp.ndarray, name: str) -> jnp.ndarray:
        terms = training_losses(lambda x, t: out, parameterization, s, x0, i, noise, "hybrid")
        return terms[name][0]

    g_vb, g_mse = jax.grad(term)(out0, "vb"), jax.grad(term)(out0, "mse")
    assert float(jnp.abs(g_vb[..., :3]).max()) == 0.0  # no VLB gradient into the mean
    assert float(jnp.abs(g_vb[..., 3:]).max()) > 0.0  # the variance learns from L_vlb only
    assert float(jnp.abs(g_mse[..., 3:]).max()) == 0.0
    terms = training_losses(lambda x, t: out0, parameterization, s, x0, i, noise, "hybrid")
    x_t = s.q_sample(x0, i, noise)
    vb, _ = vb_terms_bpd(parameterization, s, out0, x0, x_t, i)
    assert float(terms["vb"][0]) == pytest.approx(0.001 * 400 * float(vb[0]), rel=1e-5)
    g_vlb = jax.grad(lambda o: training_losses(lambda x, t: o, parameterization, s, x0, i, noise,
                                               "vlb")["loss"][0])(out0)
    assert float(jnp.abs(g_vlb[..., :3]).max()) > 0.0  # pure L_vlb trains the mean too


def test_loss_configuration_errors() -> None:
    s = make_schedule("linear", 100)
    x0, i = one_point_data(), jnp.array([3])
    with pytest.raises(ValueError):
        training_losses(lambda x, t: x, Parameterization("eps", "learned_range"), s, x0, i, x0)
    with pytest.raises(ValueError):
        training_losses(lambda x, t: x, Parameterization(), s, x0, i, x0, "hybrid")
    with pytest.raises(ValueError):
        Parameterization("score")


def test_importance_sampling_history() -> None:
    state = init_loss_history(4, history=3)
    assert len(jax.tree.leaves(state)) == 2  # a pytree: lives in the train state, checkpoints
    np.testing.assert_allclose(timestep_probs(state), 0.25)
    update = jax.jit(update_loss_history)
    # t=1 sees 4 losses in one batch: only the last 3 are kept, oldest first.
    state = update(state, jnp.array([1, 1, 0, 1, 1]), jnp.array([9.0, 1.0, 5.0, 2.0, 3.0]))
    np.testing.assert_allclose(state.losses[1], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(state.counts, [1, 3, 0, 0])
    np.testing.assert_allclose(timestep_probs(state), 0.25)  # uniform until every t is full
    full = LossHistory(jnp.array([[1.0] * 3, [2.0] * 3, [3.0] * 3, [4.0, 4.0, 4.0]]),
                       jnp.full((4,), 3, jnp.int32))
    p = np.asarray(timestep_probs(full))
    want = np.array([1, 2, 3, 4]) / 10 * 0.999 + 0.001 / 4
    np.testing.assert_allclose(p, want, rtol=1e-6)
    i, w = sample_timesteps(jax.random.key(0), full, 20000)
    counts = np.bincount(np.asarray(i), minlength=4) / 20000
    np.testing.assert_allclose(counts, want, atol=0.015)
    np.testing.assert_allclose(w, 1 / (4 * want[np.asarray(i)]), rtol=1e-5)
