"""Defaults shared by every BigGAN config (Brock et al. 2018, Sec. 3 and Appendix C).

Every hyperparameter the paper states lives here or in a row of a config file, never in code.
``config.paper`` holds the figures the paper reports for the row, for tests and reports.
"""

import ml_collections

from configs.variants import variant_error, with_runlocal

__all__ = ["biggan_config", "runlocal", "variant_error", "with_runlocal"]


def biggan_config(*, resolution: int = 128, batch_size: int = 2048, g_ch: int = 96,
                  d_ch: int = 96, z_dim: int = 120, shared_dim: int = 128, hier: bool = True,
                  ortho_reg: float = 1e-4, name: str = "biggan", num_classes: int = 1000,
                  g_attn_res: int = 64, d_attn_res: int = 64, dataset: str = "imagenet2012",
                  ) -> ml_collections.ConfigDict:
    """The full BigGAN setting (Table 1 row 8 at 128px); keyword arguments change a row."""
    config = ml_collections.ConfigDict()
    res = ml_collections.FieldReference(resolution)
    classes = ml_collections.FieldReference(num_classes)

    config.model = ml_collections.ConfigDict(dict(
        name=name, resolution=res, g_ch=g_ch, d_ch=d_ch, z_dim=z_dim, num_classes=classes,
        shared_dim=shared_dim, hier=hier, g_attn_res=g_attn_res, d_attn_res=d_attn_res,
        bn_eps=1e-4,         # Appendix C: eps raised from 1e-8 to 1e-4 in BN and SN
        sn_eps=1e-4,
        bn_momentum=0.9,     # running stats only; sampling uses standing statistics
        bn_group_size=0,     # 0: cross-replica BN over all devices (Appendix C)
        dtype="float32",
    ))
    config.data = ml_collections.ConfigDict(dict(
        name=dataset, data_dir="", split="train", resolution=res, num_classes=classes,
        random_flip=False, train_fraction=1.0, shuffle_buffer=10_000,
    ))
    config.train = ml_collections.ConfigDict(dict(
        steps=1_000_000,
        batch_size=batch_size,   # per update (each D step and the G step), as in Table 1
        num_d_steps=2,           # Sec. 3: two D steps per G step
        grad_accum=1,            # micro-batches per update (BigGAN-PyTorch: 256 x 8 = 2048)
        g_lr=5e-5, d_lr=2e-4,    # Appendix C
        adam_b1=0.0, adam_b2=0.999,
        adam_eps=1e-6,           # not stated in the paper; BigGAN-PyTorch's ImageNet scripts
        ortho_reg=ortho_reg,     # Eq. 3's beta = 1e-4 (0 disables); autodiff of Eq. 3
                                 # (BigGAN-PyTorch's --G_ortho s is ortho_reg = s / 2)
        ema_decay=0.9999, ema_start=20_000,   # EMA start as in BigGAN-PyTorch
        loss="hinge",            # 'hinge' | 'non_saturating' | 'minimax' | 'wasserstein'
        latent="normal",         # Appendix E latent distribution for training
        # Appendix E's per-sample variable variance, (sigma_l, sigma_h): in training the
        # latent's normal part of each sample times sigma_i ~ U[sigma_l, sigma_h]; sampling
        # and truncation use sigma = 1. () = off.
        per_sample_sigma=(),
        # DiffAugment (biggan/diffaugment.py): e.g. 'color,translation,cutout'; '' = off.
        diffaugment="",
        # ADA: target of r_t = E[sign(D(real))] (0.6 in Karras et al. 2020); 0 = off (p = 1).
        ada_target=0.0, ada_interval=4, ada_kimg=500.0, ada_p_init=0.0,
        seed=0,
        log_every=100, sample_every=5_000, checkpoint_every=5_000, keep_checkpoints=3,
        # Sec. 4 stability analysis (biggan/stability.py), all off by default.
        spectra_every=0,         # log sigma0..2 of every G and D weight every N steps
        spectra_iterations=8,    # subspace iterations per estimate
        collapse_sigma0_factor=0.0,  # collapse: a G sigma0 > factor x its recent median
        collapse_d_loss_jump=0.0,    # collapse: D loss > its recent mean + this
        collapse_window=5,       # past records / logs the two tests compare against
        stop_on_collapse=False,  # stop at a detected collapse (checkpoints are kept anyway)
        # Sec. 4 interventions (biggan/interventions.py), all off by default.
        sigma_reg=0.0,           # Sec. 4.1: strength of (sigma0 - target)^2 per weight
        sigma_clamp=False,       # Eq. 4 after every update
        sigma_target=1.0,        # the target / clamp value (sigma_reg in the paper)
        sigma_ratio=0.0,         # > 0: target r * sg(sigma1) instead of sigma_target
        sigma_nets="G",          # 'G' | 'D' | 'GD': nets sigma_reg / sigma_clamp act on
        sigma_iterations=2,      # subspace iterations per step, started from SN's u
        r1_gamma=0.0,            # Eq. 5 R1 penalty strength (the paper sweeps 1e-3 .. 10)
        d_dropout=0.0,           # drop rate on D's last feature layer (keep prob 1 - this)
        hinge_margin=1.0,        # the hinge D loss's margin (Appendix G)
        freeze_g_step=-1, freeze_d_step=-1,   # Appendix G.1: freeze from this step (-1: never)
    ))
    config.eval = ml_collections.ConfigDict(dict(
        num_samples=50_000, batch_size=500, standing_stats_passes=100,
        # None: untruncated z (Table 2 'w/o truncation'); numbers: resampling thresholds.
        truncations=(None, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0), reference_split="train",
        inception_weights="",
    ))
    config.paper = ml_collections.ConfigDict()
    return config


def runlocal(config: ml_collections.ConfigDict) -> None:
    """Shrinks a BigGAN config in place to run a few steps on a CPU in minutes: the
    row's layout (resolution, non-local blocks, shared embedding, hierarchical z, BigGAN or
    -deep) at width 8 (the narrowest whose non-local blocks keep a channel), on the embedded
    digits, with a small batch and eval (eval batch 8: divides 1, 2, 4 or 8 devices)."""
    config.model.update(g_ch=8, d_ch=8, shared_dim=min(config.model.shared_dim, 8),
                        num_classes=10)
    config.data.update(name="digits", data_dir="", random_flip=False)
    config.train.update(batch_size=16, grad_accum=1, steps=4, ema_start=1, log_every=2,
                        sample_every=4, checkpoint_every=2)
    config.eval.update(num_samples=16, batch_size=8, standing_stats_passes=1,
                       truncations=(1.0,), inception_weights="")
