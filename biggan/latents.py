"""Latent sampling for G: the truncation trick by resampling (Sec. 3.1) and the latent
distributions of Appendix E, selectable by name (``config.train.latent``).

Truncation: every entry of the normal part of z whose magnitude exceeds ``truncation`` is
redrawn until none does (not scaled or clipped), so it follows the normal distribution
truncated to [-truncation, truncation]. Only distributions with a normal part accept it.

Per-sample variable variance (Appendix E, "to improve amenability to the Truncation Trick"):
with ``per_sample_sigma=(sigma_l, sigma_h)`` the normal part of each sample is multiplied by
its own sigma_i ~ U[sigma_l, sigma_h]. Training passes it (``config.train.per_sample_sigma``);
sampling does not, so G is sampled at sigma = 1 and truncated from there: a G trained on
sigma_i down to sigma_l keeps its variety on the truncated normal's smaller spread.

Distributions (z of shape [..., z_dim], drawn independently per entry unless stated):
  normal                    N(0, I)
  uniform                   U[-1, 1]
  bernoulli                 Bernoulli{0, 1}, p = 0.5
  censored_normal           max(N(0, I), 0)
  bernoulli_pm1             Bernoulli{-1, 1}, p = 0.5
  categorical               categorical {-1, 0, 1}, equal probabilities
  normal_x_bernoulli        N(0, I) * Bernoulli{0, 1} (a random ReLU)
  normal_concat_bernoulli   [N(0, I) on the first half of z, Bernoulli{0, 1} on the rest]
  variance_annealing        N(0, sigma^2 I), sigma annealed linearly 2 -> 1 over training
                            (``progress`` in [0, 1])
"""

import jax
import jax.numpy as jnp

TRUNCATABLE = ("normal", "censored_normal", "normal_x_bernoulli", "normal_concat_bernoulli",
               "variance_annealing")
LATENTS = (*TRUNCATABLE, "uniform", "bernoulli", "bernoulli_pm1", "categorical")
ANNEAL_SIGMA = (2.0, 1.0)


def truncated_normal_by_resampling(key: jax.Array, shape: tuple[int, ...],
                                   truncation: float | jax.Array) -> jax.Array:
    """N(0, 1) samples of ``shape`` with |z| > truncation redrawn until |z| <= truncation."""

    def redraw(carry):
        z, key = carry
        key, sub = jax.random.split(key)
        fresh = jax.random.normal(sub, shape)
        return jnp.where(jnp.abs(z) > truncation, fresh, z), key

    key, sub = jax.random.split(key)
    z, _ = jax.lax.while_loop(lambda c: jnp.any(jnp.abs(c[0]) > truncation), redraw,
                              (jax.random.normal(sub, shape), key))
    return z


def _unit_normal(key: jax.Array, shape: tuple[int, ...], truncation: float | None
                 ) -> jax.Array:
    if truncation is None:
        return jax.random.normal(key, shape)
    return truncated_normal_by_resampling(key, shape, truncation)


def check_latent(name: str, truncation: float | None = None,
                 per_sample_sigma: tuple[float, ...] = ()) -> None:
    """Fail with the valid names, or when ``truncation`` or ``per_sample_sigma`` is given for a
    latent without a normal part, or ``per_sample_sigma`` is not 0 < sigma_l <= sigma_h."""
    if name not in LATENTS:
        raise ValueError(f"Unknown latent distribution {name!r} (config.train.latent); "
                         f"valid: {', '.join(LATENTS)}.")
    if truncation is not None and name not in TRUNCATABLE:
        raise ValueError(f"Latent {name!r} has no normal part to truncate; truncation applies "
                         f"to {', '.join(TRUNCATABLE)}.")
    if not per_sample_sigma:
        return
    if name not in TRUNCATABLE:
        raise ValueError(f"config.train.per_sample_sigma scales the normal part of z, which "
                         f"latent {name!r} lacks; use () or one of {', '.join(TRUNCATABLE)}.")
    if len(per_sample_sigma) != 2 or not 0 < per_sample_sigma[0] <= per_sample_sigma[1]:
        raise ValueError(f"config.train.per_sample_sigma={tuple(per_sample_sigma)} must be "
                         f"(sigma_l, sigma_h) with 0 < sigma_l <= sigma_h, e.g. (0.1, 1.0), "
                         f"or () for none.")


def draw_z(name: str, key: jax.Array, shape: tuple[int, ...], truncation: float | None = None,
           progress: float | jax.Array = 1.0,
           per_sample_sigma: tuple[float, ...] = ()) -> jax.Array:
    """z of ``shape`` [..., z_dim] from the Appendix E distribution ``name`` (module docstring).

    ``truncation``: the resampling threshold of the normal part (None: untruncated).
    ``progress``: training progress in [0, 1] for 'variance_annealing' (1 at sampling time).
    ``per_sample_sigma``: (sigma_l, sigma_h), the normal part of each sample (leading axes)
    times sigma_i ~ U[sigma_l, sigma_h] (training only; (): unscaled).
    """
    check_latent(name, truncation, per_sample_sigma)
    normal_key, other_key = jax.random.split(key)

    def normal_part(part_shape):
        z = _unit_normal(normal_key, part_shape, truncation)
        if not per_sample_sigma:
            return z
        # A third stream, so that the other two draw what they draw without it.
        sigma = jax.random.uniform(jax.random.fold_in(key, 1), (*shape[:-1], 1),
                                   minval=per_sample_sigma[0], maxval=per_sample_sigma[1])
        return sigma * z

    if name == "normal":
        return normal_part(shape)
    if name == "uniform":
        return jax.random.uniform(other_key, shape, minval=-1.0, maxval=1.0)
    if name == "bernoulli":
        return jax.random.bernoulli(other_key, 0.5, shape).astype(jnp.float32)
    if name == "censored_normal":
        return jnp.maximum(normal_part(shape), 0.0)
    if name == "bernoulli_pm1":
        return 2.0 * jax.random.bernoulli(other_key, 0.5, shape).astype(jnp.float32) - 1.0
    if name == "categorical":
        return jax.random.randint(other_key, shape, -1, 2).astype(jnp.float32)
    if name == "normal_x_bernoulli":
        mask = jax.random.bernoulli(other_key, 0.5, shape).astype(jnp.float32)
        return normal_part(shape) * mask
    if name == "normal_concat_bernoulli":
        half = shape[-1] // 2
        normal = normal_part((*shape[:-1], half))
        bits = jax.random.bernoulli(other_key, 0.5, (*shape[:-1], shape[-1] - half))
        return jnp.concatenate([normal, bits.astype(jnp.float32)], -1)
    start, end = ANNEAL_SIGMA   # variance_annealing
    annealed = start + (end - start) * jnp.clip(progress, 0.0, 1.0)
    return annealed * normal_part(shape)


def sample_latents(key: jax.Array, batch: int, z_dim: int, num_classes: int,
                   truncation: float | None = None, latent: str = "normal"
                   ) -> tuple[jax.Array, jax.Array]:
    """z [batch, z_dim] from ``latent`` (truncated by resampling if ``truncation``) and uniform
    labels [batch]."""
    z_key, y_key = jax.random.split(key)
    z = draw_z(latent, z_key, (batch, z_dim), truncation)
    return z, jax.random.randint(y_key, (batch,), 0, num_classes)
