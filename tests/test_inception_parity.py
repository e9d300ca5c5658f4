"""Parity with pytorch-fid (optional tier): same random weights -> same features; same FID.

Needs torch, torchvision and pytorch-fid next to jax/flax. torchvision has no CPU build on the
registry, so use the default (CUDA) torch in a separate virtual environment (~5.6 GB; runs on
a CPU):

    python -m venv /tmp/fidvenv
    /tmp/fidvenv/bin/pip install torch==2.14.1 torchvision pytorch-fid jax==0.10.2 \
        flax==0.12.8 ml_collections scikit-learn pytest
    /tmp/fidvenv/bin/python -m pytest -m torch tests/test_inception_parity.py -p no:cacheprovider

pytorch-fid's network is built by pytorch-fid itself (`InceptionV3`, `fid_inception_v3`) with its
weight download replaced by a random state dict of the same names and shapes.
"""

from unittest import mock

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
pytorch_fid_inception = pytest.importorskip("pytorch_fid.inception")
fid_score = pytest.importorskip("pytorch_fid.fid_score")

import jax.numpy as jnp  # noqa: E402

from gencore import convert_inception, inception, metrics  # noqa: E402

pytestmark = pytest.mark.torch


def _random_state_dict(seed: int = 0) -> dict:
    """Random weights under pytorch-fid's names (torchvision's Inception-v3, 1008 classes)."""
    state = torchvision.models.inception_v3(
        num_classes=1008, aux_logits=False, init_weights=False
    ).state_dict()
    gen = torch.Generator().manual_seed(seed)
    for name, value in state.items():
        if name.endswith("conv.weight"):
            value.copy_(torch.randn(value.shape, generator=gen) * (2.0 / value[0].numel()) ** 0.5)
        elif name.endswith(("bn.weight", "running_var")):
            value.copy_(torch.rand(value.shape, generator=gen) + 0.5)
        elif name.endswith(("bn.bias", "running_mean")):
            value.copy_(torch.randn(value.shape, generator=gen) * 0.1)
        elif name.startswith("fc."):
            value.copy_(torch.randn(value.shape, generator=gen) * 0.02)
    return state


@pytest.fixture(scope="module")
def networks():
    """(pytorch-fid InceptionV3 without input normalisation, its fc layer, state dict)."""
    state = _random_state_dict()
    with mock.patch.object(
        pytorch_fid_inception, "load_state_dict_from_url", lambda *a, **k: state
    ):
        features_net = pytorch_fid_inception.InceptionV3(normalize_input=False).eval()
        full_net = pytorch_fid_inception.fid_inception_v3().eval()
    return features_net, full_net.fc, state


def _images(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.tanh(rng.normal(size=(3, height, width, 3))).astype(np.float32)


def _assert_relative_close(actual: np.ndarray, reference: np.ndarray, rel: float) -> None:
    """Every element within rel * (largest reference magnitude)."""
    scale = np.abs(reference).max()
    np.testing.assert_allclose(actual, reference, rtol=rel, atol=rel * scale)


@pytest.mark.parametrize("height,width", [(64, 48), (400, 333)])  # up- and downscaling to 299
def test_features_and_logits_match_pytorch_fid(networks, tmp_path, height, width):
    features_net, fc, state = networks
    images = _images(height, width, seed=height)
    with torch.no_grad():
        pool_ref = features_net(torch.from_numpy(images).permute(0, 3, 1, 2))[0][:, :, 0, 0]
        logits_ref = fc(pool_ref).numpy()
        pool_ref = pool_ref.numpy()
    # Through the converter's .pth path (torch.load(weights_only=True)).
    torch.save(state, tmp_path / inception.PTH_NAME)
    out = convert_inception.convert(tmp_path / inception.PTH_NAME, tmp_path / "flax.npz")
    variables = inception.load_variables(out)
    pool, logits = inception.InceptionV3(logits_bias=True).apply(variables, jnp.asarray(images))
    _assert_relative_close(np.asarray(pool), pool_ref, 1e-4)
    _assert_relative_close(np.asarray(logits), logits_ref, 1e-4)
    _, unbiased = inception.InceptionV3().apply(variables, jnp.asarray(images))
    _assert_relative_close(np.asarray(unbiased), logits_ref - state["fc.bias"].numpy(), 1e-4)


@pytest.mark.parametrize("in_hw", [(32, 32), (64, 48), (512, 400)])
def test_resize_matches_pytorch_fid_interpolate(in_hw):
    images = _images(*in_hw, seed=1)
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(images).permute(0, 3, 1, 2), size=(299, 299), mode="bilinear",
        align_corners=False,
    ).permute(0, 2, 3, 1).numpy()  # fmt: skip
    got = inception.resize_bilinear(jnp.asarray(images), 299, 299)
    np.testing.assert_allclose(np.asarray(got), ref, atol=1e-5)


def test_frechet_distance_matches_pytorch_fid():
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(256, 256)) / 16
    x = np.maximum(rng.normal(size=(3000, 256)) @ mixing, 0)  # correlated, ReLU-like features
    y = np.maximum(rng.normal(size=(3000, 256)) @ mixing * 1.1 + 0.05, 0)
    mu1, sigma1 = np.mean(x, axis=0), np.cov(x, rowvar=False)
    mu2, sigma2 = np.mean(y, axis=0), np.cov(y, rowvar=False)
    expected = fid_score.calculate_frechet_distance(mu1, sigma1, mu2, sigma2)
    assert metrics.frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-6)
    assert metrics.fid_from_features(x, y) == pytest.approx(expected, rel=1e-6)
