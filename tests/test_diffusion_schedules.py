"""Schedules and the forward process: closed forms against direct computations."""

import numpy as np
import pytest

from diffusion.schedules import (
    Schedule,
    cosine_alpha_bar,
    cosine_betas,
    get_betas,
    linear_betas,
    make_schedule,
    respace,
    spaced_timesteps,
)


def test_linear_schedule_matches_ddpm() -> None:
    b = linear_betas(1000)
    assert b.shape == (1000,)
    np.testing.assert_allclose([b[0], b[-1]], [1e-4, 0.02])
    # Other T keep the same noise range (iDDPM's 1000/T scaling).
    np.testing.assert_allclose(linear_betas(4000)[[0, -1]], [2.5e-5, 0.005])


@pytest.mark.parametrize("num_steps", [50, 1000, 4000])
def test_cosine_alpha_bar_matches_formula(num_steps: int) -> None:
    s = Schedule.from_betas(cosine_betas(num_steps))
    t = np.arange(1, num_steps + 1) / num_steps
    want = cosine_alpha_bar(t) / cosine_alpha_bar(0.0)
    f = np.cos((t + 0.008) / 1.008 * np.pi / 2) ** 2
    want_explicit = f / np.cos(0.008 / 1.008 * np.pi / 2) ** 2
    np.testing.assert_allclose(want, want_explicit, rtol=1e-12)
    unclipped = cosine_betas(num_steps) < 0.999
    assert not unclipped[-1]  # the last beta is clipped at 0.999
    abar = np.asarray(s.alphas_cumprod, np.float64)
    np.testing.assert_allclose(abar[unclipped], want[unclipped], rtol=1e-5, atol=1e-7)
    assert cosine_betas(num_steps).max() == pytest.approx(0.999)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_q_xt_given_x0_matches_iterated_forward_process(name: str) -> None:
    """Closed-form q(x_t|x_0) against iterating q(x_t|x_{t-1}) = N(sqrt(1-b) x, b), float64."""
    betas = get_betas(name, 300)
    s = Schedule.from_betas(betas)
    x0 = np.array([-0.7, 0.0, 0.9])
    mean, var = x0.copy(), np.zeros(3)
    for t in range(300):
        mean = np.sqrt(1 - betas[t]) * mean
        var = (1 - betas[t]) * var + betas[t]
        if t in (0, 17, 150, 299):
            m, v, logv = s.q_mean_variance(x0[None], np.array([t]))
            np.testing.assert_allclose(np.asarray(m)[0], mean, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(np.asarray(v)[0, 0], var[0], rtol=1e-5)
            np.testing.assert_allclose(np.asarray(logv)[0, 0], np.log(var[0]), atol=1e-6)


def test_q_sample_moments() -> None:
    s = make_schedule("linear", 1000)
    rng = np.random.default_rng(0)
    x0 = np.full((20000, 1), 0.5, np.float32)
    i = np.full((20000,), 400)
    xt = np.asarray(s.q_sample(x0, i, rng.standard_normal(x0.shape).astype(np.float32)))
    abar = float(s.alphas_cumprod[400])
    assert xt.mean() == pytest.approx(np.sqrt(abar) * 0.5, abs=0.02)
    assert xt.var() == pytest.approx(1 - abar, rel=0.03)


@pytest.mark.parametrize("i", [1, 10, 500, 999])
def test_posterior_matches_bayes_rule(i: int) -> None:
    """q(x_{t-1}|x_t,x_0) ∝ q(x_t|x_{t-1}) q(x_{t-1}|x_0): precision-weighted Gaussian product."""
    betas = linear_betas(1000)
    s = Schedule.from_betas(betas)
    abar = np.cumprod(1 - betas)
    x0, xt = np.array([[0.3, -0.8]]), np.array([[1.2, 0.1]])
    # x_t | x_{t-1} ~ N(sqrt(alpha) x_{t-1}, beta): as a function of x_{t-1}, precision alpha/beta.
    prec = 1 / (1 - abar[i - 1]) + (1 - betas[i]) / betas[i]
    mean = (np.sqrt(abar[i - 1]) * x0 / (1 - abar[i - 1])
            + np.sqrt(1 - betas[i]) * xt / betas[i]) / prec
    m, v, logv = s.q_posterior(x0, xt, np.array([i]))
    np.testing.assert_allclose(np.asarray(m), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(v)[0, 0], 1 / prec, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(logv)[0, 0], np.log(1 / prec), rtol=1e-5)


def test_posterior_at_first_step_returns_x0() -> None:
    s = make_schedule("cosine", 100)
    m, v, logv = s.q_posterior(np.array([[0.25]]), np.array([[3.0]]), np.array([0]))
    assert float(m[0, 0]) == pytest.approx(0.25, abs=1e-6)
    assert float(v[0, 0]) == 0.0
    assert float(logv[0, 0]) == pytest.approx(float(s.posterior_log_variance_clipped[1]))


def test_respace_full_sequence_is_identity() -> None:
    betas = get_betas("cosine", 200)
    full, spaced = Schedule.from_betas(betas), respace(betas, np.arange(200))
    for name in ("betas", "alphas_cumprod", "posterior_variance", "posterior_mean_coef1",
                 "posterior_log_variance_clipped", "log_betas_clipped"):
        np.testing.assert_allclose(getattr(spaced, name), getattr(full, name), rtol=1e-6)
    np.testing.assert_array_equal(spaced.timesteps, np.arange(200))


def test_respace_keeps_alpha_bar_on_the_subsequence() -> None:
    betas = get_betas("linear", 4000)
    ts = spaced_timesteps(4000, 50)
    assert len(ts) == 50 and ts[0] == 0 and ts[-1] == 3999
    s = respace(betas, ts)
    np.testing.assert_allclose(s.alphas_cumprod, np.cumprod(1 - betas)[ts], rtol=1e-5)
    assert s.num_steps == 50 and s.num_original_steps == 4000
    # The network sees the original timesteps on the 1000 scale.
    np.testing.assert_allclose(s.model_time(np.array([0, 49])), [0.0, 3999 / 4])
    with pytest.raises(ValueError):
        respace(betas, [5, 3])
