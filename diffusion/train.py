"""Train a diffusion model: batches, sample sheets and the shared training loop around the
step of `diffusion.train_step`."""

from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from diffusion import model as diffusion_model
from diffusion.eval_settings import guidance_scales, sample_step_counts
from diffusion.train_step import TrainState, create_train_state, make_train_step
from gencore import sharding
from gencore.data import create_input_pipeline
from gencore.sample_keys import example_keys
from gencore.sharding import first_process_array
from gencore.training import SHEET_COLUMNS, run_training


def train_batches(config: ml_collections.ConfigDict, mesh: Mesh, start_step: int
                  ) -> Iterator[dict[str, jax.Array]]:
    """Global batches from ``start_step`` on (flips, if any, by the data pipeline). The dataset
    is opened by this call, so a missing one fails here."""
    pipeline = create_input_pipeline(config.data, global_batch_size=config.train.batch_size,
                                     seed=config.train.seed, start_batch=start_step)
    return (sharding.global_batch({k: batch[k] for k in ("image", "label")}, mesh)
            for batch in pipeline)


def sheet_labels(config: ml_collections.ConfigDict, per_class: int = 8) -> np.ndarray | None:
    """Labels of a sample sheet: one row per class (up to 10), or None (unconditional)."""
    if not config.model.num_classes:
        return None
    return np.repeat(np.arange(min(config.model.num_classes, 10), dtype=np.int32), per_class)


def ema_sample_sheet(config: ml_collections.ConfigDict) -> Callable[[TrainState], np.ndarray]:
    """state -> EMA samples [N, H, W, C] in [-1, 1] with the eval sampler
    (``config.eval.sampler``, the fewest of ``sample_steps``, the first ``guidance``) from
    fixed keys, 8 per class (up to 10 classes; 64 if unconditional), for the training
    loop's sample sheet."""
    per_class = SHEET_COLUMNS
    labels = sheet_labels(config, per_class)
    num = per_class * 8 if labels is None else len(labels)
    keys = example_keys(jax.random.PRNGKey(config.train.seed + 1), jnp.arange(num))

    @jax.jit
    def run(ema_params):
        return diffusion_model.generate(config, ema_params, keys, labels,
                                        method=config.eval.sampler,
                                        steps=min(sample_step_counts(config)),
                                        guidance=guidance_scales(config)[0])

    return lambda state: first_process_array(run(state.ema_params))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
    """Train ``config`` in ``workdir``, resuming from its latest checkpoint if there is one."""
    mesh = sharding.make_mesh()
    train_step = make_train_step(config, mesh)
    return run_training(
        config, workdir,
        init_state=lambda: create_train_state(config, mesh),
        train_step=train_step,
        batches_from=lambda step: train_batches(config, mesh, step),
        images_per_step=config.train.batch_size,
        sample_sheet=ema_sample_sheet(config),
    )
