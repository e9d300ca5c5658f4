"""DDPM on LSUN 256x256 (Ho et al. 2020, Table 3 and App. B): 114M U-Net, lr 2e-5, batch 64.

Variants: church, bedroom, cat. Bedroom's FID 4.90 is the larger model trained longer; the
row here is the 114M model (FID 6.36).
"""

import ml_collections

from configs.diffusion.base import diffusion_config, runlocal, variant_error, with_runlocal

ROWS = {
    "church": dict(dataset="lsun/church_outdoor", steps=1_200_000, fid=7.89),
    "bedroom": dict(dataset="lsun/bedroom", steps=2_400_000, fid=6.36),
    "cat": dict(dataset="lsun/cat", steps=1_800_000, fid=None),
}
VARIANTS = tuple(ROWS)
UNET = dict(ch=128, ch_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2, attn_resolutions=(16,),
            dropout=0.0)
"""DDPM's 256x256 U-Net (App. B): 114M parameters."""


@with_runlocal(runlocal)
def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    if arg not in ROWS:
        raise variant_error(arg, VARIANTS, "configs/diffusion/ddpm_lsun256.py")
    row = ROWS[arg]
    config = diffusion_config(model="ddpm_256", unet=UNET, resolution=256, dataset=row["dataset"],
                              batch_size=64, lr=2e-5, steps=row["steps"])
    config.paper = ml_collections.ConfigDict(dict(
        source="Ho et al. 2020, Table 3 / App. B", steps=row["steps"], batch_size=64,
        params_M=114.0, params=113_673_219))
    if row["fid"] is not None:
        config.paper.fid = row["fid"]
    return config
