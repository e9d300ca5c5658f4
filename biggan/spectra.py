"""Top singular values of weight matrices and the Sec. 4.1 interventions on sigma0.

Brock et al. 2018 (Sec. 4.1, Figure 3, Appendix F) monitor the top three singular values
sigma0 >= sigma1 >= sigma2 of every weight before spectral normalization, regularize sigma0
toward a fixed value or r * sg(sigma1), or clamp it (Eq. 4). Here a "weight matrix" is every
parameter with two or more dimensions, reshaped to W [prod(shape[:-1]), shape[-1]] (a conv
kernel [kh, kw, in, out] becomes [kh*kw*in, out]), the layout Flax's ``nn.SpectralNorm``
normalizes. Its stored power-iteration vector u (collection 'spectral', shape [1, out]) warm-
starts the estimate of the top right singular vector when present.

Singular values come from subspace iteration (the block power method; Arnoldi in the paper)
with a Rayleigh-Ritz step: a few products with W and W^T, never a full SVD.
"""

from collections.abc import Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import traverse_util

Path = tuple[str, ...]


def weight_paths(params: Mapping, exclude: tuple[str, ...] = ()) -> dict[Path, jax.Array]:
    """{param path: leaf} of every parameter with 2+ dimensions whose top-level module is not in
    ``exclude``."""
    return {path: w for path, w in traverse_util.flatten_dict(params).items()
            if w.ndim >= 2 and path[0] not in exclude}


def as_matrix(w: jax.Array) -> jax.Array:
    """W [prod(shape[:-1]), shape[-1]] of a weight (conv kernels: [kh*kw*in, out])."""
    return w.reshape(-1, w.shape[-1])


def name_of(path: Path) -> str:
    """'block0/conv1/conv/kernel' for a parameter path."""
    return "/".join(path)


def sn_vectors(spectral: Mapping | None) -> dict[Path, jax.Array]:
    """{param path: u [out]} from an ``nn.SpectralNorm`` collection.

    Flax stores u of the parameter ``<prefix>/<layer>/<param>`` as the variable
    ``<prefix>/SpectralNorm_k/'<layer>/<param>/u'``.
    """
    vectors = {}
    for path, u in traverse_util.flatten_dict(dict(spectral or {})).items():
        *_, key = path
        if key.endswith("/u"):
            vectors[(*path[:-2], *key.split("/")[:-1])] = u.reshape(-1)
    return vectors


def top_singular(w: jax.Array, num: int, iterations: int, start: jax.Array | None = None,
                 oversample: int = 0) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The ``num`` largest singular values of w [m, n] and their vectors, by subspace iteration.

    The subspace has num + oversample columns (at most min(m, n)); ``start`` [n] is a guess of
    the top right singular vector (e.g. SN's u), the other columns start from a fixed random
    draw. Each iteration is V <- orth(W^T W V); then Rayleigh-Ritz on W V. Returns
    (sigma [num] descending, left [m, num], right [n, num]) with W right ~= left diag(sigma);
    entries beyond min(m, n) are zero.
    """
    w = w.astype(jnp.float32)
    m, n = w.shape
    q = min(num + oversample, m, n)
    basis = jax.random.normal(jax.random.PRNGKey(0), (n, q), jnp.float32)
    if start is not None:
        basis = basis.at[:, 0].set(start.astype(jnp.float32))
    basis = jnp.linalg.qr(basis)[0]
    basis = jax.lax.fori_loop(0, iterations, lambda _, v: jnp.linalg.qr(w.T @ (w @ v))[0],
                              basis)
    projected = w @ basis                                          # [m, q]
    eigenvalues, rotation = jnp.linalg.eigh(projected.T @ projected)
    eigenvalues, rotation = eigenvalues[::-1], rotation[:, ::-1]   # descending
    sigma = jnp.sqrt(jnp.maximum(eigenvalues, 0.0))
    right = basis @ rotation
    left = projected @ rotation / jnp.where(sigma > 0, sigma, 1.0)
    keep = min(num, q)
    pad = num - keep
    return (jnp.pad(sigma[:keep], (0, pad)), jnp.pad(left[:, :keep], ((0, 0), (0, pad))),
            jnp.pad(right[:, :keep], ((0, 0), (0, pad))))


def spectra(params: Mapping, spectral: Mapping | None = None, num: int = 3,
            iterations: int = 8) -> dict[str, jax.Array]:
    """{weight name: sigma [num]} of every weight matrix of ``params`` (Figure 3)."""
    starts = sn_vectors(spectral)
    return {name_of(path): top_singular(as_matrix(w), num, iterations, starts.get(path),
                                        oversample=num)[0]
            for path, w in weight_paths(params).items()}


def sigma0_target(sigma1: jax.Array, fixed: float, ratio: float) -> jax.Array:
    """Sec. 4.1's target for sigma0: ``ratio`` * sg(sigma1) when ratio > 0, else ``fixed``."""
    if ratio > 0:
        return ratio * jax.lax.stop_gradient(sigma1)
    return jnp.asarray(fixed, jnp.float32)


def _leading_triplets(params: Mapping, spectral: Mapping | None, fixed: float, ratio: float,
                      iterations: int) -> Iterator[tuple[Path, jax.Array, jax.Array, jax.Array,
                                                         jax.Array, jax.Array]]:
    """For each weight matrix W [m, n] (float32): (path, W, sigma0, target, left0 [m],
    right0 [n]); the target is ``sigma0_target`` and the vectors carry no gradient."""
    starts = sn_vectors(spectral)
    for path, w in weight_paths(params).items():
        matrix = as_matrix(w).astype(jnp.float32)
        sigma, left, right = top_singular(jax.lax.stop_gradient(matrix), 2 if ratio > 0 else 1,
                                          iterations, starts.get(path))
        yield (path, matrix, sigma[0], sigma0_target(sigma[-1], fixed, ratio), left[:, 0],
               right[:, 0])


def sigma0_penalty(params: Mapping, spectral: Mapping | None, fixed: float, ratio: float,
                   iterations: int) -> jax.Array:
    """Sec. 4.1: sum over weight matrices W of (sigma0(W) - target)^2 (``sigma0_target``).
    sigma0 = left0^T W right0 with the singular vectors held fixed, so the gradient is
    2 (sigma0 - target) left0 right0^T."""
    total = jnp.zeros((), jnp.float32)
    for _, matrix, _, target, left, right in _leading_triplets(params, spectral, fixed, ratio,
                                                               iterations):
        total += jnp.square(left @ matrix @ right - target)
    return total


def clamp_sigma0(params: Mapping, spectral: Mapping | None, fixed: float, ratio: float,
                 iterations: int) -> Any:
    """Eq. 4 on every weight matrix: W <- W - max(0, sigma0 - sigma_clamp) left0 right0^T, with
    sigma_clamp = ``sigma0_target``. Returns params of the same structure. sigma0 ends at most
    sigma_clamp when sigma1 <= sigma_clamp and the vectors have converged."""
    flat = traverse_util.flatten_dict(params)
    for path, matrix, sigma0, target, left, right in _leading_triplets(params, spectral, fixed,
                                                                       ratio, iterations):
        excess = jnp.maximum(0.0, sigma0 - target)
        w = flat[path]
        flat[path] = (matrix - excess * jnp.outer(left, right)).reshape(w.shape).astype(w.dtype)
    return traverse_util.unflatten_dict(flat)
