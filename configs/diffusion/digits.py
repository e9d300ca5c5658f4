"""The embedded default: a small class-conditional DDPM on scikit-learn's 8x8 digits.

1797 real handwritten digits (10 classes) upsampled to 16x16 (twice their native size, a
quarter of the 32x32 step's cost), so the main job runs on a fresh machine with no download. A
narrow iDDPM-style U-Net (AdaGN, class embedding with a null class) trained with L_simple and
label dropout for classifier-free guidance; a 2-core CPU trains it in about 15 minutes and
samples it with DDIM in 50 steps.

The network predicts v (Salimans & Ho 2022) rather than eps. Tuning runs at 16x16, lr 2e-3,
one core each: with eps prediction the DDIM samples at steps 500-3000 kept saturated colour
backgrounds and some pure-noise images (x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar) amplifies
eps errors by up to 1 / sqrt(abar_T) at the first sampling steps, and clipping to [-1, 1] turns
them into saturated colours that later steps keep); with v prediction (x0 = sqrt(abar) x_t -
sqrt(1 - abar) v, bounded) they were grey, clean and of the requested class by step 500.
"""

import ml_collections

from configs.diffusion.base import diffusion_config, runlocal, with_runlocal

VARIANTS = ()


@with_runlocal(runlocal)
def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    del arg
    config = diffusion_config(
        model="digits_unet", resolution=16, dataset="digits", num_classes=10,
        unet=dict(ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(8,),
                  dropout=0.0, num_heads=1, scale_shift_norm=True, null_class=True),
        schedule="cosine", num_steps=1000, batch_size=32, lr=2e-3, warmup=200, grad_clip=1.0,
        steps=1500, random_flip=False)   # digits are not mirror-symmetric
    config.diffusion.update(mean_type="v", label_drop_prob=0.1)
    config.train.update(ema_decay=0.995, ema_start=500, log_every=50, sample_every=500,
                        checkpoint_every=500)
    config.eval.update(num_samples=500, batch_size=250, sampler="ddim", sample_steps=50,
                       guidance=3.0, bpd_examples=0)
    config.paper = ml_collections.ConfigDict(dict(source="none: embedded default data"))
    return config
