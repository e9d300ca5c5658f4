"""DDPM on CelebA-HQ 256x256 (Ho et al. 2020, App. B): 114M U-Net, lr 2e-5, batch 64."""

import ml_collections

from configs.diffusion.base import diffusion_config, runlocal, with_runlocal

VARIANTS = ()
UNET = dict(ch=128, ch_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2, attn_resolutions=(16,),
            dropout=0.0)
"""DDPM's 256x256 U-Net (App. B): 114M parameters."""


@with_runlocal(runlocal)
def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    del arg
    config = diffusion_config(model="ddpm_256", unet=UNET, resolution=256, dataset="celeb_a_hq/256",
                              batch_size=64, lr=2e-5, steps=500_000)
    config.paper = ml_collections.ConfigDict(dict(
        source="Ho et al. 2020, App. B (samples only, no FID reported)", steps=500_000,
        batch_size=64, params_M=114.0, params=113_673_219))
    return config
