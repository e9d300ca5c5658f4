"""ImageNet 256x256: BigGAN (Table 5) and BigGAN-deep (Table 8), with Table 2's figures.

Use as ``--config=configs/biggan/imagenet256.py:biggan`` (the default) or ``:deep``.
"""

import ml_collections

from configs.biggan.base import biggan_config, runlocal, variant_error, with_runlocal

VARIANTS = ("biggan", "deep")


@with_runlocal(runlocal)
def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or "biggan"
    if arg == "biggan":
        # Table 5: z 140 (7 chunks of 20), G's non-local block at 128x128, D's stays at 64x64.
        config = biggan_config(resolution=256, z_dim=140, g_attn_res=128, d_attn_res=64)
        figures = dict(fid=8.7, inception_score=142.3, min_fid=7.7, is_at_min_fid=178.0,
                       fid_at_valid_is=9.3, valid_is=233.1, fid_at_max_is=25.0, max_is=291.0)
    elif arg == "deep":
        config = biggan_config(name="biggan_deep", resolution=256, g_ch=128, d_ch=128,
                               z_dim=128, hier=False)
        config.train.g_lr = config.train.d_lr = 2.5e-5   # Appendix C, 256 and 512 BigGAN-deep
        figures = dict(fid=6.9, inception_score=171.4, min_fid=7.0, is_at_min_fid=202.6,
                       fid_at_valid_is=8.1, valid_is=232.5, fid_at_max_is=27.0, max_is=317.0)
    else:
        raise variant_error(arg, VARIANTS, "configs/biggan/imagenet256.py")
    config.paper = ml_collections.ConfigDict(dict(
        source=f"Table 2, {'BigGAN-deep' if arg == 'deep' else 'BigGAN'} 256",
        batch_size=2048, ch=config.model.g_ch, **figures))
    return config
