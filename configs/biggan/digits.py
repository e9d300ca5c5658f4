"""The embedded default: a small class-conditional BigGAN on scikit-learn's 8x8 digits.

1797 real handwritten digits (10 classes) that ship with scikit-learn, resized to 16x16, so
the main job runs on a fresh machine with no download. The model is BigGAN's 16x16 layout
(G stages 4 -> 8 -> 16; shared embedding, hierarchical z) at widths a 2-core CPU trains in
minutes (G 8, D 12: a D wider than G keeps G's samples varied within a class). Training
follows Appendix C's recipe (two D steps per G step, D's learning rate 4x G's) with
learning rates raised for the short run, the non-saturating loss, Appendix E's N(0, I) +
Bernoulli latent with Appendix E's per-sample variable variance on its normal half (sigma_i ~
U[0.1, 1] in training, so that G keeps its variety under the truncation trick) and a stronger
orthogonal regularization (Sec. 3.1) than the paper's 1e-4. docs/digits_tuning.md compares the
settings tried and gives the scores.
"""

import ml_collections

from configs.biggan.base import biggan_config, runlocal, with_runlocal

VARIANTS = ()


@with_runlocal(runlocal)
def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    del arg
    config = biggan_config(resolution=16, num_classes=10, dataset="digits", batch_size=32,
                           g_ch=8, d_ch=12, z_dim=48, shared_dim=32, g_attn_res=0,
                           d_attn_res=0)
    config.data.random_flip = False   # digits are not mirror-symmetric
    config.train.update(steps=2000, num_d_steps=2, g_lr=5e-4, d_lr=2e-3, loss="non_saturating",
                        latent="normal_concat_bernoulli", per_sample_sigma=(0.1, 1.0),
                        ortho_reg=1e-3, ema_decay=0.995,
                        ema_start=500, log_every=50, sample_every=500, checkpoint_every=500)
    config.eval.update(num_samples=2000, batch_size=200, standing_stats_passes=16,
                       truncations=(None, 0.25, 0.5, 1.0, 1.5, 2.0))
    config.paper = ml_collections.ConfigDict(dict(source="none: embedded default data"))
    return config
