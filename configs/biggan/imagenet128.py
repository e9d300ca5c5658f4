"""ImageNet 128x128: Table 1 rows 1-9 (ablations) and BigGAN-deep 128 (Table 2).

Use as ``--config=configs/biggan/imagenet128.py:row8`` (the default) or ``:deep``.
"""

import ml_collections

from configs.biggan.base import biggan_config, runlocal, variant_error, with_runlocal


def _row(batch_size: int, ch: int, params_M: float, shared: bool, hier: bool, ortho: bool,
         itr_k: int, fid: float, inception_score: float) -> dict:
    """One row of Table 1 with its columns named: batch, ch, Param (M), shared embedding,
    hierarchical (skip-)z, orthogonal regularization, Itr (x1e3: the collapse iteration, 1000
    when stable), FID, IS."""
    return dict(batch_size=batch_size, ch=ch, params_M=params_M, shared=shared, hier=hier,
                ortho=ortho, itr_k=itr_k, fid=fid, inception_score=inception_score)


TABLE1 = {
    1: _row(batch_size=256, ch=64, params_M=81.5, shared=False, hier=False, ortho=False,
            itr_k=1000, fid=18.65, inception_score=52.52),
    2: _row(batch_size=512, ch=64, params_M=81.5, shared=False, hier=False, ortho=False,
            itr_k=1000, fid=15.30, inception_score=58.77),
    3: _row(batch_size=1024, ch=64, params_M=81.5, shared=False, hier=False, ortho=False,
            itr_k=1000, fid=14.88, inception_score=63.03),
    4: _row(batch_size=2048, ch=64, params_M=81.5, shared=False, hier=False, ortho=False,
            itr_k=732, fid=12.39, inception_score=76.85),
    5: _row(batch_size=2048, ch=96, params_M=173.5, shared=False, hier=False, ortho=False,
            itr_k=295, fid=9.54, inception_score=92.98),
    6: _row(batch_size=2048, ch=96, params_M=160.6, shared=True, hier=False, ortho=False,
            itr_k=185, fid=9.18, inception_score=94.94),
    7: _row(batch_size=2048, ch=96, params_M=158.3, shared=True, hier=True, ortho=False,
            itr_k=152, fid=8.73, inception_score=98.76),
    8: _row(batch_size=2048, ch=96, params_M=158.3, shared=True, hier=True, ortho=True,
            itr_k=165, fid=8.51, inception_score=99.31),
    9: _row(batch_size=2048, ch=64, params_M=71.3, shared=True, hier=True, ortho=True,
            itr_k=371, fid=10.48, inception_score=86.90),
}
"""Table 1 of the paper, row number -> its named columns."""

# Table 2 at 128px: FID/IS without truncation, at min FID, at validation IS, at max IS.
TABLE2_BIGGAN = dict(fid=8.7, inception_score=98.8, min_fid=7.7, is_at_min_fid=126.5,
                     fid_at_valid_is=9.6, valid_is=166.3, fid_at_max_is=25.0, max_is=206.0)
TABLE2_DEEP = dict(fid=5.7, inception_score=124.5, min_fid=6.3, is_at_min_fid=148.1,
                   fid_at_valid_is=7.4, valid_is=166.5, fid_at_max_is=25.0, max_is=253.0)

VARIANTS = tuple(f"row{i}" for i in TABLE1) + ("deep",)


def table1_row(row: int) -> ml_collections.ConfigDict:
    """Table 1 row ``row``. Rows 1-5 use per-layer class embeddings and feed the full 128-d z
    to the first linear layer; rows 6+ share one 128-d embedding; rows 7+ split a 120-d z."""
    paper = TABLE1[row]
    config = biggan_config(batch_size=paper["batch_size"], g_ch=paper["ch"], d_ch=paper["ch"],
                           z_dim=120 if paper["hier"] else 128,
                           shared_dim=128 if paper["shared"] else 0, hier=paper["hier"],
                           ortho_reg=1e-4 if paper["ortho"] else 0.0)
    config.paper = ml_collections.ConfigDict(dict(source=f"Table 1 row {row}", **paper))
    if row == 8:
        config.paper.table2 = TABLE2_BIGGAN
    return config


def deep_config() -> ml_collections.ConfigDict:
    """BigGAN-deep 128 (Table 7): ch 128, 128-d z with the shared embedding, no split."""
    config = biggan_config(name="biggan_deep", g_ch=128, d_ch=128, z_dim=128, hier=False)
    config.paper = ml_collections.ConfigDict(dict(source="Table 2, BigGAN-deep 128",
                                                  batch_size=2048, ch=128, **TABLE2_DEEP))
    return config


@with_runlocal(runlocal)
def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or "row8"
    if arg == "deep":
        return deep_config()
    if arg in VARIANTS:
        return table1_row(int(arg[3:]))
    raise variant_error(arg, VARIANTS, "configs/biggan/imagenet128.py")
