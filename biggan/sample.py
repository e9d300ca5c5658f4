r"""Sample class-conditional images from a trained run or DeepMind's released BigGAN-deep.

  python -m biggan.sample --pretrained=<converted dir> --classes=207,980 --truncation=0.4 \
      --num=8 --seed=0 --out=sheet.png
  python -m biggan.sample --pretrained=<dir> --classes=207 --num=4 --z_npy=z.npy --out=images.npy
  python -m biggan.sample --workdir=<train workdir> [--step=N] [--config=...] --classes=0,1 \
      --truncation=0.5 [--mode=sheet|classwise|interp_pairs|interp_classes] --out=sheet.png

``--workdir``: the EMA generator of a checkpoint (default: the latest) with standing statistics
(Appendix C.1) recomputed at ``--truncation`` (``none``: untruncated z); the model config is
the one saved with the checkpoint unless ``--config`` is given. Modes: 'sheet' one row per
class; 'classwise' one sheet per class (``<out>_class<c>.png``, ``--num`` images);
'interp_pairs' ``--num`` rows interpolating linearly from (z0, classes[0]) to (z1, classes[1])
in ``--steps`` columns (Figure 8); 'interp_classes' the same with z held fixed per row (Figure
9). Class interpolation mixes the rows of G's shared class embedding.

``--pretrained``: a directory written by `biggan.convert_pretrained` (DeepMind's release; BN
statistics from its per-truncation tables). ``--num`` images per class; the sheet has one row
per class, in the order given. z [len(classes) * num, z_dim] is drawn from ``--seed`` as the
release draws it at ``--truncation`` s (s times a normal truncated to [-2, 2],
`biggan.pretrained.draw_z`), or read from ``--z_npy`` (rows in sheet order). ``--out``
ending in .npy writes the raw float32 images [N, R, R, 3] in [-1, 1];
.npz the images with their labels and z; anything else a PNG sheet.
"""

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import app, flags
from etils import epath
from ml_collections import config_flags

from biggan import pretrained, standing_stats
from biggan.latents import draw_z
from biggan.train_step import create_train_state
from gencore import checkpoint, sharding
from gencore.config_util import check_config_arguments, parse_numbers
from gencore.console import setup_job_logging, stop_on_error
from gencore.images import save_image_grid

Sampler = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(z [B, z_dim], labels [B]) -> images [B, R, R, 3] in [-1, 1]."""


def sheet_labels(classes: Sequence[int], num: int) -> np.ndarray:
    """Labels [len(classes) * num]: ``num`` of each class, one sheet row per class."""
    return np.repeat(np.asarray(classes, np.int32), num)


RELEASE_LATENT = "release"
"""The ``latent`` of DeepMind's release: `biggan.pretrained.draw_z`."""


def latents(count: int, z_dim: int, truncation: float | None, seed: int,
            z_npy: str | None = None, latent: str = "normal") -> np.ndarray:
    """z [count, z_dim]: ``latent`` (Appendix E, truncated by resampling; or RELEASE_LATENT)
    from ``seed``, or read from ``z_npy``."""
    if z_npy:
        z = np.load(z_npy).astype(np.float32)
        if z.shape != (count, z_dim):
            raise ValueError(f"{z_npy} holds z of shape {z.shape}; expected ({count}, {z_dim}) "
                             "(len(classes) * num rows).")
        return z
    key = jax.random.key(seed)
    if latent == RELEASE_LATENT:
        return np.asarray(pretrained.draw_z(key, (count, z_dim), truncation))
    return np.asarray(draw_z(latent, key, (count, z_dim), truncation))


def generate(sampler: Sampler, z: np.ndarray, labels: np.ndarray, batch_size: int
             ) -> np.ndarray:
    """Images [N, R, R, 3] from ``sampler`` run over z and labels in batches of ``batch_size``
    (the last one padded, so that one compiled shape serves every call)."""
    count = len(z)
    pad = -count % batch_size
    z = np.concatenate([z, np.zeros((pad, z.shape[1]), z.dtype)])
    labels = np.concatenate([labels, np.zeros(pad, labels.dtype)])
    batches = [sampler(z[i:i + batch_size], labels[i:i + batch_size])
               for i in range(0, len(z), batch_size)]
    return np.concatenate(batches)[:count]


def write(images: np.ndarray, num_per_row: int, out: str, labels: np.ndarray | None = None,
          z: np.ndarray | None = None) -> None:
    """``out`` .npy: the raw images; .npz: images, labels and z; otherwise a PNG sheet with
    ``num_per_row`` columns."""
    if out.endswith((".npy", ".npz")):
        epath.Path(out).parent.mkdir(parents=True, exist_ok=True)
        if out.endswith(".npy"):
            np.save(out, images.astype(np.float32))
            return
        extra = {k: v for k, v in (("labels", labels), ("z", z)) if v is not None}
        with epath.Path(out).open("wb") as f:
            np.savez(f, images=images.astype(np.float32), **extra)
    else:
        save_image_grid(images, out, columns=num_per_row)


def pretrained_sampler(directory: str, truncation: float) -> tuple[Sampler, int]:
    """(sampler, z_dim) of the converted release in ``directory`` at ``truncation``."""
    pretrained.truncation_weights(truncation)          # fail before any work if out of range
    generator = pretrained.load(directory)
    return (lambda z, y: generator(z, y, truncation)), generator.cfg.z_dim


def run(sampler: Sampler, z_dim: int, classes: Sequence[int], num: int,
        truncation: float | None,
        seed: int, out: str, z_npy: str | None = None, batch_size: int = 8,
        latent: str = "normal") -> np.ndarray:
    """Sample ``num`` images of each class with ``sampler``, write them to ``out``; returns them."""
    labels = sheet_labels(classes, num)
    z = latents(len(labels), z_dim, truncation, seed, z_npy, latent)
    images = generate(sampler, z, labels, batch_size)
    write(images, num, out, labels, z)
    return images


@dataclasses.dataclass
class TrainedGenerator:
    """The EMA generator of a checkpoint with standing statistics at one truncation."""

    config: ml_collections.ConfigDict
    params: Any
    g_state: Any
    apply: standing_stats.Sampler

    def __call__(self, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Images [B, R, R, 3] in [-1, 1] of z [B, z_dim] and labels [B]."""
        return np.asarray(self.apply(self.params, self.g_state, z, labels))

    def with_embeddings(self, z: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        """Images for z [B, z_dim] and shared class embeddings [B, shared_dim] (e.g. mixtures of
        two classes' rows), fed through G's embedding table in chunks of num_classes rows."""
        if not self.config.model.shared_dim:
            raise ValueError("Class interpolation needs the shared embedding "
                             "(config.model.shared_dim > 0).")
        table = self.params["shared_embedding"]["embedding"]
        size, chunks = table.shape[0], []
        for i in range(0, len(z), size):
            rows = np.asarray(embeddings[i:i + size], table.dtype)
            params = {**self.params,
                      "shared_embedding": {"embedding": np.asarray(table).copy()}}
            params["shared_embedding"]["embedding"][:len(rows)] = rows
            chunks.append(np.asarray(self.apply(params, self.g_state, z[i:i + size],
                                                np.arange(len(rows), dtype=np.int32))))
        return np.concatenate(chunks)


def checkpoint_generator(workdir: str, truncation: float | None, step: int | None = None,
                         config: ml_collections.ConfigDict | None = None, seed: int = 0
                         ) -> TrainedGenerator:
    """EMA G of checkpoint ``step`` (default: the latest complete one) of ``workdir`` with
    standing statistics at ``truncation``; ``config`` defaults to the one saved with it."""
    step, config = checkpoint.resolve_run(workdir, step, config)
    mesh = sharding.make_mesh()
    state = checkpoint.restore_read_only(workdir, lambda: create_train_state(config, mesh), step,
                                         sharding.replicated(mesh))
    params, g_state = state.ema_params, state.g_state
    stats = standing_stats.standing_stats(
        config.model, params, g_state, jax.random.PRNGKey(seed), truncation,
        config.eval.standing_stats_passes, config.eval.batch_size, mesh, config.train.latent)
    return TrainedGenerator(config, params, standing_stats.with_standing_stats(g_state, stats),
                            standing_stats.make_sampler(config.model))


def interpolation_sheet(generator: TrainedGenerator, classes: Sequence[int], num: int,
                        steps: int, truncation: float | None, seed: int, fixed_z: bool
                        ) -> np.ndarray:
    """Images [num * steps]: row r goes linearly from (z0_r, classes[0]) to (z1_r, classes[-1])
    in ``steps`` columns (Figure 8); ``fixed_z``: z1_r = z0_r, only the class moves (Figure 9)."""
    cfg = generator.config
    z0 = latents(num, cfg.model.z_dim, truncation, seed, latent=cfg.train.latent)
    z1 = z0 if fixed_z else latents(num, cfg.model.z_dim, truncation, seed + 1,
                                    latent=cfg.train.latent)
    table = np.asarray(generator.params["shared_embedding"]["embedding"]) \
        if cfg.model.shared_dim else np.zeros((cfg.model.num_classes, 1))
    alpha = np.linspace(0.0, 1.0, steps)[None, :, None]
    z = (1 - alpha) * z0[:, None] + alpha * z1[:, None]
    e = (1 - alpha) * table[classes[0]] + alpha * table[classes[-1]]
    e = np.broadcast_to(e, (num, steps, table.shape[1]))
    return generator.with_embeddings(z.reshape(num * steps, -1).astype(np.float32),
                                     e.reshape(num * steps, -1))


def run_checkpoint(generator: TrainedGenerator, mode: str, classes: Sequence[int], num: int,
                   truncation: float | None, seed: int, out: str, steps: int = 8,
                   batch_size: int = 8) -> np.ndarray:
    """Writes ``mode``'s sheet(s) (module docstring) of ``generator`` to ``out``; returns the
    images (of the last class for 'classwise')."""
    z_dim, latent = generator.config.model.z_dim, generator.config.train.latent
    if mode == "sheet":
        return run(generator, z_dim, classes, num, truncation, seed, out, batch_size=batch_size,
                   latent=latent)
    if mode == "classwise":
        stem, suffix = (out.rsplit(".", 1) + ["png"])[:2]
        for c in classes:
            labels = sheet_labels([c], num)
            z = latents(num, z_dim, truncation, seed + c, latent=latent)
            images = generate(generator, z, labels, batch_size)
            write(images, math.ceil(math.sqrt(num)), f"{stem}_class{c}.{suffix}", labels, z)
        return images
    if mode in ("interp_pairs", "interp_classes"):
        images = interpolation_sheet(generator, classes, num, steps, truncation, seed,
                                     fixed_z=mode == "interp_classes")
        write(images, steps, out)
        return images
    raise ValueError(f"Unknown --mode={mode!r}; valid: {', '.join(MODES)}.")


MODES = ("sheet", "classwise", "interp_pairs", "interp_classes")


def parse_truncation(text: str) -> float | None:
    """``--truncation``: a threshold > 0, or 'none' for untruncated z (None)."""
    if text.strip().lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ValueError(f"--truncation={text!r}: pass a threshold > 0 (z entries with |z| above "
                         "it are redrawn) or 'none' for untruncated z.")
    return value


def main(argv: list[str]) -> None:
    del argv
    flag = flags.FLAGS
    setup_job_logging(flag.workdir, "sample")
    classes = parse_numbers(flag.classes, int, "classes", "207,980")
    truncation = parse_truncation(flag.truncation)
    if flag.workdir:
        generator = checkpoint_generator(flag.workdir, truncation, flag.step, flag.config,
                                         flag.seed)
        run_checkpoint(generator, flag.mode, classes, flag.num, truncation, flag.seed, flag.out,
                       flag.steps, flag.batch_size)
        print(f"wrote {flag.mode} images to {flag.out}")
        return
    if not flag.pretrained:
        raise app.UsageError("Pass --workdir=<train workdir> or --pretrained=<directory written "
                             "by biggan.convert_pretrained>.")
    if truncation is None:
        raise ValueError("--truncation=none applies to --workdir; DeepMind's release holds BN "
                         "statistics for truncations in (0, 1]: pass a number.")
    sampler, z_dim = pretrained_sampler(flag.pretrained, truncation)
    images = run(sampler, z_dim, classes, flag.num, truncation,
                 flag.seed, flag.out, flag.z_npy, flag.batch_size, RELEASE_LATENT)
    print(f"wrote {len(images)} images to {flag.out}")


if __name__ == "__main__":
    flags.DEFINE_string("pretrained", None, "Directory written by biggan.convert_pretrained.")
    flags.DEFINE_string("workdir", None, "A training workdir: sample its EMA generator.")
    flags.DEFINE_integer("step", None, "Checkpoint step of --workdir (default: the latest).")
    config_flags.DEFINE_config_file("config", None, "Config (default: saved with the checkpoint).")
    flags.DEFINE_enum("mode", "sheet", MODES, "What --workdir writes (module docstring).")
    flags.DEFINE_integer("steps", 8, "Columns of an interpolation sheet.")
    flags.DEFINE_list("classes", ["207", "980"], "ImageNet class indices, one sheet row each.")
    flags.DEFINE_integer("num", 8, "Images per class.")
    flags.DEFINE_string("truncation", "0.4", "Truncation of z and of the BN statistics: the "
                        "paper's threshold with --workdir ('none': untruncated z), the release's "
                        "truncation in (0, 1] with --pretrained.")
    flags.DEFINE_integer("seed", 0, "Seed for z.")
    flags.DEFINE_string("z_npy", None, "Read z [len(classes) * num, z_dim] from this .npy file.")
    flags.DEFINE_string("out", "sheet.png", "Sheet (.png), raw images (.npy) or images, labels "
                        "and z (.npz).")
    flags.DEFINE_integer("batch_size", 8, "Images per G call.")
    check_config_arguments()
    app.run(stop_on_error("sample", main))
