"""BigGAN's train step: ``num_d_steps`` D updates then one G update (Sec. 3, Appendix C).

Read it from the top: `d_gradient` / `g_gradient` (the losses on one micro-batch),
`accumulated_gradient` (micro-batches, then the device mean), `optimizer_update` (Eq. 3's and
Sec. 4.1's penalties, Adam, Eq. 4's clamp, Appendix G.1's freezing), `d_update` / `g_update`,
`ema_update` (`gencore.ema`, shared with diffusion), and `per_device_step`, which is Sec. 3's
loop; `make_train_step` draws the global latents and runs it under ``jax.shard_map``.

The step is a pure function ``(TrainState, batch) -> (TrainState, metrics)`` compiled with
``jax.jit`` over a device mesh and written per device with ``jax.shard_map``: each device
sees its slice of the batch, and every cross-device reduction is explicit — gradient means
and metrics are ``lax.pmean`` over ``DATA_AXES``; G's BatchNorm statistics are reduced by
Flax's BatchNorm over ``BN_AXIS`` (cross-replica BN), and its running averages leave the step
averaged over the BN groups (`group_mean_batch_stats`). Latents are drawn for the global batch
before the shard_map, so one step on 8 devices equals the same step on 1 device. DiffAugment
(``config.train.diffaugment``, off by default) and D's dropout (``config.train.d_dropout``, off)
are the exceptions: each device folds its axis index into their keys, so their draws depend on
the device count. Section 4's interventions (``biggan.interventions``) are off by default.

Batch layout: images [num_d_steps, grad_accum, micro_batch, R, R, 3] and labels
[num_d_steps, grad_accum, micro_batch], split over devices along the micro-batch axis; each
D update uses its own slice of real images, averaged over ``grad_accum`` micro-batches.
"""

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh, PartitionSpec

from biggan import diffaugment, interventions, latents, losses
from biggan import model as biggan_model
from biggan.layers import SPECTRAL
from biggan.stability import validate_stability_config
from gencore.conv import cpu_compiler_options
from gencore.ema import ema_update
from gencore.sharding import BN_AXIS, DATA_AXES, GROUP_AXIS, replicated

BATCH_STATS = "batch_stats"
UPDATE_SPEC = PartitionSpec(None, None, DATA_AXES)
"""Sharding of [num_updates, grad_accum, micro_batch, ...] arrays."""
AUGMENT_STREAM = 2**32 - 1
"""Folded into the run's key for DiffAugment's keys (steps, folded in for latents, stay below)."""
DROPOUT_STREAM = 2**32 - 2
"""Folded into the run's key for D's dropout keys (``config.train.d_dropout``)."""


@flax.struct.dataclass
class TrainState:
    """Everything a run needs to continue bit-for-bit (the data position is 'step')."""

    step: jax.Array            # int32 []
    rng: jax.Array             # raw PRNG key uint32 [2]
    g_params: Any
    g_state: Any               # {'batch_stats': ..., 'spectral': ...}
    g_opt_state: Any
    d_params: Any
    d_state: Any               # {'spectral': ...}
    d_opt_state: Any
    ema_params: Any            # EMA of g_params (SN vectors and BN statistics are not averaged)
    ada: Any                   # ADA's {'p', 'real_sign_sum'} (biggan.diffaugment); fixed if off


def optimizers(train: ml_collections.ConfigDict) -> tuple[optax.GradientTransformation, ...]:
    """Adam for G and D with the config's learning rates and betas (Appendix C)."""
    def adam(lr: float) -> optax.GradientTransformation:
        return optax.adam(lr, b1=train.adam_b1, b2=train.adam_b2, eps=train.adam_eps)
    return adam(train.g_lr), adam(train.d_lr)


def create_train_state(config: ml_collections.ConfigDict, mesh: Mesh) -> TrainState:
    """Initial state from ``config.train.seed``, replicated over ``mesh``."""
    g_tx, d_tx = optimizers(config.train)

    def init() -> TrainState:
        init_rng, rng = jax.random.split(jax.random.PRNGKey(config.train.seed))
        g_vars, d_vars = biggan_model.init_variables(config.model, init_rng)
        g_params, g_state = g_vars["params"], {k: v for k, v in g_vars.items() if k != "params"}
        d_params, d_state = d_vars["params"], {SPECTRAL: d_vars[SPECTRAL]}
        return TrainState(step=jnp.zeros((), jnp.int32), rng=rng, g_params=g_params,
                          g_state=g_state, g_opt_state=g_tx.init(g_params), d_params=d_params,
                          d_state=d_state, d_opt_state=d_tx.init(d_params), ema_params=g_params,
                          ada=diffaugment.ada_initial_state(config.train))

    return jax.jit(init, out_shardings=replicated(mesh))()


def validate_train_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
    """Fail before any compile with a message naming the field."""
    train = config.train
    biggan_model.validate_model_config(config.model)
    losses.get_losses(train.loss, train.hinge_margin)
    latents.check_latent(train.latent, per_sample_sigma=train.per_sample_sigma)
    diffaugment.validate_augment_config(train)
    interventions.validate_intervention_config(train)
    validate_stability_config(train)
    for field in ("num_d_steps", "grad_accum", "batch_size"):
        if train[field] < 1:
            raise ValueError(f"config.train.{field}={train[field]} must be >= 1.")
    per_micro = train.batch_size // train.grad_accum
    if train.batch_size % train.grad_accum or per_micro % num_devices:
        raise ValueError(
            f"config.train.batch_size={train.batch_size} must split into "
            f"config.train.grad_accum={train.grad_accum} micro-batches each divisible by the "
            f"number of devices ({num_devices}); use a multiple of "
            f"{train.grad_accum * num_devices}.")
    if config.data.num_classes != config.model.num_classes:
        raise ValueError(f"config.data.num_classes={config.data.num_classes} differs from "
                         f"config.model.num_classes={config.model.num_classes}.")


def mean_over_devices(tree: Any) -> Any:
    """Explicit cross-device mean of a pytree (gradients, metrics)."""
    return jax.lax.pmean(tree, DATA_AXES)


def group_mean_batch_stats(g_state: Any) -> Any:
    """G's state with its running BatchNorm statistics averaged over the BN groups.

    Each group (``BN_AXIS``) normalizes with, and averages into its running statistics, the
    moments of its own slice of the batch, so with ``config.model.bn_group_size`` below the
    device count the groups' running statistics differ; their mean over ``GROUP_AXIS`` is what
    the replicated state keeps (exact when one group spans every device)."""
    return {**g_state, BATCH_STATS: jax.lax.pmean(g_state[BATCH_STATS], GROUP_AXIS)}


@dataclasses.dataclass(frozen=True)
class StepParts:
    """What the step needs besides the state: the networks, optimisers and losses built from
    ``config`` (Appendix C), and ``config.train`` for the switches."""

    G: Any
    D: Any
    g_tx: optax.GradientTransformation
    d_tx: optax.GradientTransformation
    d_loss: Callable
    g_loss: Callable
    train: ml_collections.ConfigDict

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> "StepParts":
        train = config.train
        g_tx, d_tx = optimizers(train)
        d_loss, g_loss = losses.get_losses(train.loss, train.hinge_margin)
        return cls(G=biggan_model.build_generator(config.model, axis_name=BN_AXIS),
                   D=biggan_model.build_discriminator(config.model, dropout_rate=train.d_dropout),
                   g_tx=g_tx, d_tx=d_tx, d_loss=d_loss, g_loss=g_loss, train=train)


def generate(parts: StepParts, g_params: Any, g_state: Any, z: jax.Array, y: jax.Array
             ) -> tuple[jax.Array, Any]:
    """G(z, y) in training mode (batch statistics); returns images and G's updated state."""
    return parts.G.apply({"params": g_params, **g_state}, z, y, train=True,
                         mutable=[BATCH_STATS, SPECTRAL])


def d_gradient(parts: StepParts, d_params: Any, g_params: Any, states: tuple, batch: list,
               probability: jax.Array | None) -> tuple[Any, tuple, dict]:
    """D's gradient on one micro-batch: the D loss (hinge, Sec. 3) on real images and fresh
    fakes, plus Eq. 5's R1 penalty with ``r1_gamma``. D sees both through DiffAugment with
    ADA's ``probability`` (None: always). Returns (grads, (d_state, g_state), metrics)."""
    train = parts.train
    d_state, g_state = states
    real, real_y, z, fake_y, augment_key, dropout_key = batch
    fake, g_state = generate(parts, g_params, g_state, z, fake_y)
    fake_key, real_key = jax.random.split(augment_key)
    fake = diffaugment.augment(jax.lax.stop_gradient(fake), fake_key, train.diffaugment,
                               probability)
    real = diffaugment.augment(real, real_key, train.diffaugment, probability)

    def loss(params):
        def discriminate(images, labels):
            return parts.D.apply({"params": params, **d_state}, images, labels, train=True,
                                 mutable=[SPECTRAL], rngs={"dropout": dropout_key})

        logits, new_state = discriminate(jnp.concatenate([fake, real]),
                                         jnp.concatenate([fake_y, real_y]))
        fake_logits, real_logits = jnp.split(logits, 2)
        loss_real, loss_fake = parts.d_loss(real_logits, fake_logits)
        metrics = dict(d_loss_real=loss_real, d_loss_fake=loss_fake,
                       d_real=jnp.mean(real_logits), d_fake=jnp.mean(fake_logits),
                       d_real_sign=jnp.mean(jnp.sign(real_logits)))
        total = loss_real + loss_fake
        if train.r1_gamma:   # Eq. 5 on the real images D sees
            r1 = losses.r1_penalty(lambda x: discriminate(x, real_y)[0], real)
            total += 0.5 * train.r1_gamma * r1
            metrics["r1"] = r1
        return total, (new_state, metrics)

    grads, (d_state, metrics) = jax.grad(loss, has_aux=True)(d_params)
    return grads, (d_state, g_state), metrics


def g_gradient(parts: StepParts, g_params: Any, d_params: Any, states: tuple, batch: list,
               probability: jax.Array | None) -> tuple[Any, tuple, dict]:
    """G's gradient on one micro-batch of fresh latents, D seeing the fakes through DiffAugment.
    Returns (grads, (g_state, d_state), metrics)."""
    g_state, d_state = states
    z, y, augment_key, dropout_key = batch

    def loss(params):
        fake, new_g_state = generate(parts, params, g_state, z, y)
        fake = diffaugment.augment(fake, augment_key, parts.train.diffaugment, probability)
        logits, new_d_state = parts.D.apply({"params": d_params, **d_state}, fake, y,
                                            train=True, mutable=[SPECTRAL],
                                            rngs={"dropout": dropout_key})
        g_loss = parts.g_loss(logits)
        return g_loss, ((new_g_state, new_d_state), dict(g_loss=g_loss))

    grads, (states, metrics) = jax.grad(loss, has_aux=True)(g_params)
    return grads, states, metrics


def accumulated_gradient(gradient: Callable, states: tuple, micro_batches: list,
                         accum: int) -> tuple[Any, tuple, dict]:
    """Mean of ``gradient(states, micro_batch)`` over the ``accum`` micro-batches (leading
    axis), threading the model states through them in order; then the mean over devices.

    Python loops, not lax.scan: XLA:CPU runs weight-gradient convolutions inside while loops
    on a naive path (measured 100x slower); the trip counts here are small."""
    grad_sum, all_metrics = None, []
    for m in range(accum):
        grads, states, metrics = gradient(states, [x[m] for x in micro_batches])
        grad_sum = grads if grad_sum is None else jax.tree_util.tree_map(jnp.add, grad_sum,
                                                                         grads)
        all_metrics.append(metrics)
    grads = mean_over_devices(jax.tree_util.tree_map(lambda g: g / accum, grad_sum))
    return grads, states, mean_of(all_metrics)


def optimizer_update(tx: optax.GradientTransformation, params: Any, opt_state: Any,
                     grads: Any, penalties: list, project: Callable[[Any], Any],
                     freeze_step: int, step: jax.Array) -> tuple[Any, Any, dict]:
    """One Adam update of a net: the data-independent penalties added to the device-mean
    gradient (Eq. 3, Sec. 4.1), the optimizer, the projection after it (Eq. 4), and no change
    at all once ``step >= freeze_step`` (Appendix G.1). Returns (params, opt_state, metrics of
    the penalties)."""
    metrics = {}
    for name, penalize in penalties:
        with jax.named_scope(name):   # names the penalty's ops in the HLO (profiles, FLOPs)
            grads, metrics[name] = penalize(grads, params)
    updates, new_opt_state = tx.update(grads, opt_state, params)
    new_params = project(optax.apply_updates(params, updates))
    new_params, new_opt_state = interventions.unless_frozen(
        step, freeze_step, (new_params, new_opt_state), (params, opt_state))
    return new_params, new_opt_state, metrics


def d_update(parts: StepParts, state: TrainState, d_params: Any, d_opt_state: Any,
             states: tuple, batch: list, probability: jax.Array | None
             ) -> tuple[Any, Any, tuple, dict]:
    """One of the ``num_d_steps`` D updates of Sec. 3 (G fixed at ``state.g_params``)."""
    train = parts.train
    grads, states, metrics = accumulated_gradient(
        lambda s, b: d_gradient(parts, d_params, state.g_params, s, b, probability),
        states, batch, train.grad_accum)
    metrics["d_grad_norm"] = optax.global_norm(grads)
    d_spectral = states[0][SPECTRAL]
    d_params, d_opt_state, penalties = optimizer_update(
        parts.d_tx, d_params, d_opt_state, grads,
        interventions.gradient_penalties(train, "D", d_spectral),
        interventions.projection(train, "D", d_spectral), train.freeze_d_step, state.step)
    return d_params, d_opt_state, states, {**metrics, **penalties}


def g_update(parts: StepParts, state: TrainState, d_params: Any, states: tuple, batch: list,
             probability: jax.Array | None) -> tuple[Any, Any, tuple, dict]:
    """The G update of Sec. 3 against the updated D."""
    train = parts.train
    grads, (g_state, d_state), metrics = accumulated_gradient(
        lambda s, b: g_gradient(parts, state.g_params, d_params, s, b, probability),
        states, batch, train.grad_accum)
    metrics["g_grad_norm"] = optax.global_norm(grads)
    g_params, g_opt_state, penalties = optimizer_update(
        parts.g_tx, state.g_params, state.g_opt_state, grads,
        interventions.gradient_penalties(train, "G", g_state[SPECTRAL]),
        interventions.projection(train, "G", g_state[SPECTRAL]), train.freeze_g_step,
        state.step)
    return g_params, g_opt_state, (g_state, d_state), {**metrics, **penalties}


def micro_step_keys(key: jax.Array, train: ml_collections.ConfigDict) -> jax.Array:
    """This device's keys [D updates + G update, micro-batch, key] from a step's ``key`` (the
    axis index folded in, so the draws depend on the device count)."""
    device_key = jax.random.fold_in(key, jax.lax.axis_index(DATA_AXES))
    return jax.random.split(device_key, (train.num_d_steps + 1) * train.grad_accum).reshape(
        train.num_d_steps + 1, train.grad_accum, -1)


def per_device_step(parts: StepParts, state: TrainState, images: jax.Array, labels: jax.Array,
                    d_z: jax.Array, d_y: jax.Array, g_z: jax.Array, g_y: jax.Array,
                    augment_key: jax.Array) -> tuple[TrainState, dict]:
    """Sec. 3 on one device's slice: ``num_d_steps`` D updates, one G update, the EMA (and
    ADA's probability update); metrics are device means."""
    train = parts.train
    ada_on = diffaugment.ada_enabled(train)
    probability = state.ada["p"] if ada_on else None
    augment_keys = micro_step_keys(augment_key, train)
    dropout_keys = micro_step_keys(jax.random.fold_in(
        jax.random.fold_in(state.rng, DROPOUT_STREAM), state.step), train)
    d_params, d_opt_state = state.d_params, state.d_opt_state
    states, d_metrics = (state.d_state, state.g_state), []
    for i in range(train.num_d_steps):
        d_params, d_opt_state, states, metrics = d_update(
            parts, state, d_params, d_opt_state, states,
            [images[i], labels[i], d_z[i], d_y[i], augment_keys[i], dropout_keys[i]],
            probability)
        d_metrics.append(metrics)
    d_state, g_state = states
    g_params, g_opt_state, (g_state, d_state), g_metrics = g_update(
        parts, state, d_params, (g_state, d_state),
        [g_z[0], g_y[0], augment_keys[train.num_d_steps], dropout_keys[train.num_d_steps]],
        probability)
    g_state = group_mean_batch_stats(g_state)
    ema_params = ema_update(state.ema_params, g_params, state.step, train)
    metrics = {**d_metrics[-1], **g_metrics}
    ada = state.ada
    if ada_on:   # r_t from D's outputs on (augmented) reals
        real_sign = mean_over_devices(mean_of(d_metrics)["d_real_sign"])
        ada = diffaugment.ada_update(state.ada, real_sign, state.step, train)
        metrics["ada_p"] = ada["p"]
    new_state = state.replace(step=state.step + 1, g_params=g_params, g_state=g_state,
                              g_opt_state=g_opt_state, d_params=d_params, d_state=d_state,
                              d_opt_state=d_opt_state, ema_params=ema_params, ada=ada)
    return new_state, mean_over_devices(metrics)


def make_train_step(config: ml_collections.ConfigDict, mesh: Mesh
                    ) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """The jitted step for ``config`` on ``mesh``; batch arrays as in the module docstring.
    Latents and the step's keys are drawn for the global batch, then `per_device_step` runs
    under ``jax.shard_map``."""
    validate_train_config(config, mesh.devices.size)
    train = config.train
    num_updates, accum = train.num_d_steps, train.grad_accum
    micro = train.batch_size // accum
    # check_vma stays off: D's and G's spectral-norm vectors come out of the differentiated
    # per-device copy of the weights, equal on every device but typed device-varying, and a
    # pmean of equal float32 values is not exact (it would change the step's results).
    sharded = jax.shard_map(
        functools.partial(per_device_step, StepParts.from_config(config)), mesh=mesh,
        in_specs=(PartitionSpec(), UPDATE_SPEC, UPDATE_SPEC, UPDATE_SPEC, UPDATE_SPEC,
                  UPDATE_SPEC, UPDATE_SPEC, PartitionSpec()),
        out_specs=(PartitionSpec(), PartitionSpec()), check_vma=False)

    def step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        key = jax.random.fold_in(state.rng, state.step)
        d_key, g_key = jax.random.split(key)
        d_z, d_y = training_latents(d_key, (num_updates, accum, micro), config, state.step)
        g_z, g_y = training_latents(g_key, (1, accum, micro), config, state.step)
        augment_key = jax.random.fold_in(jax.random.fold_in(state.rng, AUGMENT_STREAM),
                                         state.step)   # per device: axis index folded in
        return sharded(state, batch["image"], batch["label"], d_z, d_y, g_z, g_y, augment_key)

    return jax.jit(step, donate_argnums=0, compiler_options=cpu_compiler_options(mesh))


def mean_of(metrics: list[dict]) -> dict:
    """Element-wise mean of a list of metric dicts."""
    return jax.tree_util.tree_map(lambda *m: jnp.mean(jnp.stack(m)), *metrics)


def training_latents(key: jax.Array, batch_shape: tuple[int, ...],
                     config: ml_collections.ConfigDict, step: jax.Array
                     ) -> tuple[jax.Array, jax.Array]:
    """z [*batch_shape, z_dim] from ``config.train.latent`` (Appendix E; its normal part
    scaled per sample by ``config.train.per_sample_sigma``) and uniform labels."""
    z_key, y_key = jax.random.split(key)
    progress = step / max(config.train.steps, 1)
    z = latents.draw_z(config.train.latent, z_key, (*batch_shape, config.model.z_dim),
                       progress=progress, per_sample_sigma=config.train.per_sample_sigma)
    return z, jax.random.randint(y_key, batch_shape, 0, config.model.num_classes)


def generate_ema(config: ml_collections.ConfigDict) -> Callable:
    """Jitted (ema_params, g_state, z, y) -> images with stored BN statistics (no update)."""
    G = biggan_model.build_generator(config.model)

    @jax.jit
    def run(ema_params, g_state, z, y):
        return G.apply({"params": ema_params, **g_state}, z, y, train=False)

    return run

