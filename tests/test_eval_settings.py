"""Every paper row is evaluated the way its paper scored it (pinned to the table below, written
from the papers), and the eval jobs' checks reject bad settings with one line, before any
model is built (no models here)."""

import pytest

from biggan.eval_settings import check_eval_config as biggan_check_eval_config
from diffusion.eval_settings import check_eval_settings
from gencore import inception, reference_stats
from gencore.config_util import config_variants, load_config
from gencore.evaluation import set_eval_field

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


# ----------------------------------------------------------------------------- bad input

def digits_diffusion(**eval_fields):
    config = load_config("configs/diffusion/digits.py")
    config.eval.update(eval_fields)
    return config


@pytest.mark.parametrize("fields, message", [
    (dict(sampler="euler"), "config.eval.sampler='euler' (or --sampler) is not a sampler"),
    (dict(sample_steps=1001), "holds 1001: each entry must be a whole number of respaced "
                              "steps in 1..T, T = config.diffusion.num_steps = 1000"),
    (dict(sample_steps=(50, 0)), "holds 0: each entry"),
    (dict(sample_steps=2.5), "holds 2.5: each entry"),
    (dict(guidance="strong"), "config.eval.guidance (or --guidance) holds 'strong'"),
    (dict(bpd_examples=-2), "config.eval.bpd_examples=-2: use 0 (no bits/dim), -1 (the whole"),
])
def test_bad_diffusion_eval_settings_fail_with_one_line(fields, message):
    with pytest.raises(ValueError) as error:
        check_eval_settings(digits_diffusion(**fields))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_flag_values_replace_the_config_in_the_checks():
    config = digits_diffusion()   # --sampler, --steps, --guidance as diffusion.eval sets them
    for name, value in (("sampler", "ancestral"), ("sample_steps", (1000,)),
                        ("guidance", (1.0, 3.0))):
        set_eval_field(config, name, value)
    check_eval_settings(config)
    set_eval_field(config, "sample_steps", (5000,))
    with pytest.raises(ValueError, match="holds 5000"):
        check_eval_settings(config)


def test_guidance_needs_classes_and_a_trained_null_class():
    unconditional = load_config("configs/diffusion/ddpm_cifar10.py:runlocal")
    unconditional.eval.guidance = (1.0, 2.0)
    with pytest.raises(ValueError, match=r"= 2 on an unconditional model \(config.model"):
        check_eval_settings(unconditional)
    no_dropout = digits_diffusion(guidance=3.0)
    no_dropout.diffusion.label_drop_prob = 0.0
    with pytest.raises(ValueError, match="needs a null class trained by label dropout"):
        check_eval_settings(no_dropout)
    no_dropout.eval.guidance = 1.0
    check_eval_settings(no_dropout)   # plain conditional sampling needs no null class


@pytest.mark.parametrize("name", DIFFUSION_ROWS + BIGGAN_ROWS)
def test_runlocal_variants_pass_the_checks(name):
    config = load_config(f"{name},runlocal" if ":" in name else f"{name}:runlocal")
    check = check_eval_settings if "diffusion" in name else biggan_check_eval_config
    check(config)


@pytest.fixture
def cifar10_run(tmp_path, monkeypatch):
    """DDPM CIFAR-10 on a missing image folder, with no Inception weights configured."""
    monkeypatch.delenv(inception.WEIGHTS_ENV_VAR, raising=False)
    monkeypatch.setenv(reference_stats.CACHE_ENV_VAR, str(tmp_path / "stats"))
    config = load_config("configs/diffusion/ddpm_cifar10.py")
    config.data.update(name="folder", data_dir=str(tmp_path / "no_images"))
    return config


def test_missing_inception_weights_say_how_to_convert_them(cifar10_run):
    with pytest.raises(ValueError) as error:
        check_eval_settings(cifar10_run)
    text = str(error.value)
    assert text.startswith("config.eval.inception_weights: Inception FID / IS of data.name=")
    assert "python -m gencore.convert_inception --input=" in text and "\n" not in text


def test_reference_stats_missing_and_not_computable(cifar10_run, tmp_path):
    weights = tmp_path / "inception_fid.npz"
    weights.write_bytes(b"")
    cifar10_run.eval.inception_weights = str(weights)
    with pytest.raises(ValueError) as error:
        check_eval_settings(cifar10_run)
    text = str(error.value)
    assert text.startswith("config.eval.reference_split='train': no reference statistics at ")
    assert "not a directory" in text and "python -m gencore.reference_stats" in text
    assert "\n" not in text
    path = reference_stats.default_path("folder", 32, "train", "inception")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    check_eval_settings(cifar10_run)   # cached statistics: nothing to compute


@pytest.mark.parametrize("truncations, message", [
    ((None, 0.0), "holds 0.0: each entry must be a threshold > 0"),
    ((-1.0,), "holds -1.0: each entry"),
    (("1.0",), "holds '1.0': each entry"),
    ((True,), "holds True: each entry"),
    ((), "config.eval.truncations=(): use a non-empty tuple"),
])
def test_bad_truncations_fail_with_one_line(truncations, message):
    config = load_config("configs/biggan/digits.py")
    config.eval.truncations = truncations
    with pytest.raises(ValueError) as error:
        biggan_check_eval_config(config)
    assert message in str(error.value) and "\n" not in str(error.value)
