"""Every paper row is evaluated the way its paper scored it (pinned to the table below, written
from the papers), and the eval jobs' checks reject bad settings with one line, before any
model is built (no models here)."""

import pytest

from gencore.config_util import config_variants, load_config

DDPM = dict(sampler="ancestral", var_type="fixedlarge", num_samples=50_000,
            reference_split="train")
IDDPM = dict(sampler="ancestral", num_samples=50_000, reference_split="train")
LEARNED = dict(IDDPM, var_type="learned_range")
FIXED = dict(IDDPM, var_type="fixedlarge")
NO_BPD = dict(bpd_examples=0)
CIFAR_TEST_NLL = dict(bpd_examples=-1, bpd_split="test")
PAPER_EVAL = {
    # DDPM (Ho et al. 2020, Sec. 4): Algorithm 2 over all 1000 steps with sigma^2 = beta_t,
    # 50k samples, FID / IS against the training set; NLL on the CIFAR-10 test set.
    "configs/diffusion/ddpm_cifar10.py": dict(DDPM, sample_steps=1000, **CIFAR_TEST_NLL),
    "configs/diffusion/ddpm_celebahq256.py": dict(DDPM, sample_steps=1000, **NO_BPD),
    **{f"configs/diffusion/ddpm_lsun256.py:{row}": dict(DDPM, sample_steps=1000, **NO_BPD)
       for row in ("church", "bedroom", "cat")},
    # iDDPM (Nichol & Dhariwal 2021) Table 2: full chain; learned variance also at 100 and 50
    # respaced steps (Sec. 4); NLL on the test set (CIFAR-10) / validation set (ImageNet 64).
    **{f"configs/diffusion/iddpm_cifar10.py:{row}": dict(FIXED, sample_steps=4000,
                                                          **CIFAR_TEST_NLL)
       for row in ("linear_simple", "cosine_simple")},
    **{f"configs/diffusion/iddpm_cifar10.py:{row}": dict(LEARNED, sample_steps=(4000, 100, 50),
                                                          **CIFAR_TEST_NLL)
       for row in ("linear_hybrid", "cosine_hybrid", "cosine_vlb")},
    "configs/diffusion/iddpm_cifar10.py:cosine_hybrid_t1000": dict(
        LEARNED, sample_steps=(1000, 100, 50), **CIFAR_TEST_NLL),
    **{f"configs/diffusion/iddpm_imagenet64.py:{row}": dict(
        LEARNED, sample_steps=(4000, 100, 50), bpd_examples=-1, bpd_split="validation")
       for row in ("hybrid", "vlb")},
    # Class-conditional ImageNet 64 (Sec. 6): FID 2.92 with 250 sampling steps.
    "configs/diffusion/iddpm_imagenet64.py:class_cond": dict(LEARNED, sample_steps=250,
                                                            **NO_BPD),
}
PAPER_DATA = {   # the dataset of the rows whose data differs between variants
    "configs/diffusion/iddpm_imagenet64.py:hybrid": "downsampled_imagenet/64x64",
    "configs/diffusion/iddpm_imagenet64.py:vlb": "downsampled_imagenet/64x64",
    "configs/diffusion/iddpm_imagenet64.py:class_cond": "imagenet2012",
}
DIFFUSION_ROWS = [n for n in config_variants("configs/diffusion") if "digits" not in n]
BIGGAN_ROWS = [n for n in config_variants("configs/biggan") if "digits" not in n]


def test_every_diffusion_paper_row_is_in_the_table():
    assert sorted(PAPER_EVAL) == sorted(DIFFUSION_ROWS)


@pytest.mark.parametrize("name", DIFFUSION_ROWS)
def test_diffusion_rows_are_scored_as_their_paper(name):
    config, want = load_config(name), PAPER_EVAL[name]
    got = dict(config.eval, var_type=config.diffusion.var_type)
    assert {k: got[k] for k in want} == want
    if "nll_bpd" in config.paper:   # a reported NLL is measured on the whole held-out split
        assert want["bpd_examples"] == -1
    if name in PAPER_DATA:
        assert config.data.name == PAPER_DATA[name]
    steps = want["sample_steps"]
    assert max(steps if isinstance(steps, tuple) else (steps,)) == config.diffusion.num_steps \
        or "class_cond" in name


@pytest.mark.parametrize("name", BIGGAN_ROWS)
def test_biggan_rows_evaluate_untruncated_too(name):
    """Table 2's 'w/o truncation' column: every paper row scores an untruncated entry."""
    assert None in tuple(load_config(name).eval.truncations)
