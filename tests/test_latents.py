"""Appendix E latent distributions and the truncation trick by resampling (Sec. 3.1)."""

import jax
import numpy as np
import pytest
import scipy.stats

from biggan import latents


@pytest.mark.parametrize("threshold", [0.5, 1.5])
def test_truncation_by_resampling_matches_truncated_normal(threshold):
    z = np.asarray(latents.draw_z("normal", jax.random.key(0), (4000, 8), threshold)).ravel()
    assert np.abs(z).max() <= threshold
    truncated = scipy.stats.truncnorm(-threshold, threshold)
    assert scipy.stats.kstest(z, truncated.cdf).pvalue > 1e-3
    # Scaling or clipping N(0, 1) would not pass: clipping piles mass on the bounds.
    clipped = np.clip(np.asarray(jax.random.normal(jax.random.key(1), (32000,))), -threshold,
                      threshold)
    assert scipy.stats.kstest(clipped, truncated.cdf).pvalue < 1e-3


def test_supports_and_moments():
    key, shape = jax.random.key(2), (2000, 16)

    def draw(name, **kw):
        return np.asarray(latents.draw_z(name, key, shape, **kw))

    assert set(np.unique(draw("bernoulli"))) == {0.0, 1.0}
    assert set(np.unique(draw("bernoulli_pm1"))) == {-1.0, 1.0}
    assert set(np.unique(draw("categorical"))) == {-1.0, 0.0, 1.0}
    uniform = draw("uniform")
    assert uniform.min() >= -1 and uniform.max() <= 1 and abs(uniform.std() - 3 ** -0.5) < 0.02
    censored = draw("censored_normal")
    assert censored.min() == 0 and abs(np.mean(censored == 0) - 0.5) < 0.02
    relu = draw("normal_x_bernoulli")
    assert abs(np.mean(relu == 0) - 0.5) < 0.02 and relu.min() < 0
    concat = draw("normal_concat_bernoulli")
    assert set(np.unique(concat[:, 8:])) == {0.0, 1.0} and concat[:, :8].min() < 0
    assert abs(draw("variance_annealing", progress=0.0).std() - 2.0) < 0.05
    assert abs(draw("variance_annealing", progress=1.0).std() - 1.0) < 0.05


@pytest.mark.parametrize("name, normal_dims", [("normal", 16), ("censored_normal", 16),
                                               ("normal_concat_bernoulli", 8)])
def test_per_sample_sigma_scales_each_samples_normal_part(name, normal_dims):
    """Appendix E's per-sample variable variance: the normal part of row i is the unscaled
    draw times one sigma_i in [sigma_l, sigma_h]; the rest of z is drawn as without it."""
    key, shape = jax.random.key(4), (2000, 16)
    plain = np.asarray(latents.draw_z(name, key, shape))
    scaled = np.asarray(latents.draw_z(name, key, shape, per_sample_sigma=(0.1, 1.0)))
    np.testing.assert_array_equal(scaled[:, normal_dims:], plain[:, normal_dims:])
    part, scaled_part = plain[:, :normal_dims], scaled[:, :normal_dims]
    ratio = np.where(part != 0, scaled_part / np.where(part != 0, part, 1.0), np.nan)
    sigma = np.nanmean(ratio, axis=1)
    np.testing.assert_allclose(scaled_part, sigma[:, None] * part, rtol=1e-6)
    assert 0.1 <= np.nanmin(sigma) < 0.15 and 0.95 < np.nanmax(sigma) <= 1.0
    truncated = np.asarray(latents.draw_z(name, key, shape, 0.5, per_sample_sigma=(0.1, 1.0)))
    assert np.abs(truncated[:, :normal_dims]).max() <= 0.5


def test_sample_latents_and_errors():
    z, y = latents.sample_latents(jax.random.key(3), 64, 8, 10, truncation=0.3)
    assert z.shape == (64, 8) and y.shape == (64,) and np.abs(z).max() <= 0.3
    assert 0 <= int(y.min()) and int(y.max()) < 10
    with pytest.raises(ValueError, match="valid: normal"):
        latents.draw_z("gaussian", jax.random.key(0), (2, 2))
    with pytest.raises(ValueError, match="no normal part"):
        latents.draw_z("uniform", jax.random.key(0), (2, 2), truncation=0.5)
    with pytest.raises(ValueError, match="per_sample_sigma scales the normal part"):
        latents.draw_z("bernoulli", jax.random.key(0), (2, 2), per_sample_sigma=(0.5, 1.0))
    with pytest.raises(ValueError, match=r"per_sample_sigma=\(1.0, 0.5\) must be"):
        latents.check_latent("normal", per_sample_sigma=(1.0, 0.5))
