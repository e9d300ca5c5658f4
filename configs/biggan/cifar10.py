"""CIFAR-10 32x32, class-conditional.

``:row8`` (default): Appendix C.2, "the settings from Table 1, row 8" (shared embedding,
hierarchical z, orthogonal regularization, ch 96, batch 2048) with the 32x32 architecture;
the paper reports IS 9.22 and FID 14.73 without truncation.
``:pytorch_reference``: BigGAN-PyTorch's CIFAR-10 script (ch 64, batch 50, 4 D steps per G
step, lr 2e-4 for both, no shared embedding, no hierarchical z, no attention, EMA from step
1000), the setting the speed benchmark compares against.
"""

import ml_collections

from configs.biggan.base import biggan_config, runlocal, variant_error, with_runlocal

VARIANTS = ("row8", "pytorch_reference")


@with_runlocal(runlocal)
def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or "row8"
    if arg == "row8":
        config = biggan_config(resolution=32, num_classes=10, dataset="cifar10",
                               g_attn_res=0, d_attn_res=0)
        config.paper = ml_collections.ConfigDict(dict(
            source="Appendix C.2 (Table 1 row 8 settings)", batch_size=2048, ch=96,
            fid=14.73, inception_score=9.22))
    elif arg == "pytorch_reference":
        config = biggan_config(resolution=32, num_classes=10, dataset="cifar10", batch_size=50,
                               g_ch=64, d_ch=64, z_dim=128, shared_dim=0, hier=False,
                               ortho_reg=0.0, g_attn_res=0, d_attn_res=0)
        config.train.update(num_d_steps=4, g_lr=2e-4, d_lr=2e-4, adam_eps=1e-8, ema_start=1000)
        config.paper = ml_collections.ConfigDict(dict(
            source="BigGAN-PyTorch scripts/launch_cifar_ema.sh", batch_size=50, ch=64))
    else:
        raise variant_error(arg, VARIANTS, "configs/biggan/cifar10.py")
    config.data.random_flip = True
    config.train.steps = 500_000
    return config
