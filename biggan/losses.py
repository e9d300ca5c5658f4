"""GAN objectives on D's logits, BigGAN's orthogonal regularization (Eq. 3) and the R1
gradient penalty (Eq. 5).

Every loss is a mean over the local batch; the train step averages over devices explicitly.
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from biggan.spectra import as_matrix, weight_paths


def hinge_d(real: jax.Array, fake: jax.Array, margin: float = 1.0
            ) -> tuple[jax.Array, jax.Array]:
    """Hinge loss for D (Lim & Ye 2017): E[relu(m - D(x))], E[relu(m + D(G(z)))], margin m = 1
    by default (Appendix G varies it)."""
    return jnp.mean(jax.nn.relu(margin - real)), jnp.mean(jax.nn.relu(margin + fake))


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


def wasserstein_d(real: jax.Array, fake: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Wasserstein critic loss (Arjovsky et al. 2017; Appendix G): -E[D(x)], E[D(G(z))]."""
    return -jnp.mean(real), jnp.mean(fake)


LOSSES: dict[str, tuple[Callable, Callable]] = {
    "hinge": (hinge_d, hinge_g),
    "non_saturating": (logistic_d, non_saturating_g),
    "minimax": (logistic_d, minimax_g),
    "wasserstein": (wasserstein_d, hinge_g),   # the G loss is -E[D(G(z))] for both
}


def get_losses(name: str, hinge_margin: float = 1.0) -> tuple[Callable, Callable]:
    """(D loss, G loss) for ``config.train.loss``; ``config.train.hinge_margin`` sets the hinge
    D loss's margin (only with loss='hinge')."""
    if name not in LOSSES:
        raise ValueError(f"config.train.loss={name!r} is not supported; allowed: {sorted(LOSSES)}.")
    if hinge_margin <= 0:
        raise ValueError(f"config.train.hinge_margin={hinge_margin} must be > 0 (default 1).")
    d_loss, g_loss = LOSSES[name]
    if hinge_margin != 1.0:
        if name != "hinge":
            raise ValueError(f"config.train.hinge_margin={hinge_margin} applies to "
                             f"config.train.loss='hinge' only, not {name!r}; set it to 1.0.")
        d_loss = functools.partial(hinge_d, margin=hinge_margin)
    return d_loss, g_loss


def r1_penalty(d_logits: Callable[[jax.Array], jax.Array], real: jax.Array) -> jax.Array:
    """Eq. 5 without gamma / 2: E_real ||grad_x D(x)||^2 over the local batch.

    d_logits maps images [B, ...] to logits [B], each logit depending on its own image only
    (D has no batch statistics), so the gradient of their sum gives every per-image gradient.
    Differentiable with respect to what ``d_logits`` closes over (D's parameters).
    """
    grads = jax.grad(lambda x: jnp.sum(d_logits(x)))(real)
    return jnp.mean(jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=-1))


def off_diagonal_gram_norm(w: jax.Array) -> jax.Array:
    """||W^T W (.) (1 - I)||_F^2 for W [n, m], computed through the smaller Gram matrix.

    ||W^T W||_F^2 = ||W W^T||_F^2 (both are the sum of sigma^4), and the masked diagonal holds
    the squared column norms, so for n < m the value is ||W W^T||_F^2 - sum_j ||w_j||^4 with an
    [n, n] Gram matrix instead of [m, m] (G's first linear layer: 20 x 24576 at 128px). With
    n < m the columns cannot be orthogonal, so the subtraction loses no precision that matters.
    """
    if w.shape[0] >= w.shape[1]:
        gram = w.T @ w
        return jnp.sum(jnp.square(gram * (1.0 - jnp.eye(gram.shape[0], dtype=gram.dtype))))
    column_norms = jnp.sum(jnp.square(w), axis=0)
    return jnp.sum(jnp.square(w @ w.T)) - jnp.sum(jnp.square(column_norms))


def orthogonal_regularization(params: dict, exclude: tuple[str, ...] = ("shared_embedding",)
                              ) -> jax.Array:
    """Eq. 3 without beta: sum over weight matrices W of ||W^T W (.) (1 - I)||_F^2.

    Every parameter with two or more dimensions counts (conv kernels [kh,kw,in,out] reshaped to
    [kh*kw*in, out], so W^T W compares output filters); top-level modules in ``exclude`` (G's
    shared embedding, as in BigGAN-PyTorch) are skipped. Its gradient, by autodiff of Eq. 3, is
    4 W (W^T W (.) (1 - I)) per matrix: BigGAN-PyTorch's hand-written ortho gradient is half
    of that, so its ``--G_ortho s`` is ``config.train.ortho_reg = s / 2`` here.
    """
    total = jnp.zeros((), jnp.float32)
    for w in weight_paths(params, exclude).values():
        total += off_diagonal_gram_norm(as_matrix(w))
    return total
