r"""Sample class-conditional images from a BigGAN-deep generator into a sheet or a .npy file.

  python -m biggan.sample --pretrained=<converted dir> --classes=207,980 --truncation=0.4 \
      --num=8 --seed=0 --out=sheet.png
  python -m biggan.sample --pretrained=<dir> --classes=207 --num=4 --z_npy=z.npy --out=images.npy

``--pretrained``: a directory written by `biggan.convert_pretrained` (DeepMind's release; BN
statistics from its per-truncation tables). ``--num`` images per class; the sheet has one row
per class, in the order given. z [len(classes) * num, z_dim] is drawn with the truncation trick
by resampling (Sec. 3.1) at ``--truncation`` from ``--seed``, or read from ``--z_npy`` (rows in
sheet order). ``--out`` ending in .npy writes the raw float32 images [N, R, R, 3] in [-1, 1];
anything else a PNG sheet.
"""

from collections.abc import Callable, Sequence

import jax
import numpy as np
from absl import app, flags
from etils import epath

from biggan import pretrained
from biggan.latents import truncated_normal_by_resampling
from common.images import save_image_grid

Sampler = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(z [B, z_dim], labels [B]) -> images [B, R, R, 3] in [-1, 1]."""


def sheet_labels(classes: Sequence[int], num: int) -> np.ndarray:
    """Labels [len(classes) * num]: ``num`` of each class, one sheet row per class."""
    return np.repeat(np.asarray(classes, np.int32), num)


def latents(count: int, z_dim: int, truncation: float, seed: int,
            z_npy: str | None = None) -> np.ndarray:
    """z [count, z_dim]: truncated by resampling from ``seed``, or read from ``z_npy``."""
    if z_npy:
        z = np.load(z_npy).astype(np.float32)
        if z.shape != (count, z_dim):
            raise ValueError(f"{z_npy} holds z of shape {z.shape}; expected ({count}, {z_dim}) "
                             "(len(classes) * num rows).")
        return z
    key = jax.random.key(seed)
    return np.asarray(truncated_normal_by_resampling(key, (count, z_dim), truncation))


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


def write(images: np.ndarray, num_per_row: int, out: str) -> None:
    """``out`` .npy: the raw images; otherwise a PNG sheet with ``num_per_row`` columns."""
    if out.endswith(".npy"):
        epath.Path(out).parent.mkdir(parents=True, exist_ok=True)
        np.save(out, images.astype(np.float32))
    else:
        save_image_grid(images, out, columns=num_per_row)


def pretrained_sampler(directory: str, truncation: float) -> tuple[Sampler, int]:
    """(sampler, z_dim) of the converted release in ``directory`` at ``truncation``."""
    pretrained.truncation_weights(truncation)          # fail before any work if out of range
    generator = pretrained.load(directory)
    return (lambda z, y: generator(z, y, truncation)), generator.cfg.z_dim


def run(sampler: Sampler, z_dim: int, classes: Sequence[int], num: int, truncation: float,
        seed: int, out: str, z_npy: str | None = None, batch_size: int = 8) -> np.ndarray:
    """Sample ``num`` images of each class with ``sampler``, write them to ``out``; returns them."""
    labels = sheet_labels(classes, num)
    z = latents(len(labels), z_dim, truncation, seed, z_npy)
    images = generate(sampler, z, labels, batch_size)
    write(images, num, out)
    return images


def main(argv: list[str]) -> None:
    del argv
    flag = flags.FLAGS
    if not flag.pretrained:
        raise app.UsageError("Pass --pretrained=<directory written by biggan.convert_pretrained>.")
    sampler, z_dim = pretrained_sampler(flag.pretrained, flag.truncation)
    images = run(sampler, z_dim, [int(c) for c in flag.classes], flag.num, flag.truncation,
                 flag.seed, flag.out, flag.z_npy, flag.batch_size)
    print(f"wrote {len(images)} images to {flag.out}")


if __name__ == "__main__":
    flags.DEFINE_string("pretrained", None, "Directory written by biggan.convert_pretrained.")
    flags.DEFINE_list("classes", ["207", "980"], "ImageNet class indices, one sheet row each.")
    flags.DEFINE_integer("num", 8, "Images per class.")
    flags.DEFINE_float("truncation", 0.4, "Truncation of z and of the BN statistics.")
    flags.DEFINE_integer("seed", 0, "Seed for z.")
    flags.DEFINE_string("z_npy", None, "Read z [len(classes) * num, z_dim] from this .npy file.")
    flags.DEFINE_string("out", "sheet.png", "Sheet (.png) or raw images (.npy).")
    flags.DEFINE_integer("batch_size", 8, "Images per G call.")
    app.run(main)
