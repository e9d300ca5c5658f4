"""Defaults shared by every diffusion config (DDPM App. B; iDDPM Sec. 3-4 and App. A).

Every hyperparameter the papers state lives here or in a row of a config file, never in code.
``config.model`` holds the U-Net (fields of ``diffusion.unet.UNet``), ``config.diffusion`` the
process and loss, ``config.paper`` the figures the paper reports for the row.
"""

from typing import Any

import ml_collections

from configs.variants import variant_error, with_runlocal

__all__ = ["FAST_SAMPLING_STEPS", "diffusion_config", "iddpm_sample_steps", "runlocal",
           "variant_error", "with_runlocal"]

FAST_SAMPLING_STEPS = (100, 50)
"""Respaced step counts at which iDDPM scores learned-variance models beside the full chain
(Sec. 4, Fig. 8: near full-chain FID with 50-100 of 4000 steps)."""


def iddpm_sample_steps(num_steps: int, learned_variance: bool) -> int | tuple[int, ...]:
    """``config.eval.sample_steps`` of an iDDPM Table 2 row: the full chain T (the tabulated
    FID), and for learned-variance rows also ``FAST_SAMPLING_STEPS`` (Sec. 4)."""
    return (num_steps, *FAST_SAMPLING_STEPS) if learned_variance else num_steps


def diffusion_config(*, model: str, unet: dict[str, Any], resolution: int, dataset: str,
                     num_classes: int = 0,
                     schedule: str = "linear", num_steps: int = 1000,
                     var_type: str = "fixedlarge", loss_type: str = "simple",
                     batch_size: int = 128, lr: float = 2e-4, warmup: int = 5000,
                     grad_clip: float = 1.0, steps: int = 800_000, random_flip: bool = True,
                     ) -> ml_collections.ConfigDict:
    """The DDPM CIFAR-10 setting by default, with the U-Net ``unet`` (fields of
    ``diffusion.unet.UNet``, written out in each row's config) named ``model``; keyword
    arguments change a row.

    Evaluation as DDPM scored it (Sec. 4): 50,000 ancestral samples over all T steps with the
    row's variance, FID (and IS) against the training set; bits/dim off until a row sets
    ``eval.bpd_examples``."""
    config = ml_collections.ConfigDict()
    res = ml_collections.FieldReference(resolution)
    classes = ml_collections.FieldReference(num_classes)
    arch = dict(num_heads=1, learn_sigma=var_type == "learned_range", null_class=False,
                scale_shift_norm=False, resamp_with_conv=True)
    arch.update(unet, num_classes=classes)
    config.model = ml_collections.ConfigDict(dict(name=model, resolution=res, dtype="float32",
                                                  **arch))
    config.diffusion = ml_collections.ConfigDict(dict(
        schedule=schedule,            # 'linear' (DDPM) | 'cosine' (iDDPM Sec. 3.2)
        num_steps=num_steps,          # T
        mean_type="eps",              # what the network predicts: 'eps' | 'x0' | 'v'
        var_type=var_type,            # 'fixedlarge' | 'fixedsmall' | 'learned_range'
        loss_type=loss_type,          # 'simple' | 'hybrid' | 'vlb'
        hybrid_lambda=0.001,          # iDDPM Sec. 3.1
        importance_sampling=loss_type == "vlb",   # iDDPM Sec. 3.3 (L_vlb only)
        label_drop_prob=0.0,          # classifier-free guidance: labels -> null class
    ))
    config.data = ml_collections.ConfigDict(dict(
        name=dataset, data_dir="", split="train", resolution=res, num_classes=classes,
        random_flip=random_flip, train_fraction=1.0, shuffle_buffer=10_000,
    ))
    config.train = ml_collections.ConfigDict(dict(
        steps=steps,
        batch_size=batch_size,        # global batch
        seed=0,
        lr=lr, warmup=warmup,         # linear warm-up from 0 (DDPM: 5000 steps)
        grad_clip=grad_clip,          # global-norm clipping (DDPM: 1.0; 0 disables)
        adam_b1=0.9, adam_b2=0.999, adam_eps=1e-8,
        ema_decay=0.9999,
        ema_start=0,                  # the EMA copies the parameters before this step
        log_every=100, sample_every=10_000, checkpoint_every=10_000, keep_checkpoints=3,
    ))
    # Not type-safe: sample_steps and guidance take one value or a tuple of them.
    config.eval = ml_collections.ConfigDict(dict(
        num_samples=50_000, batch_size=500,
        sampler="ancestral",          # 'ancestral' (DDPM Alg. 2) | 'ddim'
        sample_steps=num_steps,       # respaced steps (iDDPM Sec. 4), or a tuple of them (one
                                      # evaluation each); num_steps (T): the full chain
        guidance=1.0,                 # classifier-free guidance scale (1: plain conditional)
        bpd_examples=0,               # bits/dim examples of bpd_split: 0 off, -1 all, n > 0 n
        bpd_split="test",
        reference_split="train",      # split of the FID reference statistics
        inception_weights="",
    ), type_safe=False)
    config.paper = ml_collections.ConfigDict()
    return config


def runlocal(config: ml_collections.ConfigDict) -> None:
    """Shrinks a diffusion config in place to run a few steps on a CPU in minutes: the
    row's process, loss and U-Net options (learned variance, AdaGN, heads) with 32 channels at
    two levels (attention at the lower one when it is at most 16x16), T = 50, on the embedded
    digits at the row's resolution, with a small batch and eval (eval batch 8: divides 1, 2,
    4 or 8 devices)."""
    lower = config.data.resolution // 2
    config.model.update(ch=32, ch_mult=(1, 2), num_res_blocks=1,
                        attn_resolutions=(lower,) if lower <= 16 else ())
    if config.model.num_classes:
        config.model.num_classes = 10
    config.diffusion.num_steps = 50
    config.data.update(name="digits", data_dir="", random_flip=False)
    config.train.update(batch_size=16, steps=4, warmup=0, ema_start=1, log_every=2,
                        sample_every=4, checkpoint_every=2)
    config.eval.update(num_samples=16, batch_size=8, sample_steps=2, bpd_examples=0,
                       inception_weights="")
