"""Parity with pytorch-pretrained-biggan (optional tier): same state dict -> same images.

Needs the [torch] extra (torch 2.13 CPU build and pytorch-pretrained-biggan):

    pip install torch==2.13.0 && pip install --no-deps pytorch-pretrained-biggan
    python -m pytest -m "torch and not slow" tests/test_pretrained_parity.py -p no:cacheprovider
    python -m pytest -m torch tests/test_pretrained_parity.py -p no:cacheprovider  # + 256, 512

The package builds DeepMind's BigGAN-deep offline with random weights (``BigGAN(config)``). We
give it BN tables, a final BN and an attention gamma of sensible scale, and spectral-norm
vectors as the release has them: either one power step from a random u (one forward in train
mode: v = l2n(W^T u0), u = l2n(W v), what the release's converter did) or a converged power
iteration (u, v the top singular pair, where the converter has to rescale kernels). Its state
dict goes through our converter; images for the same z, class and truncation must agree to
1e-4 in [-1, 1].
"""

import argparse
import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ppb = pytest.importorskip("pytorch_pretrained_biggan")
ppb_configs = pytest.importorskip("pytorch_pretrained_biggan.convert_tf_to_pytorch")

from biggan import convert_pretrained, pretrained  # noqa: E402

pytestmark = pytest.mark.torch

TOLERANCE = 1e-4
CLASSES = np.array([207, 980])
TRUNCATIONS = (0.4, 0.14, 0.405, 1.0)   # a grid value, two of the release's quirks, the end


def torch_biggan(resolution: int, channel_width: int, converged_sn: bool = False, seed: int = 0):
    """pytorch-pretrained-biggan's BigGAN-deep with random weights and sensible statistics."""
    base = {128: ppb.BigGANConfig(), 256: ppb_configs.BigGAN256,
            512: ppb_configs.BigGAN512}[resolution]
    config = ppb.BigGANConfig.from_dict(dict(base.to_dict(), channel_width=channel_width))
    torch.manual_seed(seed)
    model = ppb.BigGAN(config)
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "running_means"):
                module.running_means.normal_(0.0, 0.5)
                module.running_vars.uniform_(0.5, 2.0)
        model.generator.bn.weight.uniform_(0.5, 1.5)
        model.generator.bn.bias.normal_(0.0, 0.1)
        for name, parameter in model.named_parameters():
            if name.endswith("gamma"):
                parameter.fill_(0.5)
        if converged_sn:
            for module in model.modules():
                if hasattr(module, "weight_u"):
                    matrix = module.weight_orig.reshape(module.weight_orig.shape[0], -1)
                    left, _, right = torch.linalg.svd(matrix.double(), full_matrices=False)
                    module.weight_u.copy_(left[:, 0].float())
                    module.weight_v.copy_(right[0].float())
        else:
            model.train()
            model(torch.randn(2, config.z_dim), torch.eye(config.num_classes)[:2], 0.5)
    return model.eval(), config


def torch_images(model, z: np.ndarray, labels: np.ndarray, truncation: float) -> np.ndarray:
    with torch.no_grad():
        one_hot = torch.eye(model.config.num_classes)[torch.from_numpy(labels)]
        images = model(torch.from_numpy(z), one_hot, truncation)
    return images.numpy().transpose(0, 2, 3, 1)


def latents(count: int, truncation: float, seed: int = 0) -> np.ndarray:
    z = np.random.default_rng(seed).standard_normal((count, 128))
    return np.clip(z, -truncation, truncation).astype(np.float32)


def save_release(model, config, directory) -> None:
    """The layout users download: pytorch_model.bin and config.json."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), directory / convert_pretrained.WEIGHTS_NAME)
    (directory / convert_pretrained.CONFIG_NAME).write_text(config.to_json_string())


def max_difference(model, generator, truncations=TRUNCATIONS) -> float:
    worst = 0.0
    for i, truncation in enumerate(truncations):
        z = latents(len(CLASSES), truncation, seed=i)
        ours = generator(z, CLASSES, truncation)
        theirs = torch_images(model, z, CLASSES, truncation)
        assert theirs.std() > 0.1 and np.mean(np.abs(theirs) > 0.99) < 0.2   # not saturated
        worst = max(worst, float(np.abs(ours - theirs).max()))
    return worst


@pytest.mark.parametrize("resolution,channel_width,converged_sn", [
    (128, 128, False),
    (128, 32, True),
    pytest.param(256, 128, False, marks=pytest.mark.slow),
    pytest.param(512, 128, False, marks=pytest.mark.slow),
])
def test_images_match_pytorch(tmp_path, resolution, channel_width, converged_sn):
    model, config = torch_biggan(resolution, channel_width, converged_sn)
    save_release(model, config, tmp_path / "release")
    report = convert_pretrained.convert(tmp_path / "release", tmp_path / "ours")
    assert report["resolution"] == resolution
    assert bool(report["rescaled_kernels"]) == converged_sn
    difference = max_difference(model, pretrained.load(tmp_path / "ours"))
    print(f"BigGAN-deep {resolution} ch {channel_width} converged_sn={converged_sn}: "
          f"max |ours - pytorch| = {difference:.3g}")
    assert difference <= TOLERANCE


def test_command_lines_match_pytorch(tmp_path):
    """convert_pretrained then sample --z_npy --out=images.npy, as the README shows them."""
    model, config = torch_biggan(128, 16)
    save_release(model, config, tmp_path / "release")
    z = latents(2, 0.4)
    np.save(tmp_path / "z.npy", z)
    python = [sys.executable, "-m"]
    converted = subprocess.run(
        python + ["biggan.convert_pretrained", f"--input={tmp_path / 'release'}",
                  f"--output={tmp_path / 'ours'}", "--resolution=128"],
        capture_output=True, text=True, check=True)
    assert json.loads(converted.stdout.strip().splitlines()[-1])["resolution"] == 128
    subprocess.run(
        python + ["biggan.sample", f"--pretrained={tmp_path / 'ours'}", "--classes=207,980",
                  "--num=1", "--truncation=0.4", f"--z_npy={tmp_path / 'z.npy'}",
                  f"--out={tmp_path / 'images.npy'}", "--batch_size=2"],
        capture_output=True, text=True, check=True)
    ours = np.load(tmp_path / "images.npy")
    assert np.abs(ours - torch_images(model, z, CLASSES, 0.4)).max() <= TOLERANCE
    wrong = subprocess.run(
        python + ["biggan.convert_pretrained", f"--input={tmp_path / 'release'}",
                  f"--output={tmp_path / 'other'}", "--resolution=256"],
        capture_output=True, text=True)
    assert wrong.returncode != 0
    assert "Expected the BigGAN-deep 256 generator (12 GBlocks); found the BigGAN-deep 128" in (
        wrong.stderr)


def test_unreadable_or_foreign_files_are_refused(tmp_path):
    torch.save(argparse.Namespace(weights=torch.zeros(3)), tmp_path / "pickled.bin")
    with pytest.raises(ValueError, match="not a PyTorch state dict readable with weights_only"):
        convert_pretrained.read_input(tmp_path / "pickled.bin")
    (tmp_path / "garbage.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a PyTorch state dict readable with weights_only"):
        convert_pretrained.read_input(tmp_path / "garbage.bin")
    torch.save([torch.zeros(3)], tmp_path / "list.bin")
    with pytest.raises(ValueError, match=r"Expected a state dict \(names -> tensors\).*found list"):
        convert_pretrained.read_input(tmp_path / "list.bin")
    resnet_like = {"conv1.weight": torch.zeros(8, 3, 3, 3), "fc.bias": torch.zeros(10)}
    torch.save(resnet_like, tmp_path / "resnet.bin")
    state, _, _ = convert_pretrained.read_input(tmp_path / "resnet.bin")
    with pytest.raises(ValueError, match="Expected a pytorch-pretrained-biggan BigGAN-deep"):
        convert_pretrained.convert_state_dict(state)
    model, config = torch_biggan(128, 8)
    save_release(model, config, tmp_path / "release")
    config_file = tmp_path / "release" / convert_pretrained.CONFIG_NAME
    config_file.write_text(json.dumps(dict(json.loads(config_file.read_text()), output_dim=256)))
    with pytest.raises(ValueError, match="config.json says output_dim=256, but the weights have "
                                         "output_dim=128"):
        convert_pretrained.convert(tmp_path / "release", tmp_path / "ours")
