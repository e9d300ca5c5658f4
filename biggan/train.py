"""Train BigGAN: wires the config's data, model and step into the shared training loop."""

from collections.abc import Callable, Iterator

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding

from biggan import model as biggan_model
from biggan.layers import SPECTRAL
from biggan.spectra import spectra
from biggan.stability import stability_hooks
from biggan.train_step import (
    BATCH_STATS,
    UPDATE_SPEC,
    TrainState,
    create_train_state,
    make_train_step,
    validate_train_config,
)
from gencore import sharding
from gencore.data import create_input_pipeline
from gencore.sharding import first_process_array
from gencore.training import SHEET_COLUMNS, run_training


def update_batches(config: ml_collections.ConfigDict, mesh: Mesh, start_step: int
                   ) -> Iterator[dict[str, jax.Array]]:
    """Global batches for the train step from ``start_step`` on.

    Each step consumes ``num_d_steps`` data batches of ``train.batch_size`` (one per D update),
    laid out as [num_d_steps, grad_accum, batch_size / grad_accum, ...] and split over devices.
    The dataset is opened by this call, so a missing one fails here.
    """
    train = config.train
    pipeline = create_input_pipeline(config.data, global_batch_size=train.batch_size,
                                     seed=train.seed, start_batch=start_step * train.num_d_steps)
    target = NamedSharding(mesh, UPDATE_SPEC)
    micro = train.batch_size // train.grad_accum

    def batches() -> Iterator[dict[str, jax.Array]]:
        while True:
            local = [next(pipeline) for _ in range(train.num_d_steps)]
            batch = {}
            for key in ("image", "label"):
                stacked = np.stack([b[key] for b in local])
                stacked = stacked.reshape(train.num_d_steps, train.grad_accum, -1,
                                          *stacked.shape[2:])
                global_shape = (train.num_d_steps, train.grad_accum, micro, *stacked.shape[3:])
                batch[key] = jax.make_array_from_process_local_data(target, stacked,
                                                                    global_shape)
            yield batch

    return batches()


def ema_sample_sheet(config: ml_collections.ConfigDict) -> Callable[[TrainState], np.ndarray]:
    """state -> EMA samples [classes * 8, H, W, 3] in [-1, 1] from fixed latents, 8 per class
    (up to 10 classes), for the training loop's sample sheet. BN uses the sheet's own batch
    statistics; the eval job's standing statistics give the calibrated samples."""
    cfg = config.model
    classes = min(cfg.num_classes, 10)
    per_class = SHEET_COLUMNS
    z = jax.random.normal(jax.random.PRNGKey(config.train.seed + 1), (classes * per_class,
                                                                       cfg.z_dim))
    y = np.repeat(np.arange(classes, dtype=np.int32), per_class)
    G = biggan_model.build_generator(cfg)

    @jax.jit
    def generate(ema_params, g_state):
        images, _ = G.apply({"params": ema_params, **g_state}, z, y, train=True,
                            mutable=[BATCH_STATS, SPECTRAL])
        return images

    return lambda state: first_process_array(generate(state.ema_params, state.g_state))


def weight_spectra(config: ml_collections.ConfigDict
                   ) -> Callable[[TrainState], dict[str, dict[str, jax.Array]]]:
    """Jitted state -> {'G': {weight: sigma [3]}, 'D': ...}: the top three singular values of
    every weight before spectral normalization (Figure 3, Appendix F)."""
    iterations = config.train.spectra_iterations

    @jax.jit
    def compute(g_params, g_spectral, d_params, d_spectral):
        return {"G": spectra(g_params, g_spectral, 3, iterations),
                "D": spectra(d_params, d_spectral, 3, iterations)}

    return lambda state: compute(state.g_params, state.g_state[SPECTRAL], state.d_params,
                                 state.d_state[SPECTRAL])


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
    """Train ``config`` in ``workdir``, resuming from its latest checkpoint if there is one."""
    mesh = sharding.make_mesh(bn_group_size=config.model.bn_group_size)
    validate_train_config(config, mesh.devices.size)
    train_step = make_train_step(config, mesh)
    return run_training(
        config, workdir,
        init_state=lambda: create_train_state(config, mesh),
        train_step=train_step,
        batches_from=lambda step: update_batches(config, mesh, step),
        images_per_step=config.train.batch_size * config.train.num_d_steps,
        sample_sheet=ema_sample_sheet(config),
        hooks=stability_hooks(config.train, workdir, weight_spectra(config)),
    )
