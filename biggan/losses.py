"""GAN objectives on D's logits, and BigGAN's orthogonal regularization (Eq. 3).

Every loss is a mean over the local batch; the train step averages over devices explicitly.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import traverse_util


def hinge_d(real: jax.Array, fake: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Hinge loss for D (Lim & Ye 2017): E[relu(1 - D(x))], E[relu(1 + D(G(z)))]."""
    return jnp.mean(jax.nn.relu(1.0 - real)), jnp.mean(jax.nn.relu(1.0 + fake))


def hinge_g(fake: jax.Array) -> jax.Array:
    """Hinge loss for G: -E[D(G(z))]."""
    return -jnp.mean(fake)


def logistic_d(real: jax.Array, fake: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Cross-entropy D loss of the original GAN (Goodfellow et al. 2014):
    -E[log sigmoid(D(x))], -E[log(1 - sigmoid(D(G(z))))]."""
    return jnp.mean(jax.nn.softplus(-real)), jnp.mean(jax.nn.softplus(fake))


def non_saturating_g(fake: jax.Array) -> jax.Array:
    """Non-saturating G loss: -E[log sigmoid(D(G(z)))]."""
    return jnp.mean(jax.nn.softplus(-fake))


def minimax_g(fake: jax.Array) -> jax.Array:
    """Original minimax G loss: E[log(1 - sigmoid(D(G(z))))] = -E[softplus(D(G(z)))]."""
    return -jnp.mean(jax.nn.softplus(fake))


LOSSES: dict[str, tuple[Callable, Callable]] = {
    "hinge": (hinge_d, hinge_g),
    "non_saturating": (logistic_d, non_saturating_g),
    "minimax": (logistic_d, minimax_g),
}


def get_losses(name: str) -> tuple[Callable, Callable]:
    """(D loss, G loss) for ``config.train.loss``."""
    if name not in LOSSES:
        raise ValueError(f"config.train.loss={name!r} is not supported; allowed: {sorted(LOSSES)}.")
    return LOSSES[name]


def orthogonal_regularization(params: dict, exclude: tuple[str, ...] = ("shared_embedding",)
                              ) -> jax.Array:
    """Eq. 3 without beta: sum over weight matrices W of ||W^T W (.) (1 - I)||_F^2.

    Every parameter with two or more dimensions counts (conv kernels [kh,kw,in,out] reshaped to
    [kh*kw*in, out], so W^T W compares output filters); top-level modules in ``exclude`` (G's
    shared embedding, as in BigGAN-PyTorch) are skipped.
    """
    total = jnp.zeros((), jnp.float32)
    for path, w in traverse_util.flatten_dict(params).items():
        if w.ndim < 2 or path[0] in exclude:
            continue
        w = w.reshape(-1, w.shape[-1])
        gram = w.T @ w
        total += jnp.sum(jnp.square(gram * (1.0 - jnp.eye(gram.shape[0], dtype=gram.dtype))))
    return total
