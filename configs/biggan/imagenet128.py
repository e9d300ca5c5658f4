"""ImageNet 128x128: Table 1 rows 1-9 (ablations) and BigGAN-deep 128 (Table 2).

Use as ``--config=configs/biggan/imagenet128.py:row8`` (the default) or ``:deep``.
"""

import ml_collections

from configs.biggan.base import biggan_config, variant_error

# Table 1: batch, ch, Param (M), shared, hier (skip-z), ortho, Itr (x1e3), FID, IS.
TABLE1 = {
    1: (256, 64, 81.5, False, False, False, 1000, 18.65, 52.52),
    2: (512, 64, 81.5, False, False, False, 1000, 15.30, 58.77),
    3: (1024, 64, 81.5, False, False, False, 1000, 14.88, 63.03),
    4: (2048, 64, 81.5, False, False, False, 732, 12.39, 76.85),
    5: (2048, 96, 173.5, False, False, False, 295, 9.54, 92.98),
    6: (2048, 96, 160.6, True, False, False, 185, 9.18, 94.94),
    7: (2048, 96, 158.3, True, True, False, 152, 8.73, 98.76),
    8: (2048, 96, 158.3, True, True, True, 165, 8.51, 99.31),
    9: (2048, 64, 71.3, True, True, True, 371, 10.48, 86.90),
}

# Table 2 at 128px: FID/IS without truncation, at min FID, at validation IS, at max IS.
TABLE2_BIGGAN = dict(fid=8.7, inception_score=98.8, min_fid=7.7, is_at_min_fid=126.5,
                     fid_at_valid_is=9.6, valid_is=166.3, fid_at_max_is=25.0, max_is=206.0)
TABLE2_DEEP = dict(fid=5.7, inception_score=124.5, min_fid=6.3, is_at_min_fid=148.1,
                   fid_at_valid_is=7.4, valid_is=166.5, fid_at_max_is=25.0, max_is=253.0)

VARIANTS = tuple(f"row{i}" for i in TABLE1) + ("deep",)


def table1_row(row: int) -> ml_collections.ConfigDict:
    """Table 1 row ``row``. Rows 1-5 use per-layer class embeddings and feed the full 128-d z
    to the first linear layer; rows 6+ share one 128-d embedding; rows 7+ split a 120-d z."""
    batch, ch, params_m, shared, hier, ortho, itr_k, fid, inception = TABLE1[row]
    config = biggan_config(batch_size=batch, g_ch=ch, d_ch=ch, z_dim=120 if hier else 128,
                           shared_dim=128 if shared else 0, hier=hier,
                           ortho_reg=1e-4 if ortho else 0.0)
    config.paper = ml_collections.ConfigDict(dict(
        source=f"Table 1 row {row}", batch_size=batch, ch=ch, params_M=params_m, shared=shared,
        hier=hier, ortho=ortho, itr_k=itr_k, fid=fid, inception_score=inception))
    if row == 8:
        config.paper.table2 = TABLE2_BIGGAN
    return config


def deep_config() -> ml_collections.ConfigDict:
    """BigGAN-deep 128 (Table 7): ch 128, 128-d z with the shared embedding, no split."""
    config = biggan_config(name="biggan_deep", g_ch=128, d_ch=128, z_dim=128, hier=False)
    config.paper = ml_collections.ConfigDict(dict(source="Table 2, BigGAN-deep 128",
                                                  batch_size=2048, ch=128, **TABLE2_DEEP))
    return config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or "row8"
    if arg == "deep":
        return deep_config()
    if arg in VARIANTS:
        return table1_row(int(arg[3:]))
    raise variant_error(arg, VARIANTS, "configs/biggan/imagenet128.py")
