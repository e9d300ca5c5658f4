"""The diffusion training step: sharded pure step, EMA, optimiser (`diffusion.train` runs it).

The step ``(TrainState, batch) -> (TrainState, metrics)`` is compiled with ``jax.jit`` over
the device mesh; the loss and its gradient are written per device with ``jax.shard_map``
and every cross-device reduction is explicit (``lax.pmean`` over ``DATA_AXES``). Timesteps,
noise, dropped labels and per-example dropout keys are drawn for the GLOBAL batch before the
shard_map (dropout masks come from each example's own key through ``jax.vmap``), so one step
on 8 devices equals the same step on 1 device.

Optimisation as in DDPM App. B: Adam with a linear learning-rate warm-up and gradient
clipping by global norm, and an EMA of the parameters (copied from the parameters until
``train.ema_start``: the EMA warm-up). iDDPM's L_vlb rows sample t by importance (Sec. 3.3)
from the per-timestep loss history kept in the state.
"""

from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh, PartitionSpec

from diffusion import model as diffusion_model
from diffusion.guidance import drop_labels
from diffusion.losses import (
    LossHistory,
    init_loss_history,
    sample_timesteps,
    training_losses,
    update_loss_history,
)
from gencore import sharding
from gencore.conv import cpu_compiler_options
from gencore.ema import ema_update
from gencore.sharding import BATCH_SPEC, DATA_AXES, replicated


@flax.struct.dataclass
class TrainState:
    """Everything a run needs to continue bit-for-bit (the data position is ``step``)."""

    step: jax.Array            # int32 []
    rng: jax.Array             # raw PRNG key uint32 [2]
    params: Any
    opt_state: Any
    ema_params: Any
    loss_history: LossHistory  # importance sampling of t (used by L_vlb rows only)


def learning_rate(train: ml_collections.ConfigDict) -> optax.Schedule:
    """Linear warm-up from 0 to ``train.lr`` over ``train.warmup`` steps, then constant."""
    if not train.warmup:
        return optax.constant_schedule(train.lr)
    return optax.linear_schedule(0.0, train.lr, train.warmup)


def optimizer(train: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Global-norm clipping (``train.grad_clip``; 0 disables) then Adam with the warm-up."""
    adam = optax.adam(learning_rate(train), b1=train.adam_b1, b2=train.adam_b2,
                      eps=train.adam_eps)
    if not train.grad_clip:
        return adam
    return optax.chain(optax.clip_by_global_norm(train.grad_clip), adam)


def validate_train_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
    """Fail before any compile with a message naming the field."""
    sharding.check_batch_divisible(config.train.batch_size, num_devices,
                                   "config.train.batch_size")
    diffusion_model.parameterization(config)
    d = config.diffusion
    if d.label_drop_prob and not (config.model.num_classes and config.model.null_class):
        raise ValueError("config.diffusion.label_drop_prob > 0 needs a class-conditional model "
                         "with config.model.null_class=True.")
    if config.data.num_classes != config.model.num_classes and config.model.num_classes:
        raise ValueError(f"config.data.num_classes={config.data.num_classes} differs from "
                         f"config.model.num_classes={config.model.num_classes}.")


def create_train_state(config: ml_collections.ConfigDict, mesh: Mesh) -> TrainState:
    """Initial state from ``config.train.seed``, replicated over ``mesh``."""
    tx = optimizer(config.train)

    def init() -> TrainState:
        init_rng, rng = jax.random.split(jax.random.PRNGKey(config.train.seed))
        params = diffusion_model.init_params(config, init_rng)
        return TrainState(step=jnp.zeros((), jnp.int32), rng=rng, params=params,
                          opt_state=tx.init(params), ema_params=params,
                          loss_history=init_loss_history(config.diffusion.num_steps))

    return jax.jit(init, out_shardings=replicated(mesh))()


def make_train_step(config: ml_collections.ConfigDict, mesh: Mesh
                    ) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """The jitted step; batch {'image': [B, R, R, 3] in [-1, 1], 'label': [B]} split over
    devices along B (``BATCH_SPEC``)."""
    validate_train_config(config, mesh.devices.size)
    train, d = config.train, config.diffusion
    unet = diffusion_model.build_unet(config)
    parameterization = diffusion_model.parameterization(config)
    schedule = diffusion_model.train_schedule(config)
    tx, lr = optimizer(train), learning_rate(train)
    batch_size = train.batch_size

    def apply_fn(params, labels, dropout_keys):
        """model_fn(x_t, t) in training mode; dropout masks from per-example keys."""
        if not config.model.dropout:
            return lambda x, t: unet.apply({"params": params}, x, t, labels, train=True)

        def one(x, t, y, k):
            return unet.apply({"params": params}, x[None], t[None], y[None], train=True,
                              rngs={"dropout": k})[0]

        return lambda x, t: jax.vmap(one)(x, t, labels, dropout_keys)

    def per_device(params, images, labels, i, weights, noise, dropout_keys):
        def loss_fn(p):
            terms = training_losses(apply_fn(p, labels, dropout_keys), parameterization,
                                    schedule, images, i, noise, d.loss_type, d.hybrid_lambda)
            return jnp.mean(terms["loss"] * weights), terms

        # This device's gradient (params cast to device-varying), then the explicit mean.
        grads, terms = jax.grad(loss_fn, has_aux=True)(
            jax.lax.pcast(params, DATA_AXES, to="varying"))
        metrics = {k: jnp.mean(v) for k, v in terms.items()}
        return (jax.lax.pmean(grads, DATA_AXES), jax.lax.pmean(metrics, DATA_AXES),
                terms["vb"])

    sharded = jax.shard_map(
        per_device, mesh=mesh,
        in_specs=(PartitionSpec(),) + (BATCH_SPEC,) * 6,
        out_specs=(PartitionSpec(), PartitionSpec(), BATCH_SPEC))

    def step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        images, labels = batch["image"], batch["label"]
        k_t, k_n, k_y, k_d = jax.random.split(jax.random.fold_in(state.rng, state.step), 4)
        if d.importance_sampling:
            i, weights = sample_timesteps(k_t, state.loss_history, batch_size)
        else:
            i = jax.random.randint(k_t, (batch_size,), 0, schedule.num_steps)
            weights = jnp.ones((batch_size,), jnp.float32)
        noise = jax.random.normal(k_n, images.shape, jnp.float32)
        if d.label_drop_prob:
            labels = drop_labels(k_y, labels, d.label_drop_prob, diffusion_model.null_label(config))
        dropout_keys = jax.random.split(k_d, batch_size)
        grads, metrics, vb = sharded(state.params, images, labels, i, weights, noise,
                                     dropout_keys)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema_params = ema_update(state.ema_params, params, state.step, train)
        history = state.loss_history
        if d.importance_sampling:
            history = update_loss_history(history, i, vb)
        metrics = {**metrics, "grad_norm": optax.global_norm(grads), "lr": lr(state.step)}
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                             ema_params=ema_params, loss_history=history), metrics

    return jax.jit(step, donate_argnums=0, compiler_options=cpu_compiler_options(mesh))
