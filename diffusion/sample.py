r"""Sample a trained diffusion run with the EMA weights.

  python -m diffusion.sample --workdir=<train workdir> [--step=N] --sampler=ddim --steps=50 \
      --guidance=3 --classes=0,1,2 --num=8 --seed=0 --out=sheet.png

The config is the one saved with the checkpoint unless ``--config`` is given. The sheet has
one row of ``--num`` images per class of ``--classes`` (unconditional models: ``--num`` rows
of ``--num``). ``--out`` ending in .npz writes the float32 images [N, R, R, 3] in [-1, 1]
with their labels; anything else a PNG sheet.
"""

import jax
import numpy as np
from absl import app, flags
from etils import epath
from ml_collections import config_flags

from diffusion import model as diffusion_model
from diffusion.reverse import METHODS
from diffusion.train_step import create_train_state
from gencore import checkpoint, sharding
from gencore.config_util import check_config_arguments, parse_numbers
from gencore.console import setup_job_logging, stop_on_error
from gencore.images import save_image_grid
from gencore.sample_keys import example_keys

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


def main(argv: list[str]) -> None:
    del argv
    setup_job_logging(_WORKDIR.value, "sample")
    classes = parse_numbers(_CLASSES.value, int, "classes", "1,7")
    step, config = checkpoint.resolve_run(_WORKDIR.value, _STEP.value, _CONFIG.value)
    mesh = sharding.make_mesh()
    params = checkpoint.restore_read_only(
        _WORKDIR.value, lambda: create_train_state(config, mesh), step,
        sharding.replicated(mesh)).ema_params
    num = _NUM.value
    if config.model.num_classes:
        labels = np.repeat(np.asarray(classes, np.int32), num)
    else:
        labels = np.zeros((num * num,), np.int32)
    run = jax.jit(lambda p, k: diffusion_model.generate(
        config, p, example_keys(k, np.arange(len(labels))),
        labels if config.model.num_classes else None,
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
    check_config_arguments()
    app.run(stop_on_error("sample", main))
