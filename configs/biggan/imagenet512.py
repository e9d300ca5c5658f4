"""ImageNet 512x512: BigGAN (Table 6) and BigGAN-deep (Table 9), with Table 2's figures.

Use as ``--config=configs/biggan/imagenet512.py:biggan`` (the default) or ``:deep``.
"""

import ml_collections

from configs.biggan.base import biggan_config, runlocal, variant_error, with_runlocal

VARIANTS = ("biggan", "deep")


@with_runlocal(runlocal)
def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or "biggan"
    if arg == "biggan":
        # Table 6: z 160 (8 chunks of 20), non-local blocks back at 64x64 in G and D.
        config = biggan_config(resolution=512, z_dim=160)
        figures = dict(fid=8.1, inception_score=144.2, min_fid=7.6, is_at_min_fid=170.3,
                       fid_at_valid_is=11.8, valid_is=241.4, fid_at_max_is=27.0, max_is=275.0)
    elif arg == "deep":
        config = biggan_config(name="biggan_deep", resolution=512, g_ch=128, d_ch=128,
                               z_dim=128, hier=False)
        config.train.g_lr = config.train.d_lr = 2.5e-5
        figures = dict(fid=7.5, inception_score=152.8, min_fid=7.7, is_at_min_fid=181.4,
                       fid_at_valid_is=11.5, valid_is=241.5, fid_at_max_is=39.7, max_is=298.0)
    else:
        raise variant_error(arg, VARIANTS, "configs/biggan/imagenet512.py")
    config.paper = ml_collections.ConfigDict(dict(
        source=f"Table 2, {'BigGAN-deep' if arg == 'deep' else 'BigGAN'} 512",
        batch_size=2048, ch=config.model.g_ch, **figures))
    return config
