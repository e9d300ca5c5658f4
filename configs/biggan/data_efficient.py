"""Data-efficient BigGAN: DiffAugment ('color,translation,cutout') on a fixed share of the data.

Use as ``--config=configs/biggan/data_efficient.py:cifar10_10`` (CIFAR-10 at 10%, 20% or 100%
of the training images: ``cifar10_{10,20,100}``; 10% is the default) or
``:imagenet128_{25,50,100}``. The subset is ``config.data.train_fraction`` (gencore/data.py:
the first images of the tfds split, the same on every process and for every seed). Turn
DiffAugment off for the baseline with ``--config.train.diffaugment=''``.

``config.paper`` holds the BigGAN figures Zhao et al. 2020 published without and with
DiffAugment: FID for CIFAR-10, IS and FID for ImageNet 128. No training settings are recorded
with these figures, so the variants keep this repository's settings: CIFAR-10 from
BigGAN-PyTorch's CIFAR-10 script (``cifar10.py:pytorch_reference``), ImageNet 128 from Table 1
row 8 (``imagenet128.py:row8``).
"""

import ml_collections

from configs.biggan import cifar10, imagenet128
from configs.biggan.base import runlocal, variant_error, with_runlocal

POLICY = "color,translation,cutout"

# percent of the data: (baseline, DiffAugment) figures.
CIFAR10_FID = {100: (9.59, 8.70), 20: (21.58, 14.04), 10: (39.78, 22.40)}
IMAGENET128_IS_FID = {100: ((94.5, 7.62), (100.8, 6.80)), 50: ((89.9, 9.64), (91.9, 8.88)),
                      25: ((46.5, 25.37), (74.2, 13.28))}

VARIANTS = (tuple(f"cifar10_{p}" for p in CIFAR10_FID)
            + tuple(f"imagenet128_{p}" for p in IMAGENET128_IS_FID))


@with_runlocal(runlocal)
def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or "cifar10_10"
    if arg not in VARIANTS:
        raise variant_error(arg, VARIANTS, "configs/biggan/data_efficient.py")
    dataset, percent = arg.rsplit("_", 1)
    percent = int(percent)
    source = "DiffAugment (Zhao et al. 2020), BigGAN"
    if dataset == "cifar10":
        config = cifar10.get_config("pytorch_reference")
        baseline_fid, fid = CIFAR10_FID[percent]
        config.paper = ml_collections.ConfigDict(dict(
            source=f"{source} on CIFAR-10, {percent}% data", train_percent=percent,
            baseline_fid=baseline_fid, fid=fid))
    else:
        config = imagenet128.get_config("row8")
        (baseline_is, baseline_fid), (inception_score, fid) = IMAGENET128_IS_FID[percent]
        config.paper = ml_collections.ConfigDict(dict(
            source=f"{source} on ImageNet 128x128, {percent}% data", train_percent=percent,
            baseline_inception_score=baseline_is, baseline_fid=baseline_fid,
            inception_score=inception_score, fid=fid))
    config.data.train_fraction = percent / 100
    config.train.diffaugment = POLICY
    return config
