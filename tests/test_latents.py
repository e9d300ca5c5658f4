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
    row_std = draw("per_sample_variance").std(axis=1)
    assert row_std.min() > 0.4
    assert row_std.max() - row_std.min() > 0.8        # sigma_i ~ U[1, 2] differs per sample
    trunc = np.asarray(latents.draw_z("per_sample_variance", key, shape, truncation=0.5))
    assert np.abs(trunc).max() <= 1.0                 # |sigma z| <= 2 * 0.5


def test_sample_latents_and_errors():
    z, y = latents.sample_latents(jax.random.key(3), 64, 8, 10, truncation=0.3)
    assert z.shape == (64, 8) and y.shape == (64,) and np.abs(z).max() <= 0.3
    assert 0 <= int(y.min()) and int(y.max()) < 10
    with pytest.raises(ValueError, match="valid: normal"):
        latents.draw_z("gaussian", jax.random.key(0), (2, 2))
    with pytest.raises(ValueError, match="no normal part"):
        latents.draw_z("uniform", jax.random.key(0), (2, 2), truncation=0.5)
