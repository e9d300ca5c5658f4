"""The train step's Section 4 interventions, each a ``config.train`` switch that is off by default.

- ``sigma_reg`` (Sec. 4.1): adds sigma_reg * sum_W (sigma0(W) - target)^2 to the loss of the nets
  in ``sigma_nets``, target = ``sigma_target`` or ``sigma_ratio`` * sg(sigma1(W)) when
  sigma_ratio > 0 (``biggan.spectra.sigma0_penalty``).
- ``sigma_clamp`` (Eq. 4): after every update of those nets, W <- W - max(0, sigma0 - target)
  v0 u0^T with the same target (``biggan.spectra.clamp_sigma0``).
  Both estimate the singular vectors with ``sigma_iterations`` subspace iterations started from
  spectral norm's u.
- ``r1_gamma`` (Eq. 5): gamma / 2 * E_real ||grad_x D(x)||^2 added to D's loss.
- ``d_dropout``: dropout rate on D's pooled features in training mode (keep prob 1 - rate).
- ``hinge_margin``: the hinge D loss's margin; ``loss='wasserstein'`` (Appendix G).
- ``freeze_g_step`` / ``freeze_d_step`` (Appendix G.1): from this step on, the net's parameters
  and optimizer state are left unchanged (-1: never).
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from biggan import losses, spectra

SIGMA_NETS = ("G", "D", "GD")


def validate_intervention_config(train: ml_collections.ConfigDict) -> None:
    """Fail before any compile with a message naming the ``config.train`` field."""
    def fail(field: str, requirement: str) -> None:
        raise ValueError(f"config.train.{field}={train[field]!r} {requirement}.")

    for field in ("sigma_reg", "r1_gamma"):
        if train[field] < 0:
            fail(field, "must be >= 0 (0 turns it off)")
    if train.sigma_nets not in SIGMA_NETS:
        fail("sigma_nets", f"must be one of {SIGMA_NETS}")
    if train.sigma_ratio < 0:
        fail("sigma_ratio", "must be >= 0 (0: use sigma_target; > 0: target r * sg(sigma1))")
    if (train.sigma_reg or train.sigma_clamp) and train.sigma_ratio == 0 \
            and train.sigma_target <= 0:
        fail("sigma_target", "must be > 0 for sigma_reg / sigma_clamp, or set sigma_ratio > 0")
    if train.sigma_iterations < 1:
        fail("sigma_iterations", "must be >= 1")
    if not 0.0 <= train.d_dropout < 1.0:
        fail("d_dropout", "is a drop rate (1 - keep probability) and must be in [0, 1)")
    for field in ("freeze_g_step", "freeze_d_step"):
        if train[field] < -1:
            fail(field, "must be a step >= 0, or -1 for never")


def acts_on(train: ml_collections.ConfigDict, net: str) -> tuple[bool, bool]:
    """(sigma0 penalty on, sigma0 clamp on) for ``net`` ('G' or 'D')."""
    chosen = net in train.sigma_nets
    return chosen and train.sigma_reg > 0, chosen and train.sigma_clamp


def add_regularizer(grads: Any, penalty: Callable[[Any], jax.Array], params: Any,
                    strength: float) -> tuple[Any, jax.Array]:
    """(grads + strength * grad penalty(params), penalty(params)): a data-independent term added
    to a gradient after its device mean (params are replicated, so it needs no reduction)."""
    value, penalty_grads = jax.value_and_grad(penalty)(params)
    return jax.tree_util.tree_map(lambda g, p: g + strength * p, grads, penalty_grads), value


def sigma0_regularized(train: ml_collections.ConfigDict, grads: Any, params: Any,
                       spectral: Any) -> tuple[Any, jax.Array]:
    """``add_regularizer`` with Sec. 4.1's sigma0 penalty of strength ``sigma_reg``."""
    def penalty(p: Any) -> jax.Array:
        return spectra.sigma0_penalty(p, spectral, train.sigma_target, train.sigma_ratio,
                                      train.sigma_iterations)
    return add_regularizer(grads, penalty, params, train.sigma_reg)


def sigma0_clamped(train: ml_collections.ConfigDict, params: Any, spectral: Any) -> Any:
    """Eq. 4 applied to every weight matrix of ``params``."""
    return spectra.clamp_sigma0(params, spectral, train.sigma_target, train.sigma_ratio,
                                train.sigma_iterations)


Regularizer = Callable[[Any, Any], tuple[Any, jax.Array]]
"""(grads, params) -> (grads + strength * grad penalty(params), penalty(params))."""


def gradient_penalties(train: ml_collections.ConfigDict, net: str, spectral: Any
                       ) -> list[tuple[str, Regularizer]]:
    """The data-independent penalties added to ``net``'s device-mean gradient, in order, each
    with its metric name: Eq. 3's orthogonal regularization (G, ``ortho_reg``) and Sec. 4.1's
    sigma0 penalty (``sigma_reg`` on the nets of ``sigma_nets``)."""
    penalties: list[tuple[str, Regularizer]] = []
    if net == "G" and train.ortho_reg:
        penalties.append(("ortho_reg", lambda grads, params: add_regularizer(
            grads, losses.orthogonal_regularization, params, train.ortho_reg)))
    if acts_on(train, net)[0]:
        penalties.append((f"{net.lower()}_sigma_reg", lambda grads, params: sigma0_regularized(
            train, grads, params, spectral)))
    return penalties


def projection(train: ml_collections.ConfigDict, net: str, spectral: Any
               ) -> Callable[[Any], Any]:
    """What follows each update of ``net``'s parameters: Eq. 4's clamp with ``sigma_clamp``,
    else the identity."""
    if acts_on(train, net)[1]:
        return lambda params: sigma0_clamped(train, params, spectral)
    return lambda params: params


def unless_frozen(step: jax.Array, freeze_step: int, updated: Any, current: Any) -> Any:
    """``updated``, or ``current`` unchanged (bit for bit) once ``step >= freeze_step`` >= 0."""
    if freeze_step < 0:
        return updated
    frozen = step >= freeze_step
    return jax.tree_util.tree_map(lambda new, old: jnp.where(frozen, old, new), updated, current)
