"""DDPM on CIFAR-10 (Ho et al. 2020, Sec. 4 and App. B): 35.7M U-Net, L_simple, T = 1000."""

import ml_collections

from configs.diffusion.base import diffusion_config, runlocal, with_runlocal

VARIANTS = ()
UNET = dict(ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,), dropout=0.1)
"""DDPM's CIFAR-10 U-Net (App. B): 35.7M parameters."""


@with_runlocal(runlocal)
def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    del arg
    config = diffusion_config(model="ddpm_cifar10", unet=UNET, resolution=32,
                              dataset="cifar10")
    # FID and IS of 50k ancestral samples against the training set; NLL on the whole test set.
    config.eval.update(reference_split="train", bpd_examples=-1, bpd_split="test")
    config.paper = ml_collections.ConfigDict(dict(
        source="Ho et al. 2020, Table 1", fid=3.17, fid_test=5.24, inception_score=9.46,
        nll_bpd=3.75, steps=800_000, batch_size=128, params_M=35.7, params=35_746_307))
    return config
