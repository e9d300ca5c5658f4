"""BigGAN's train step: ``num_d_steps`` D updates then one G update (Sec. 3, Appendix C).

The step is a pure function ``(TrainState, batch) -> (TrainState, metrics)`` compiled with
``jax.jit`` over a device mesh and written per device with ``jax.shard_map``: each device
sees its slice of the batch, and every cross-device reduction is explicit — gradient means
and metrics are ``lax.pmean`` over ``DATA_AXES``; G's BatchNorm statistics are reduced by
Flax's BatchNorm over ``BN_AXIS`` (cross-replica BN). Latents are drawn for the global batch
before the shard_map, so one step on 8 devices equals the same step on 1 device. DiffAugment
(``config.train.diffaugment``, off by default) and D's dropout (``config.train.d_dropout``, off)
are the exceptions: each device folds its axis index into their keys, so their draws depend on
the device count. Section 4's interventions (``biggan.interventions``) are off by default.

Batch layout: images [num_d_steps, grad_accum, micro_batch, R, R, 3] and labels
[num_d_steps, grad_accum, micro_batch], split over devices along the micro-batch axis; each
D update uses its own slice of real images, averaged over ``grad_accum`` micro-batches.
"""

from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh, PartitionSpec

from biggan import diffaugment, interventions, latents, losses, models
from biggan.layers import SPECTRAL
from gencore.sharding import BN_AXIS, DATA_AXES, replicated
from gencore.stability import validate_stability_config

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
        g_vars, d_vars = models.init_variables(config.model, init_rng)
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
    models.validate_model_config(config.model)
    losses.get_losses(train.loss, train.hinge_margin)
    latents.check_latent(train.latent)
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


def make_train_step(config: ml_collections.ConfigDict, mesh: Mesh
                    ) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """The jitted step for ``config`` on ``mesh``; batch arrays as in the module docstring."""
    validate_train_config(config, mesh.devices.size)
    train, model_cfg = config.train, config.model
    G = models.build_generator(model_cfg, axis_name=BN_AXIS)
    D = models.build_discriminator(model_cfg, dropout_rate=train.d_dropout)
    g_tx, d_tx = optimizers(train)
    d_loss_fn, g_loss_fn = losses.get_losses(train.loss, train.hinge_margin)
    g_sigma_reg, g_sigma_clamp = interventions.acts_on(train, "G")
    d_sigma_reg, d_sigma_clamp = interventions.acts_on(train, "D")
    num_updates, accum = train.num_d_steps, train.grad_accum
    micro = train.batch_size // accum
    policy = train.diffaugment

    def generate(g_params, g_state, z, y):
        return G.apply({"params": g_params, **g_state}, z, y, train=True,
                       mutable=[BATCH_STATS, SPECTRAL])

    def d_micro_step(d_params, g_params, states, batch, probability):
        """D gradient on one micro-batch; G runs in training mode (batch statistics). D sees
        real and fake images through DiffAugment with ADA's ``probability`` (None: always)."""
        d_state, g_state = states
        real, real_y, z, fake_y, augment_key, dropout_key = batch
        fake, g_state = generate(g_params, g_state, z, fake_y)
        fake_key, real_key = jax.random.split(augment_key)
        fake = diffaugment.augment(jax.lax.stop_gradient(fake), fake_key, policy, probability)
        real = diffaugment.augment(real, real_key, policy, probability)

        def loss(params):
            def discriminate(images, labels):
                return D.apply({"params": params, **d_state}, images, labels, train=True,
                               mutable=[SPECTRAL], rngs={"dropout": dropout_key})

            logits, new_state = discriminate(jnp.concatenate([fake, real]),
                                             jnp.concatenate([fake_y, real_y]))
            fake_logits, real_logits = jnp.split(logits, 2)
            loss_real, loss_fake = d_loss_fn(real_logits, fake_logits)
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

    def g_micro_step(g_params, d_params, states, batch, probability):
        """G gradient on one micro-batch of fresh latents, D seeing them through DiffAugment."""
        g_state, d_state = states
        z, y, augment_key, dropout_key = batch

        def loss(params):
            fake, new_g_state = generate(params, g_state, z, y)
            fake = diffaugment.augment(fake, augment_key, policy, probability)
            logits, new_d_state = D.apply({"params": d_params, **d_state}, fake, y, train=True,
                                          mutable=[SPECTRAL], rngs={"dropout": dropout_key})
            g_loss = g_loss_fn(logits)
            return g_loss, ((new_g_state, new_d_state), dict(g_loss=g_loss))

        grads, (states, metrics) = jax.grad(loss, has_aux=True)(g_params)
        return grads, states, metrics

    def accumulate(micro_step, states, micro_batches):
        """Mean gradient of ``micro_step`` over the grad_accum micro-batches (leading axis),
        threading the model states through them in order; then the mean over devices.

        Python loops, not lax.scan: XLA:CPU runs weight-gradient convolutions inside while
        loops on a naive path (measured 100x slower); the trip counts here are small."""
        grad_sum, all_metrics = None, []
        for m in range(accum):
            grads, states, metrics = micro_step(states, [x[m] for x in micro_batches])
            grad_sum = grads if grad_sum is None else jax.tree_util.tree_map(jnp.add, grad_sum,
                                                                             grads)
            all_metrics.append(metrics)
        grads = mean_over_devices(jax.tree_util.tree_map(lambda g: g / accum, grad_sum))
        return grads, states, mean_of(all_metrics)

    def micro_step_keys(key: jax.Array) -> jax.Array:
        """This device's keys [D updates + G update, micro-batch, key] from a step's ``key``
        (the axis index folded in, so the draws depend on the device count)."""
        device_key = jax.random.fold_in(key, jax.lax.axis_index(DATA_AXES))
        return jax.random.split(device_key, (num_updates + 1) * accum).reshape(
            num_updates + 1, accum, -1)

    def per_device(state: TrainState, images, labels, d_z, d_y, g_z, g_y, augment_key):
        d_params, d_opt_state = state.d_params, state.d_opt_state
        states, d_metrics = (state.d_state, state.g_state), []
        probability = state.ada["p"] if diffaugment.ada_enabled(train) else None
        augment_keys = micro_step_keys(augment_key)
        dropout_keys = micro_step_keys(jax.random.fold_in(
            jax.random.fold_in(state.rng, DROPOUT_STREAM), state.step))
        for i in range(num_updates):
            grads, states, metrics = accumulate(
                lambda s, b, d_params=d_params: d_micro_step(d_params, state.g_params, s, b,
                                                             probability),
                states, [images[i], labels[i], d_z[i], d_y[i], augment_keys[i],
                         dropout_keys[i]])
            metrics["d_grad_norm"] = optax.global_norm(grads)
            d_spectral = states[0][SPECTRAL]
            if d_sigma_reg:   # Sec. 4.1, added after the device mean
                grads, metrics["d_sigma_reg"] = interventions.sigma0_regularized(
                    train, grads, d_params, d_spectral)
            updates, new_opt_state = d_tx.update(grads, d_opt_state, d_params)
            new_params = optax.apply_updates(d_params, updates)
            if d_sigma_clamp:
                new_params = interventions.sigma0_clamped(train, new_params, d_spectral)
            d_params, d_opt_state = interventions.unless_frozen(
                state.step, train.freeze_d_step, (new_params, new_opt_state),
                (d_params, d_opt_state))
            d_metrics.append(metrics)
        d_state, g_state = states

        grads, (g_state, d_state), g_metrics = accumulate(
            lambda s, b: g_micro_step(state.g_params, d_params, s, b, probability),
            (g_state, d_state), [g_z[0], g_y[0], augment_keys[num_updates],
                                 dropout_keys[num_updates]])
        g_metrics["g_grad_norm"] = optax.global_norm(grads)
        if train.ortho_reg:   # Eq. 3, added to G's gradient after the device mean
            grads, g_metrics["ortho_reg"] = interventions.add_regularizer(
                grads, losses.orthogonal_regularization, state.g_params, train.ortho_reg)
        if g_sigma_reg:
            grads, g_metrics["g_sigma_reg"] = interventions.sigma0_regularized(
                train, grads, state.g_params, g_state[SPECTRAL])
        updates, g_opt_state = g_tx.update(grads, state.g_opt_state, state.g_params)
        g_params = optax.apply_updates(state.g_params, updates)
        if g_sigma_clamp:
            g_params = interventions.sigma0_clamped(train, g_params, g_state[SPECTRAL])
        g_params, g_opt_state = interventions.unless_frozen(
            state.step, train.freeze_g_step, (g_params, g_opt_state),
            (state.g_params, state.g_opt_state))
        decay = jnp.where(state.step >= train.ema_start, train.ema_decay, 0.0)
        ema_params = jax.tree_util.tree_map(lambda e, p: decay * e + (1.0 - decay) * p,
                                            state.ema_params, g_params)
        metrics = {**d_metrics[-1], **g_metrics}
        ada = state.ada
        if diffaugment.ada_enabled(train):   # r_t from D's outputs on (augmented) reals
            real_sign = mean_over_devices(mean_of(d_metrics)["d_real_sign"])
            ada = diffaugment.ada_update(state.ada, real_sign, state.step, train)
            metrics["ada_p"] = ada["p"]
        new_state = state.replace(step=state.step + 1, g_params=g_params, g_state=g_state,
                                  g_opt_state=g_opt_state, d_params=d_params, d_state=d_state,
                                  d_opt_state=d_opt_state, ema_params=ema_params, ada=ada)
        return new_state, mean_over_devices(metrics)

    sharded = jax.shard_map(
        per_device, mesh=mesh,
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

    return jax.jit(step, donate_argnums=0)


def mean_of(metrics: list[dict]) -> dict:
    """Element-wise mean of a list of metric dicts."""
    return jax.tree_util.tree_map(lambda *m: jnp.mean(jnp.stack(m)), *metrics)


def training_latents(key: jax.Array, batch_shape: tuple[int, ...],
                     config: ml_collections.ConfigDict, step: jax.Array
                     ) -> tuple[jax.Array, jax.Array]:
    """z [*batch_shape, z_dim] from ``config.train.latent`` (Appendix E) and uniform labels."""
    z_key, y_key = jax.random.split(key)
    progress = step / max(config.train.steps, 1)
    z = latents.draw_z(config.train.latent, z_key, (*batch_shape, config.model.z_dim),
                       progress=progress)
    return z, jax.random.randint(y_key, batch_shape, 0, config.model.num_classes)


def generate_ema(config: ml_collections.ConfigDict) -> Callable:
    """Jitted (ema_params, g_state, z, y) -> images with stored BN statistics (no update)."""
    G = models.build_generator(config.model)

    @jax.jit
    def run(ema_params, g_state, z, y):
        return G.apply({"params": ema_params, **g_state}, z, y, train=False)

    return run

