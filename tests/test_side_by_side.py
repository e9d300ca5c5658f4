"""benchmarks/side_by_side.py's flags, commands and JSON lines (no torch, nothing timed), and
benchmarks/gpu_check.sh's syntax."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPT = BENCHMARKS / "side_by_side.py"


def load_side_by_side():
    spec = importlib.util.spec_from_file_location("side_by_side", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=60)


def test_dry_run_prints_both_sides_commands():
    result = run_script("--dry-run", "--smoke", "--settings=ddpm_cifar10,biggan128",
                        "--batch=biggan128=3", "--precision=highest")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(x["setting"], x["side"]) for x in lines] == [
        ("ddpm_cifar10", "ours"), ("ddpm_cifar10", "reference"),
        ("biggan128", "ours"), ("biggan128", "reference")]
    ours, reference = lines[2], lines[3]
    assert ours["batch"] == 3 and "--batch=3" in ours["argv"] and "--batch=3" in reference["argv"]
    assert ours["argv"][1].endswith("our_step.py") and "--serve" in ours["argv"]
    assert reference["argv"][1].endswith("reference_step.py") and "biggan128" in reference["argv"]
    assert ours["env"]["JAX_PLATFORMS"] == "cpu" and reference["env"] == {
        "CUDA_VISIBLE_DEVICES": ""}
    assert "--precision=highest" in ours["argv"] and "--precision=highest" in reference["argv"]
    assert lines[0]["batch"] == 2 and "--width=32" in lines[0]["argv"]   # ddpm's smoke setting


@pytest.mark.parametrize("args, message", [
    (["--settings=ddpm_cifar10,nope"], "unknown ['nope']"),
    (["--batch=ddpm_cifar10=0"], "--batch: 'ddpm_cifar10=0'"),
    (["--rounds=0"], "--rounds and --steps"),
])
def test_bad_flags_fail_with_one_line(args, message):
    result = run_script("--dry-run", *args)
    assert result.returncode == 2 and message in result.stderr


def fake_side(params: int, images: int) -> list[str]:
    """A process that speaks the protocol with an iteration that does nothing."""
    code = (f"import sys; sys.path.insert(0, {str(BENCHMARKS)!r}); "
            "from step_settings import serve; "
            f"serve(lambda: None, {{'params': {params}, 'images_per_step': {images}}}, 1)")
    return [sys.executable, "-c", code]


def fake_commands(ours_params: int, reference_params: int, extra_params: int = 0):
    """A stand-in for side_by_side.commands: two fake sides (ours 4 images per step, the
    reference 2) that report these parameter counts."""
    return lambda name, args: {
        "ours": {"argv": fake_side(ours_params, 4), "env": {}, "precision": "default"},
        "reference": {"argv": fake_side(reference_params, 2), "env": {}, "precision": "default"},
        "batch": 4, "extra_params": extra_params}


def test_measurement_and_ratio_lines(monkeypatch, capsys):
    module = load_side_by_side()
    args = module.parse_args(["--settings=ddpm_cifar10", "--rounds=2", "--steps=2"])
    monkeypatch.setattr(module, "commands", fake_commands(7, 7))
    assert module.run_setting("ddpm_cifar10", args)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 6
    measurement, ratio = lines[0], lines[2]
    assert {"setting", "side", "device", "precision", "round", "params", "s_per_step_min",
            "s_per_step_median", "images_per_s"} <= set(measurement)
    assert [x.get("side") for x in lines[:3]] == ["ours", "reference", None]
    assert ratio["round"] == 0 and ratio["ratio_ours_over_reference"] == pytest.approx(
        lines[0]["images_per_s"] / lines[1]["images_per_s"], rel=1e-2)
    assert ratio["params_ours"] == ratio["params_reference"] == 7
    assert "extra_params_reason" not in ratio


def test_parameter_count_mismatch_fails(monkeypatch, capsys):
    module = load_side_by_side()
    args = module.parse_args(["--settings=ddpm_cifar10"])
    monkeypatch.setattr(module, "commands", fake_commands(7, 8))
    assert not module.run_setting("ddpm_cifar10", args)
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert line["error"] == "parameter counts: ours 7, reference 8; expected ours - reference = 0"


@pytest.mark.parametrize("ours, reference, accepted", [(9, 7, True), (10, 7, False),
                                                       (7, 7, False), (7, 9, False)])
def test_known_parameter_difference_is_allowed_exactly(monkeypatch, capsys, ours, reference,
                                                       accepted):
    module = load_side_by_side()
    args = module.parse_args(["--settings=biggan_deep128"])
    monkeypatch.setattr(module, "commands", fake_commands(ours, reference, extra_params=2))
    assert module.run_setting("biggan_deep128", args) == accepted
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    if accepted:
        ratio = lines[-1]
        assert (ratio["params_ours"], ratio["params_reference"]) == (9, 7)
        assert ratio["extra_params_reason"] == module.SETTINGS["biggan_deep128"].extra_params_reason
    else:
        assert lines == [{"setting": "biggan_deep128", "device": "cpu", "batch": 4,
                          "error": f"parameter counts: ours {ours}, reference {reference}; "
                                   "expected ours - reference = 2"}]


@pytest.mark.parametrize("smoke", [True, False])
def test_biggan_deep_extra_params_are_our_output_conv_beyond_three_channels(smoke):
    """The stated difference is what our conv_to_rgb (ch outputs) holds beyond a 3-output
    3x3 conv with bias, BigGAN-PyTorch's output conv."""
    import jax

    from biggan import model as biggan_model
    from gencore.config_util import load_config

    module = load_side_by_side()
    setting = module.SETTINGS["biggan_deep128"]
    args = module.parse_args(["--settings=biggan_deep128", "--dry-run"] + ["--smoke"] * smoke)
    ch = setting.smoke_width if smoke else setting.width
    config = load_config(setting.our_config).model
    config.update(g_ch=ch, d_ch=ch)
    g_vars, _ = jax.eval_shape(lambda: biggan_model.init_variables(config, jax.random.key(0)))
    to_rgb = biggan_model.count_params(g_vars["params"]["conv_to_rgb"])
    assert module.commands("biggan_deep128", args)["extra_params"] == to_rgb - (9 * ch * 3 + 3)


def test_gpu_check_is_valid_bash():
    result = subprocess.run(["bash", "-n", str(BENCHMARKS / "gpu_check.sh")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


CONV_SCRIPT = BENCHMARKS / "conv_side_by_side.py"


def test_conv_side_by_side_alternates_with_the_reference_process(tmp_path):
    """Our side times the shape; a stand-in reference (no torch here) answers with its JSON."""
    fake = tmp_path / "reference_python"
    fake.write_text("#!/bin/sh\necho '{\"2x4x4x3-5\": 0.004}'\n")
    fake.chmod(0o755)
    result = subprocess.run(
        [sys.executable, str(CONV_SCRIPT), "--shapes=2x4x4x3-5", "--rounds=2", "--repeats=2"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "REFERENCE_PYTHON": str(fake)})
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(x["shape"], x["round"]) for x in lines] == [("2x4x4x3-5", 0), ("2x4x4x3-5", 1)]
    for x in lines:
        assert x["reference_s"] == 0.004 and x["ours_s"] > 0
        # ours_s is printed to 10 us, the ratio from the unrounded time.
        assert x["ratio_ours_over_reference"] == pytest.approx(0.004 / x["ours_s"], rel=0.05)


def test_conv_side_by_side_rejects_a_bad_shape():
    result = subprocess.run([sys.executable, str(CONV_SCRIPT), "--shapes=8x32x32x128"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "is not BxHxWxCin-Cout" in result.stderr
