"""The reproduction report: hand-made eval results of a BigGAN-like run (Inception FID over
truncations) and a diffusion-like run (digits-classifier FID over sampler settings, bits/dim),
their configs saved with a checkpoint as the train job saves them, and a run never evaluated."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from helpers import worker_env

from configs.biggan.cifar10 import get_config as biggan_cifar10
from configs.biggan.imagenet128 import get_config as biggan_imagenet128
from configs.diffusion.digits import get_config as diffusion_digits
from configs.diffusion.iddpm_cifar10 import get_config as iddpm_cifar10
from gencore import checkpoint, report


def scores(fid, **extra):
    return {"fid": fid, "is_mean": 100.0 / fid, "is_std": 0.1, "kid_mean": 0.01,
            "kid_std": 0.001, "precision": 0.7, "recall": 0.4, **extra}


def write_run(workdir, config, space, data_specific, reference, steps):
    """A checkpoint holding ``config`` and metrics_<step>.json per {step: ([(setting, fid)],
    bits_per_dim or None)}."""
    with checkpoint.Checkpointer(workdir, config=config, async_save=False) as ckpt:
        ckpt.save(max(steps), {"w": np.zeros(2, np.float32)}, force=True)
    eval_dir = workdir / "eval"
    eval_dir.mkdir()
    for step, (settings, bpd) in steps.items():
        extra = {"class_accuracy": 0.9} if data_specific else {}
        result = {
            "step": step, "num_samples": 500, "details": {},
            "feature_spaces": {space: {"data_specific": data_specific,
                                       "reference": reference}},
            "settings": [{"setting": s, space: scores(fid, **extra)} for s, fid in settings],
            "step_metrics": {} if bpd is None else {"bits_per_dim": bpd},
        }
        (eval_dir / f"metrics_{step:08d}.json").write_text(json.dumps(result))


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    truncations = [{"truncation": None}, {"truncation": 0.5}, {"truncation": 1.0}]
    gan_steps = {
        1000: (list(zip(truncations, [90.0, 80.0, 85.0], strict=True)), None),
        2000: (list(zip(truncations, [30.0, 21.5, 25.0], strict=True)), None),
        3000: (list(zip(truncations, [35.0, 24.0, math.nan], strict=True)), None),
    }
    write_run(root / "biggan_cifar", biggan_cifar10(), "inception", False,
              "cifar10 split 'train' (50000 images at 32px) in the inception feature space",
              gan_steps)
    ddim = [{"sampler": "ddim", "steps": 50, "guidance": g} for g in (1.0, 3.0)]
    ddpm_steps = {
        500: (list(zip(ddim, [12.0, 6.25], strict=True)), 3.4),
        1000: (list(zip(ddim, [9.0, 7.0], strict=True)), 2.95),
        1500: (list(zip(ddim, [8.0, 7.5], strict=True)), 3.1),
    }
    write_run(root / "ddpm_digits", diffusion_digits(), "digits_classifier", True,
              "digits split 'train' (1000 images at 16px) in the digits_classifier feature space",
              ddpm_steps)
    (root / "fresh").mkdir()
    return [str(root / name) for name in ("biggan_cifar", "ddpm_digits", "fresh")]


def table_rows(text):
    """{run: {column: cell}} of the report's table."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split(" | ")]
    return {cells[0]: dict(zip(header, cells, strict=True))
            for cells in ([c.strip() for c in line.strip("|").split(" | ")]
                          for line in lines[1:])}


def test_report_table_and_figure(workdirs, tmp_path):
    text = report.write_report(workdirs, str(tmp_path / "out"))
    assert (tmp_path / "out" / "report.md").read_text() == text
    assert (tmp_path / "out" / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = table_rows(text)
    assert list(rows) == ["biggan_cifar", "ddpm_digits", "fresh"]

    gan = rows["biggan_cifar"]
    assert gan["paper"].startswith("FID 14.73, IS 9.22; Appendix C.2")
    assert gan["config"] == "biggan on cifar10 32px"
    assert gan["feature space"] == "inception"
    assert (gan["best FID"], gan["step"], gan["setting"]) == ("21.5", "2000", "`truncation_0.5`")
    assert (gan["samples"], gan["IS"], gan["class acc."]) == ("500", "4.651", "-")
    assert gan["precision / recall"] == "0.7 / 0.4"
    assert gan["best NLL (bits/dim)"] == "-"

    ddpm = rows["ddpm_digits"]
    assert ddpm["paper"] == "none"
    assert ddpm["feature space"] == "digits_classifier (data-specific\N{DAGGER})"
    assert (ddpm["best FID"], ddpm["step"]) == ("6.25", "500")
    assert ddpm["setting"] == "`sampler_ddim,steps_50,guidance_3`"
    assert ddpm["class acc."] == "0.9"
    assert ddpm["best NLL (bits/dim)"] == "2.95 (step 1000)"
    assert "\N{DAGGER} Data-specific feature space" in text

    fresh = rows["fresh"]
    assert fresh["config"] == "unknown (no checkpoint)"
    assert fresh["feature space"].startswith("not evaluated")
    assert fresh["best FID"] == "-"


def test_missing_workdir_is_one_line_naming_the_flag(workdirs, tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="--workdirs"):
        report.write_report([workdirs[0], missing], str(tmp_path / "out"))
    job = subprocess.run(
        [sys.executable, "-m", "gencore.report", f"--workdirs={missing}",
         f"--out={tmp_path / 'out'}"], capture_output=True, text=True, timeout=120,
        env=worker_env())
    assert job.returncode == 1
    assert job.stderr.strip().splitlines()[-1].startswith(
        f"report failed: FileNotFoundError: --workdirs: {missing} is not a directory.")


def test_paper_figures_of_configs():
    cell = report.paper_cell
    assert cell(checkpoint.config_to_json(biggan_imagenet128("row8"))) == (
        "FID 8.51, IS 99.31, min FID 7.7; Table 1 row 8")
    assert cell(checkpoint.config_to_json(iddpm_cifar10("cosine_hybrid"))).startswith(
        "FID 3.19, NLL 3.17 bits/dim; Nichol & Dhariwal 2021")
    assert cell(checkpoint.config_to_json(diffusion_digits())) == "none"
    assert cell(None) == "none"
