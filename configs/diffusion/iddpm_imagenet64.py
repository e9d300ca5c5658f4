"""Improved DDPM on ImageNet 64x64 (Nichol & Dhariwal 2021, Tables 2 and 4, App. A).

Variants: hybrid (L_hybrid, 121M, 1.5M iterations), vlb (L_vlb with importance sampling),
class_cond (192 channels, 273M, lr 3e-4, batch 2048, 250k iterations).
"""

import ml_collections

from configs.diffusion.base import diffusion_config, runlocal, variant_error, with_runlocal

VARIANTS = ("hybrid", "vlb", "class_cond")
UNET = dict(ch=128, ch_mult=(1, 2, 3, 4), num_res_blocks=3, attn_resolutions=(16, 8),
            dropout=0.0, num_heads=4, scale_shift_norm=True)
"""iDDPM's ImageNet-64 U-Net (App. A): 121M parameters; 192 channels (273M) class-conditional."""


@with_runlocal(runlocal)
def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    if arg not in VARIANTS:
        raise variant_error(arg, VARIANTS, "configs/diffusion/iddpm_imagenet64.py")
    common = dict(resolution=64, dataset="imagenet2012", schedule="cosine", num_steps=4000,
                  var_type="learned_range", warmup=0, grad_clip=0.0, random_flip=False)
    if arg == "class_cond":
        config = diffusion_config(model="iddpm_imagenet64_cond", unet={**UNET, "ch": 192},
                                  num_classes=1000,
                                  loss_type="hybrid", lr=3e-4, batch_size=2048,
                                  steps=250_000, **common)
        config.eval.sample_steps = 250
        config.paper = ml_collections.ConfigDict(dict(
            source="Nichol & Dhariwal 2021, Sec. 6 (class-conditional, 250 sampling steps)",
            fid=2.92, steps=250_000, batch_size=2048, params_M=273.0, params=273_049_350))
        return config
    config = diffusion_config(model="iddpm_imagenet64", unet=UNET, loss_type=arg, lr=1e-4,
                              batch_size=128, steps=1_500_000, **common)
    nll, fid = (3.57, 19.2) if arg == "hybrid" else (3.53, 40.1)
    config.paper = ml_collections.ConfigDict(dict(
        source="Nichol & Dhariwal 2021, Table 2 (ImageNet 64x64, 1.5M iterations)",
        nll_bpd=nll, fid=fid, steps=1_500_000, batch_size=128, params_M=121.1,
        params=121_063_942))
    return config
