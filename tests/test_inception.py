"""FID Inception-v3: resize semantics, output shapes, weight conversion and loading (no torch)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from gencore import convert_inception, feature_extractors, inception

# pytorch-fid's network (torchvision inception_v3, 1008 classes, no aux head), counted with torch.
NUM_PARAMS = 23_850_960
NUM_BN_STATISTICS = 34_432


def _torch_bilinear(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """F.interpolate(mode='bilinear', align_corners=False, antialias=False) on [H, W] in NumPy."""

    def taps(in_size, out_size):
        src = np.maximum((np.arange(out_size) + 0.5) * in_size / out_size - 0.5, 0.0)
        lo = np.minimum(np.floor(src).astype(int), in_size - 1)
        hi = np.minimum(lo + 1, in_size - 1)
        return lo, hi, src - lo

    y0, y1, wy = taps(image.shape[0], out_h)
    x0, x1, wx = taps(image.shape[1], out_w)
    rows = image[y0] * (1 - wy)[:, None] + image[y1] * wy[:, None]
    return rows[:, x0] * (1 - wx) + rows[:, x1] * wx


@pytest.mark.parametrize(
    "in_hw,out_hw", [((7, 5), (13, 11)), ((37, 29), (11, 8)), ((8, 8), (32, 32))]
)
def test_resize_matches_pytorch_bilinear_without_antialiasing(in_hw, out_hw):
    image = np.random.default_rng(0).uniform(-1, 1, size=in_hw).astype(np.float32)
    got = inception.resize_bilinear(jnp.asarray(image)[None, :, :, None], *out_hw)[0, :, :, 0]
    np.testing.assert_allclose(np.asarray(got), _torch_bilinear(image, *out_hw), atol=1e-5)


def test_default_jax_resize_antialiases_when_downscaling():
    # Why resize_bilinear sets antialias=False: jax.image.resize's default differs from
    # PyTorch/TF on downscaling (and only there).
    image = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, size=(1, 37, 29, 1)), jnp.float32)
    antialiased = jax.image.resize(image, (1, 11, 8, 1), "bilinear")
    assert np.abs(np.asarray(antialiased - inception.resize_bilinear(image, 11, 8))).max() > 0.05
    upscaled = jax.image.resize(image, (1, 50, 40, 1), "bilinear")
    np.testing.assert_allclose(upscaled, inception.resize_bilinear(image, 50, 40), atol=1e-6)


def _random_variables(seed: int = 0) -> dict:
    """He-scaled random weights, BN statistics keeping activations O(1); made without a compile."""
    rng = np.random.default_rng(seed)
    flat = {}
    for key, shape in inception.variable_shapes().items():
        leaf = key.rsplit("/", 1)[1]
        if leaf == "kernel":
            fan_in = int(np.prod(shape[:-1]))
            flat[key] = rng.normal(size=shape) * np.sqrt(2.0 / fan_in)
        elif leaf in ("scale", "var"):
            flat[key] = rng.uniform(0.5, 1.5, size=shape)
        else:
            flat[key] = rng.normal(size=shape) * 0.1
    return {k: v.astype(np.float32) for k, v in flat.items()}


def test_variable_count_matches_pytorch_fid():
    shapes = inception.variable_shapes()

    def count(prefix: str) -> int:
        return sum(int(np.prod(s)) for k, s in shapes.items() if k.startswith(prefix))

    assert count("params/") == NUM_PARAMS
    assert count("batch_stats/") == NUM_BN_STATISTICS
    assert shapes["params/fc/kernel"] == (2048, 1008)
    assert shapes["params/Mixed_7c/branch_pool/conv/kernel"] == (1, 1, 2048, 192)


def test_forward_shapes_and_head_on_a_small_batch(tmp_path):
    flat = _random_variables()
    path = inception.save_variables(
        traverse_util.unflatten_dict(flat, sep="/"), tmp_path / "inception.npz"
    )
    extractor = feature_extractors.InceptionExtractor.from_weights(path)
    images = jnp.asarray(np.random.default_rng(2).uniform(-1, 1, size=(2, 32, 32, 3)), jnp.float32)
    pool, logits = jax.device_get(extractor.features(images))
    assert pool.shape == (2, inception.POOL_FEATURES) and logits.shape == (2, inception.NUM_CLASSES)
    assert np.all(np.isfinite(pool)) and np.all(pool >= 0)  # mean of ReLU outputs
    assert np.abs(pool[0] - pool[1]).max() > 1e-3  # depends on the image
    # Default logits are the IS convention: pool3 @ W without the softmax bias.
    expected = pool.astype(np.float64) @ flat["params/fc/kernel"]
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def _as_torch_state_dict(flat: dict) -> dict:
    """The pytorch-fid names and layouts of flat Flax variables (inverse of the converter)."""
    state = {}
    for key, value in flat.items():
        collection, *modules, leaf = key.split("/")
        name = ".".join(modules)
        if leaf == "kernel" and value.ndim == 4:
            state[f"{name}.weight"] = value.transpose(3, 2, 0, 1)
        elif leaf == "kernel":
            state[f"{name}.weight"] = value.T
        else:
            torch_leaf = {"scale": "weight", "bias": "bias", "mean": "running_mean",
                          "var": "running_var"}[leaf]  # fmt: skip
            state[f"{name}.{torch_leaf}"] = value
        if leaf == "var":
            state[f"{name}.num_batches_tracked"] = np.array(0)
    return state


def test_converter_round_trip_from_an_npz_state_dict(tmp_path):
    flat = _random_variables(seed=3)
    state = _as_torch_state_dict(flat)
    assert state["Mixed_5b.branch5x5_2.conv.weight"].shape == (64, 48, 5, 5)
    assert state["fc.weight"].shape == (1008, 2048)
    np.savez(tmp_path / "state.npz", **state)
    out = convert_inception.convert(tmp_path / "state.npz", tmp_path / "flax.npz")
    loaded_flat = traverse_util.flatten_dict(inception.load_variables(out), sep="/")
    assert set(loaded_flat) == set(flat)
    for key in flat:
        np.testing.assert_array_equal(loaded_flat[key], flat[key])


def test_converter_names_missing_and_misshapen_entries():
    state = _as_torch_state_dict(_random_variables(seed=4))
    del state["Mixed_6b.branch7x7_2.bn.running_var"]
    state["Conv2d_1a_3x3.conv.weight"] = np.zeros((32, 3, 5, 5), np.float32)
    with pytest.raises(ValueError) as error:
        convert_inception.state_dict_to_flat_variables(state)
    message = str(error.value)
    assert "missing: batch_stats/Mixed_6b/branch7x7_2/bn/var" in message
    assert "params/Conv2d_1a_3x3/conv/kernel: (5, 5, 3, 32) != expected (3, 3, 3, 32)" in message
    with pytest.raises(ValueError, match="AuxLogits.fc.weight"):
        convert_inception.state_dict_to_flat_variables({"AuxLogits.fc.weight": np.zeros((2, 2))})


def test_missing_weights_raise_a_message_saying_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.delenv(inception.WEIGHTS_ENV_VAR, raising=False)
    with pytest.raises(inception.InceptionWeightsNotFoundError) as error:
        feature_extractors.create_feature_extractor("inception")
    message = str(error.value)
    assert inception.PTH_NAME in message and "python -m gencore.convert_inception" in message
    assert inception.WEIGHTS_ENV_VAR in message and "pytorch-fid" in message
    with pytest.raises(FileNotFoundError, match="does not exist"):
        inception.resolve_weights_path(tmp_path / "nothing.npz")
    pth = tmp_path / inception.PTH_NAME
    pth.write_bytes(b"")
    with pytest.raises(inception.InceptionWeightsNotFoundError, match="convert it first"):
        inception.resolve_weights_path(pth)
    weights = tmp_path / "inception.npz"
    weights.write_bytes(b"")
    monkeypatch.setenv(inception.WEIGHTS_ENV_VAR, str(weights))
    assert inception.resolve_weights_path() == weights
    assert inception.resolve_weights_path("") == weights  # an empty config value defers to env
