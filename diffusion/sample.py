r"""Sample a trained diffusion run with the EMA weights.

  python -m diffusion.sample --workdir=<train workdir> [--step=N] --sampler=ddim --steps=50 \
      --guidance=3 --classes=0,1,2 --num=8 --seed=0 --out=sheet.png

The config is the one saved with the checkpoint unless ``--config`` is given. The sheet has
one row of ``--num`` images per class of ``--classes`` (unconditional models: ``--num`` rows
of ``--num``). ``--out`` ending in .npz writes the float32 images [N, R, R, 3] in [-1, 1]
with their labels; anything else a PNG sheet.
"""

from typing import Any

import jax
import ml_collections
import numpy as np
from absl import app, flags
from etils import epath
from ml_collections import config_flags

from common import checkpoint, sharding
from common.images import save_image_grid
from diffusion import model as dmodel
from diffusion.sampling import METHODS
from diffusion.train import create_train_state

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir.", required=True)
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_CONFIG = config_flags.DEFINE_config_file("config", None, "Config (default: the saved one).")
_SAMPLER = flags.DEFINE_enum("sampler", "ddim", METHODS, "Reverse-process sampler.")
_STEPS = flags.DEFINE_integer("steps", 50, "Respaced sampling steps.")
_ETA = flags.DEFINE_float("eta", 0.0, "DDIM noise (0: deterministic).")
_GUIDANCE = flags.DEFINE_float("guidance", 1.0, "Classifier-free guidance scale.")
_CLASSES = flags.DEFINE_list("classes", ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
                             "Classes, one sheet row each (conditional models).")
_NUM = flags.DEFINE_integer("num", 8, "Images per class (per row).")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_OUT = flags.DEFINE_string("out", "samples.png", "Output .png sheet or .npz.")


def run_config(workdir: str, step: int | None,
               config: ml_collections.ConfigDict | None) -> ml_collections.ConfigDict:
    """``config`` or the one saved with checkpoint ``step`` of ``workdir``."""
    if config is not None:
        return config
    saved = checkpoint.saved_config(workdir, step)
    if saved is None:
        raise FileNotFoundError(f"No checkpoint with a saved config in {workdir}.")
    return ml_collections.ConfigDict(saved)


def restore_ema_params(config: ml_collections.ConfigDict, workdir: str,
                       step: int | None = None) -> Any:
    """EMA parameters of checkpoint ``step`` (default: the latest) as host arrays."""
    mesh = sharding.make_mesh()
    abstract = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                                      jax.eval_shape(lambda: create_train_state(config, mesh)))
    with checkpoint.Checkpointer(workdir, read_only=True) as ckpt:
        return ckpt.restore(abstract, step).ema_params


def main(argv: list[str]) -> None:
    del argv
    config = run_config(_WORKDIR.value, _STEP.value, _CONFIG.value)
    params = restore_ema_params(config, _WORKDIR.value, _STEP.value)
    num = _NUM.value
    if config.model.num_classes:
        labels = np.repeat(np.asarray([int(c) for c in _CLASSES.value], np.int32), num)
    else:
        labels = np.zeros((num * num,), np.int32)
    run = jax.jit(lambda p, k: dmodel.generate(
        config, p, k, len(labels), labels if config.model.num_classes else None,
        method=_SAMPLER.value, steps=_STEPS.value, guidance=_GUIDANCE.value, eta=_ETA.value))
    images = np.asarray(run(params, jax.random.PRNGKey(_SEED.value)))
    out = epath.Path(_OUT.value)
    if out.suffix == ".npz":
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("wb") as f:
            np.savez(f, images=images, labels=labels)
    else:
        save_image_grid(images, out, columns=num)
    print(f"wrote {len(images)} samples to {out}")


if __name__ == "__main__":
    app.run(main)
