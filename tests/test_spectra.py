"""Singular values of weights against numpy's SVD, SN-vector lookup, and the Sec. 4.1
interventions: Eq. 4's clamp and the sigma0 penalty."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import traverse_util

from biggan import spectra
from biggan.layers import SPECTRAL, SNConv, SNDense, SNEmbed


def matrix_with_singular_values(values, shape, seed=0):
    """A [m, n] matrix whose singular values are ``values`` (then zeros)."""
    rng = np.random.default_rng(seed)
    left = np.linalg.qr(rng.normal(size=(shape[0], len(values))))[0]
    right = np.linalg.qr(rng.normal(size=(shape[1], len(values))))[0]
    return (left * np.asarray(values)) @ right.T


def numpy_top3(w):
    return np.linalg.svd(np.asarray(w, np.float64).reshape(-1, w.shape[-1]), compute_uv=False)[:3]


@pytest.mark.parametrize("shape", [(20, 12), (7, 30), (3, 3, 4, 5), (40, 1)])
def test_top_singular_values_match_numpy(shape):
    w = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    sigma, left, right = jax.jit(lambda m: spectra.top_singular(m, 3, 30, oversample=3))(
        spectra.as_matrix(jnp.asarray(w)))
    expected = numpy_top3(w)
    np.testing.assert_allclose(sigma[:len(expected)], expected, rtol=1e-4)
    np.testing.assert_array_equal(sigma[len(expected):], 0.0)   # beyond the rank
    matrix = w.reshape(-1, shape[-1])
    k = len(expected)   # W v_i = sigma_i u_i
    np.testing.assert_allclose(matrix @ right[:, :k], left[:, :k] * sigma[:k], atol=1e-4)


class SpectrallyNormalized(nn.Module):
    """BigGAN's three spectrally normalized layer kinds: x [B, 4, 4, 2], y [B] -> [B, 4]."""

    @nn.compact
    def __call__(self, x, y, train):
        h = SNConv(5, 3, name="conv")(x, train)                      # kernel [3, 3, 2, 5]
        h = SNDense(4, name="linear")(jnp.mean(h, axis=(1, 2)), train)   # [5, 4]
        return h + SNEmbed(3, 4, name="embed")(y, train)              # [3, 4]


def test_spectra_of_every_weight_with_sn_warm_start():
    variables = jax.jit(lambda key: SpectrallyNormalized().init(
        key, jnp.zeros((1, 4, 4, 2)), jnp.zeros((1,), jnp.int32), train=False))(
            jax.random.PRNGKey(0))
    rng = np.random.default_rng(3)   # break the orthogonal init's flat spectra
    params = jax.tree_util.tree_map(lambda p: p + 0.3 * rng.normal(size=p.shape),
                                    variables["params"])
    starts = spectra.sn_vectors(variables[SPECTRAL])
    flat = traverse_util.flatten_dict(params)
    matrices = {p for p, w in flat.items() if w.ndim >= 2}
    assert matrices == {("conv", "conv", "kernel"), ("linear", "dense", "kernel"),
                        ("embed", "embed", "embedding")}
    assert set(starts) == matrices   # each SN vector found; u lives in the output space
    assert all(starts[p].shape == (flat[p].shape[-1],) for p in starts)
    result = jax.jit(spectra.spectra, static_argnums=(2, 3))(params, variables[SPECTRAL], 3, 30)
    assert set(result) == {"conv/conv/kernel", "linear/dense/kernel", "embed/embed/embedding"}
    for path in matrices:
        expected = numpy_top3(flat[path])
        np.testing.assert_allclose(result[spectra.name_of(path)][:len(expected)], expected,
                                   rtol=2e-3)


@pytest.mark.parametrize("ratio,expected_sigma0", [(0.0, 3.0), (1.25, 2.5)])
def test_clamp_leaves_sigma0_at_most_the_clamp_value(ratio, expected_sigma0):
    """Eq. 4 with sigma_clamp = 3 (fixed), or 1.25 * sg(sigma1) = 2.5; other values kept."""
    values = [6.0, 2.0, 1.5, 0.5]
    w = matrix_with_singular_values(values, (12, 9)).astype(np.float32)
    params = {"layer": {"kernel": w, "bias": np.ones(9, np.float32)}}
    clamped = jax.jit(lambda p: spectra.clamp_sigma0(p, None, 3.0, ratio, 20))(params)
    after = np.linalg.svd(np.asarray(clamped["layer"]["kernel"], np.float64), compute_uv=False)
    assert after[0] <= expected_sigma0 + 1e-4
    np.testing.assert_allclose(after[:4], [expected_sigma0, *values[1:]], atol=1e-4)
    np.testing.assert_array_equal(clamped["layer"]["bias"], params["layer"]["bias"])
    unchanged = jax.jit(lambda p: spectra.clamp_sigma0(p, None, 10.0, 0.0, 20))(params)
    np.testing.assert_allclose(unchanged["layer"]["kernel"], w, atol=1e-5)   # below the clamp


@pytest.mark.parametrize("start,target,ratio", [(4.0, 2.5, 0.0), (0.5, 2.0, 0.0),
                                                (4.0, 1.0, 1.5)])
def test_sigma0_penalty_pulls_sigma0_toward_its_target(start, target, ratio):
    values = [start, 0.2, 0.1] if start < 1 else [start, 2.0, 1.0]
    w = matrix_with_singular_values(values, (10, 8), seed=2).astype(np.float32)
    goal = ratio * values[1] if ratio else target
    penalty = jax.jit(jax.value_and_grad(
        lambda p: spectra.sigma0_penalty(p, None, target, ratio, 20)))
    params = {"layer": {"kernel": jnp.asarray(w)}}
    value, grads = penalty(params)
    assert float(value) == pytest.approx((start - goal) ** 2, rel=1e-4)
    for _ in range(20):
        value, grads = penalty(params)
        params = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)
    sigma = np.linalg.svd(np.asarray(params["layer"]["kernel"], np.float64), compute_uv=False)
    assert abs(sigma[0] - goal) < 0.05 * abs(start - goal)
    np.testing.assert_allclose(sigma[1:3], values[1:3], atol=1e-4)   # only sigma0 moves
