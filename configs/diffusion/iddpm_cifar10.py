"""Improved DDPM on CIFAR-10 (Nichol & Dhariwal 2021, Table 2 / Sec. 3): schedules x losses.

Variants (T = 4000, 500k iterations): linear_simple, linear_hybrid, cosine_simple,
cosine_hybrid, cosine_vlb; and cosine_hybrid_t1000 (the same model with T = 1000).
Evaluation: the table's FID is of ancestral samples over the full chain; learned-variance rows
are also sampled with 100 and 50 respaced steps (Sec. 4); NLL on the whole test set.
The reference's count, measured in the authors' code, is 52,546,438 for the L_hybrid model
(learned variance: a 6-channel output); ``paper.params`` holds it for the learned-variance rows.
L_simple rows use the fixed variance (a 3-channel output): their 52,542,979 is derived from
that count (less the output conv's 3 variance channels, 128 * 3 * 3 * 3 + 3 = 3,459), not
measured in the reference code, so it is ``paper.params_derived`` instead.
"""

import ml_collections

from configs.diffusion.base import (
    diffusion_config,
    iddpm_sample_steps,
    runlocal,
    variant_error,
    with_runlocal,
)

#: (schedule, loss, T, NLL bits/dim, FID) as in the paper's table for CIFAR-10.
ROWS = {
    "linear_simple": ("linear", "simple", 4000, 3.37, 2.90),
    "linear_hybrid": ("linear", "hybrid", 4000, 3.26, 3.07),
    "cosine_simple": ("cosine", "simple", 4000, 3.26, 3.05),
    "cosine_hybrid": ("cosine", "hybrid", 4000, 3.17, 3.19),
    "cosine_vlb": ("cosine", "vlb", 4000, 2.94, 11.47),
    "cosine_hybrid_t1000": ("cosine", "hybrid", 1000, None, None),
}
VARIANTS = tuple(ROWS)
UNET = dict(ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=3, attn_resolutions=(16, 8),
            dropout=0.3, num_heads=4, scale_shift_norm=True)
"""iDDPM's CIFAR-10 U-Net (Sec. 3, App. A): 3 residual blocks, attention at 16 and 8 with 4
heads, AdaGN (scale-shift norm), dropout 0.3; learned variance doubles the output channels."""
REFERENCE_PARAMS = 52_546_438
"""improved-diffusion's CIFAR-10 L_hybrid U-Net, measured (learned variance)."""
VARIANCE_OUTPUT_PARAMS = 128 * 3 * 3 * 3 + 3
"""The output conv's variance channels: 3 x (3x3 kernel over 128 channels) + 3 biases."""


@with_runlocal(runlocal)
def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    if arg not in ROWS:
        raise variant_error(arg, VARIANTS, "configs/diffusion/iddpm_cifar10.py")
    schedule, loss, num_steps, nll, fid = ROWS[arg]
    learned = loss != "simple"
    config = diffusion_config(
        model="iddpm_cifar10", unet=UNET, resolution=32, dataset="cifar10", schedule=schedule,
        num_steps=num_steps, var_type="learned_range" if learned else "fixedlarge",
        loss_type=loss, lr=1e-4, warmup=0, grad_clip=0.0, steps=500_000,
        random_flip=False)
    # Ancestral samples with the row's variance, FID against the training set; NLL on the
    # whole test set.
    config.eval.update(sample_steps=iddpm_sample_steps(num_steps, learned), bpd_examples=-1,
                       bpd_split="test", reference_split="train")
    config.paper = ml_collections.ConfigDict(dict(
        source="Nichol & Dhariwal 2021, Table 2 (CIFAR-10, 500k iterations)", steps=500_000,
        batch_size=128, params_M=52.5))
    if learned:
        config.paper.params = REFERENCE_PARAMS
    else:
        config.paper.params_derived = REFERENCE_PARAMS - VARIANCE_OUTPUT_PARAMS
    if nll is not None:
        config.paper.update(nll_bpd=nll, fid=fid)
    return config
