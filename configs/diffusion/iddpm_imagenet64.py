"""Improved DDPM on ImageNet 64x64 (Nichol & Dhariwal 2021, Tables 2 and 4, App. A).

Variants: hybrid (L_hybrid, 121M, 1.5M iterations), vlb (L_vlb with importance sampling),
class_cond (192 channels, 273M, lr 3e-4, batch 2048, 250k iterations).

Data: the unconditional rows train on downsampled ImageNet (tfds 'downsampled_imagenet/64x64',
whole images already at 64x64, no labels), as the paper's likelihood comparisons do, and report
NLL on its validation split; the class-conditional row needs labels and trains on ILSVRC2012
('imagenet2012'), centre-cropped and resized to 64x64.
Evaluation: ancestral samples with the learned variance, FID against the training set, over
the full chain (Table 2; also 100 and 50 respaced steps, Sec. 4) or 250 respaced steps
(class-conditional).
"""

import ml_collections

from configs.diffusion.base import (
    diffusion_config,
    iddpm_sample_steps,
    runlocal,
    variant_error,
    with_runlocal,
)

VARIANTS = ("hybrid", "vlb", "class_cond")
UNET = dict(ch=128, ch_mult=(1, 2, 3, 4), num_res_blocks=3, attn_resolutions=(16, 8),
            dropout=0.0, num_heads=4, scale_shift_norm=True)
"""iDDPM's ImageNet-64 U-Net (App. A): 121M parameters; 192 channels (273M) class-conditional."""
NUM_STEPS = 4000


@with_runlocal(runlocal)
def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    if arg not in VARIANTS:
        raise variant_error(arg, VARIANTS, "configs/diffusion/iddpm_imagenet64.py")
    common = dict(resolution=64, schedule="cosine", num_steps=NUM_STEPS,
                  var_type="learned_range", warmup=0, grad_clip=0.0, random_flip=False)
    if arg == "class_cond":
        config = diffusion_config(model="iddpm_imagenet64_cond", unet={**UNET, "ch": 192},
                                  dataset="imagenet2012", num_classes=1000,
                                  loss_type="hybrid", lr=3e-4, batch_size=2048,
                                  steps=250_000, **common)
        config.eval.update(sample_steps=250, reference_split="train")
        config.paper = ml_collections.ConfigDict(dict(
            source="Nichol & Dhariwal 2021, Sec. 6 (class-conditional, 250 sampling steps)",
            fid=2.92, steps=250_000, batch_size=2048, params_M=273.0, params=273_049_350))
        return config
    config = diffusion_config(model="iddpm_imagenet64", unet=UNET,
                              dataset="downsampled_imagenet/64x64", loss_type=arg, lr=1e-4,
                              batch_size=128, steps=1_500_000, **common)
    config.eval.update(sample_steps=iddpm_sample_steps(NUM_STEPS, learned_variance=True),
                       bpd_examples=-1, bpd_split="validation", reference_split="train")
    nll, fid = (3.57, 19.2) if arg == "hybrid" else (3.53, 40.1)
    config.paper = ml_collections.ConfigDict(dict(
        source="Nichol & Dhariwal 2021, Table 2 (ImageNet 64x64, 1.5M iterations)",
        nll_bpd=nll, fid=fid, steps=1_500_000, batch_size=128, params_M=121.1,
        params=121_063_942))
    return config
