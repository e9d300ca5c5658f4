r"""D's memorization test (Sec. 4.2): D's real/fake decisions on training vs held-out images.

    python -m biggan.memorization --workdir=DIR [--config=FILE[:variant]] [--step=N]
        [--num_images=1000] [--heldout_split=SPLIT]

Loads checkpoint ``--step`` (default: the latest) of ``workdir`` with the config saved with it
(or ``--config``) and prints one JSON line: the share of training images D calls real
(D(x) > 0), the same share on held-out images, and the share of G's samples it calls fake
(D(G(z)) < 0; G as in training: raw weights, batch statistics), with the image counts. The
paper finds > 98% on ImageNet's training images and 50-55% on validation images.

Held-out images: for the embedded digits (and 'folder' data), the split 'heldout', i.e. the
images that ``config.data.train_fraction`` < 1 leaves out of training; for tfds datasets the
'validation' split. D runs without its dropout and without updating spectral norm's u.
"""

import functools
import json
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from biggan import latents
from biggan import model as biggan_model
from biggan.layers import SPECTRAL
from biggan.train_step import BATCH_STATS, TrainState, create_train_state
from gencore import checkpoint, sharding
from gencore.config_util import check_config_arguments
from gencore.console import stop_on_error
from gencore.data import HELDOUT_SPLIT, create_input_pipeline


def default_heldout_split(data: ml_collections.ConfigDict) -> str:
    """'heldout' for the in-memory sources (digits, folder), 'validation' for tfds."""
    return HELDOUT_SPLIT if data.name in ("digits", "folder") else "validation"


@functools.lru_cache(maxsize=4)
def _discriminators(model_json: str, latent: str, batch_size: int
                    ) -> tuple[Callable[..., jax.Array], Callable[..., jax.Array]]:
    """Jitted (D's logits on images [B, R, R, 3], labels [B]; D's logits [batch_size] and G's
    labels on a fresh sample of G) for a model config given as JSON (cached across calls)."""
    cfg = ml_collections.ConfigDict(json.loads(model_json))
    D, G = biggan_model.build_discriminator(cfg), biggan_model.build_generator(cfg)

    @jax.jit
    def on_images(d_params, d_state, images, labels):
        return D.apply({"params": d_params, **d_state}, images, labels, train=False)

    @jax.jit
    def on_samples(d_params, d_state, g_params, g_state, key):
        z_key, y_key = jax.random.split(key)
        z = latents.draw_z(latent, z_key, (batch_size, cfg.z_dim))
        y = jax.random.randint(y_key, (batch_size,), 0, cfg.num_classes)
        fake, _ = G.apply({"params": g_params, **g_state}, z, y, train=True,
                          mutable=[BATCH_STATS, SPECTRAL])
        return on_images(d_params, d_state, fake, y)

    return on_images, on_samples


def d_accuracies(config: ml_collections.ConfigDict, state: TrainState, *, num_images: int,
                 heldout_split: str, batch_size: int = 100, seed: int = 0) -> dict[str, Any]:
    """{'train_accuracy', 'heldout_accuracy', 'fake_accuracy', 'num_train', 'num_heldout',
    'num_fake'} of D in ``state`` on up to ``num_images`` images of each kind."""
    on_images, on_samples = _discriminators(
        json.dumps(config.model.to_dict(), sort_keys=True), config.train.latent, batch_size)

    def on_split(split: str) -> tuple[float, int]:
        pipeline = create_input_pipeline(config.data, global_batch_size=batch_size, seed=seed,
                                         split=split, process_index=0, process_count=1)
        count = min(num_images, pipeline.num_examples)   # the stream's first pass
        correct = 0
        for start in range(0, count, batch_size):
            batch = next(pipeline)
            logits = np.asarray(on_images(state.d_params, state.d_state, batch["image"],
                                          batch["label"]))
            correct += int(np.sum(logits[:count - start] > 0))
        return correct / count, count

    train_accuracy, num_train = on_split(config.data.split)
    heldout_accuracy, num_heldout = on_split(heldout_split)
    num_batches = -(-num_images // batch_size)
    key = jax.random.PRNGKey(seed)
    correct = sum(int(np.sum(np.asarray(on_samples(state.d_params, state.d_state, state.g_params,
                                                   state.g_state, jax.random.fold_in(key, i)))
                             < 0)) for i in range(num_batches))
    return {"train_accuracy": train_accuracy, "heldout_accuracy": heldout_accuracy,
            "fake_accuracy": correct / (num_batches * batch_size), "num_train": num_train,
            "num_heldout": num_heldout, "num_fake": num_batches * batch_size}


def run(workdir: str, config: ml_collections.ConfigDict | None = None, step: int | None = None,
        num_images: int = 1000, heldout_split: str | None = None, batch_size: int = 100
        ) -> dict[str, Any]:
    """The test's JSON record for checkpoint ``step`` (default: the latest) of ``workdir``."""
    step, config = checkpoint.resolve_run(workdir, step, config)
    heldout_split = heldout_split or default_heldout_split(config.data)
    # The held-out split is checked before the checkpoint is read.
    create_input_pipeline(config.data, global_batch_size=1, seed=0, split=heldout_split,
                          process_index=0, process_count=1)
    mesh = sharding.make_mesh(jax.devices()[:1])
    state = checkpoint.restore_read_only(workdir, lambda: create_train_state(config, mesh), step,
                                         sharding.replicated(mesh))
    result = d_accuracies(config, state, num_images=num_images, heldout_split=heldout_split,
                          batch_size=batch_size)
    return {"step": step, "train_split": config.data.split, "heldout_split": heldout_split,
            **result}


def main(argv: list[str]) -> None:
    del argv
    flag = flags.FLAGS
    print(json.dumps(run(flag.workdir, flag.config, flag.step, flag.num_images,
                         flag.heldout_split, flag.batch_size)))


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "Config (default: the checkpoint's).")
    flags.DEFINE_string("workdir", None, "The train job's workdir (read only).", required=True)
    flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
    flags.DEFINE_integer("num_images", 1000, "Images per kind (train, held-out, fake).")
    flags.DEFINE_string("heldout_split", None, "Default: 'heldout' (digits, folder) or "
                        "'validation' (tfds).")
    flags.DEFINE_integer("batch_size", 100, "Images per D call.")
    check_config_arguments()
    app.run(stop_on_error("memorization", main))
