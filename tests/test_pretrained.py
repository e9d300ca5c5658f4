"""Released BigGAN-deep: converter, per-truncation BN statistics, sampling API and CLI (no torch).

The state dict is built here in numpy with pytorch-pretrained-biggan's names and layouts (tiny
widths), its spectral-norm vectors set as the release's converter sets them: v = l2n(W^T u0),
u = l2n(W v).
"""

import json
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from biggan import convert_pretrained, pretrained, sample
from biggan import model as biggan_model

LAYERS_128 = [(False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8),
              (True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1)]
CH, Z, CLASSES = 4, 8, 10


def _normalize(x):
    return x / np.linalg.norm(x)


def synthetic_state_dict(seed=0, consistent_sn=True):
    """pytorch-pretrained-biggan's BigGAN-deep 128 state dict (channel_width 4, z 8, 10 classes)."""
    rng = np.random.default_rng(seed)
    sd = {}

    def tensor(name, *shape, scale=0.3):
        sd[name] = (scale * rng.standard_normal(shape)).astype(np.float32)

    def sn(prefix, *shape, bias=True):
        tensor(prefix + "weight_orig", *shape)
        w = sd[prefix + "weight_orig"].reshape(shape[0], -1).astype(np.float64)
        v = _normalize(w.T @ rng.standard_normal(shape[0]))
        u = _normalize(w @ v)
        if not consistent_sn:          # u != l2n(W v), as a file saved without a forward pass
            u = _normalize(u + 0.3 * rng.standard_normal(shape[0]))
        sd[prefix + "weight_u"] = u.astype(np.float32)
        sd[prefix + "weight_v"] = v.astype(np.float32)
        if bias:
            tensor(prefix + "bias", shape[0])

    def bn(prefix, channels):
        tensor(prefix + "running_means", 51, channels)
        sd[prefix + "running_vars"] = rng.uniform(0.5, 2.0, (51, channels)).astype(np.float32)

    tensor("embeddings.weight", Z, CLASSES)
    sn("generator.gen_z.", 4 * 4 * 16 * CH, 2 * Z)
    for i, (_, a, b) in enumerate(LAYERS_128):
        if i == 8:
            c = a * CH
            for name, (out, inp) in dict(theta=(c // 8, c), phi=(c // 8, c), g=(c // 2, c),
                                         o_conv=(c, c // 2)).items():
                sn(f"generator.layers.8.snconv1x1_{name}.", out, inp, 1, 1, bias=False)
            tensor("generator.layers.8.gamma", 1)
        prefix = f"generator.layers.{i + (i >= 8)}."
        c, out = a * CH, b * CH
        for k, (channels, conv_shape) in enumerate([(c, (c // 4, c, 1, 1)),
                                                    (c // 4, (c // 4, c // 4, 3, 3)),
                                                    (c // 4, (c // 4, c // 4, 3, 3)),
                                                    (c // 4, (out, c // 4, 1, 1))]):
            bn(f"{prefix}bn_{k}.", channels)
            sn(f"{prefix}bn_{k}.scale.", channels, 2 * Z, bias=False)
            sn(f"{prefix}bn_{k}.offset.", channels, 2 * Z, bias=False)
            sn(f"{prefix}conv_{k}.", *conv_shape)
    bn("generator.bn.", CH)
    sd["generator.bn.weight"] = rng.uniform(0.5, 1.5, CH).astype(np.float32)
    tensor("generator.bn.bias", CH)
    sn("generator.conv_to_rgb.", CH, CH, 3, 3)
    return sd


def file_sigma(sd, prefix):
    w = sd[prefix + "weight_orig"].astype(np.float64)
    return sd[prefix + "weight_u"] @ w.reshape(w.shape[0], -1) @ sd[prefix + "weight_v"]


@pytest.fixture(scope="module")
def state():
    return synthetic_state_dict()


@pytest.fixture(scope="module")
def converted(state):
    return convert_pretrained.convert_state_dict(state)


@pytest.fixture(scope="module")
def pretrained_dir(converted, tmp_path_factory):
    cfg, variables, report = converted
    return pretrained.save(tmp_path_factory.mktemp("biggan") / "deep128", cfg, variables, report)


def test_converter_reads_sizes_and_layouts(state, converted):
    cfg, variables, report = converted
    assert (cfg.resolution, cfg.g_ch, cfg.z_dim, cfg.shared_dim, cfg.num_classes) == (
        128, CH, Z, Z, CLASSES)
    params, tables = variables["params"], variables["bn_tables"]
    np.testing.assert_array_equal(params["shared_embedding"]["embedding"],
                                  state["embeddings.weight"].T)
    np.testing.assert_array_equal(params["linear"]["dense"]["kernel"],
                                  state["generator.gen_z.weight_orig"].T)
    # GBlock 8 follows the non-local block, which is layer 8 of the release's list.
    conv = state["generator.layers.9.conv_1.weight_orig"]
    np.testing.assert_array_equal(params["block8"]["conv1"]["conv"]["kernel"],
                                  conv.transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(params["block7"]["bn2"]["offset"]["dense"]["kernel"],
                                  state["generator.layers.7.bn_2.offset.weight_orig"].T)
    assert params["attention"]["gamma"].shape == ()
    assert params["attention"]["gamma"] == state["generator.layers.8.gamma"][0]
    np.testing.assert_array_equal(params["bn_out"]["scale"], state["generator.bn.weight"])
    np.testing.assert_array_equal(tables["block9"]["bn3"]["bn"]["var"],
                                  state["generator.layers.10.bn_3.running_vars"])
    np.testing.assert_array_equal(tables["bn_out"]["mean"], state["generator.bn.running_means"])
    assert report["sn_max_relative_sigma_error"] < 1e-7
    # With 8 channels at 64x64, theta and phi have one output: their sigma is exact already.
    assert report["rescaled_kernels"] == ["attention/phi/conv/kernel",
                                          "attention/theta/conv/kernel"]


@pytest.mark.parametrize("consistent", [True, False])
def test_flax_spectral_norm_reproduces_the_files_sigma(consistent):
    """Flax's SN (one power iteration from the stored u) of every stored kernel gives PyTorch's
    eval W / (u . W v); the eps under Flax's square roots alone would miss it by ~1e-4."""
    sd = synthetic_state_dict(seed=1, consistent_sn=consistent)
    cfg, variables, _ = convert_pretrained.convert_state_dict(sd)
    z, y, _ = biggan_model.example_inputs(cfg, batch=2)
    g_vars = {"params": variables["params"], "spectral": variables["spectral"],
              "batch_stats": pretrained.batch_stats_for_truncation(variables["bn_tables"], 0.5)}
    _, updated = biggan_model.build_generator(cfg).apply(g_vars, z, y, train=True,
                                                   mutable=["spectral", "batch_stats"])
    leaves = jax.tree_util.tree_flatten_with_path(updated["spectral"])[0]
    checked = 0
    for path, sigma in leaves:
        keys = [p.key for p in path]
        if not keys[-1].endswith("/sigma"):
            continue
        kernel_path = (*keys[:-2], *keys[-1].split("/")[:-1])
        prefix = convert_pretrained.torch_name(kernel_path).removesuffix("weight_orig")
        kernel = variables["params"]
        for key in kernel_path:
            kernel = kernel[key]
        scale = np.linalg.norm(kernel) / np.linalg.norm(sd[prefix + "weight_orig"])
        np.testing.assert_allclose(float(sigma) / scale, file_sigma(sd, prefix), rtol=2e-6)
        checked += 1
    assert checked == 1 + 10 * 12 + 4 + 1


def test_spectral_u_when_power_iteration_has_converged():
    """u, v the top singular pair (a fully converged power iteration): no u reaches the file's
    sigma, so the kernel is rescaled to sigma 32, where Flax's epsilon is negligible."""
    rng = np.random.default_rng(0)
    w = 0.1 * rng.standard_normal((6, 9))
    left, s, right = np.linalg.svd(w)
    u, scale, sigma, error = convert_pretrained.spectral_u(w, left[:, 0], right[0], eps=1e-4)
    assert sigma == pytest.approx(s[0]) and scale == pytest.approx(32 / s[0])
    assert error < 1e-7
    assert convert_pretrained.flax_sigma(scale * w, u.astype(np.float64), 1e-4) == pytest.approx(
        scale * s[0], rel=1e-7)
    # One power step from a random u (the parity tier's PyTorch models): reached without rescaling.
    v = _normalize(w.T @ rng.standard_normal(6))
    u, scale, sigma, error = convert_pretrained.spectral_u(w, _normalize(w @ v), v, eps=1e-4)
    assert scale == 1.0 and error < 1e-7


def test_truncation_weights_reproduce_the_release_quirks():
    assert pretrained.truncation_weights(0.4) == ((20, 1.0),)
    assert pretrained.truncation_weights(1.0) == ((50, 1.0),)
    # Swapped weights: 0.405 is a quarter of the way from 0.40 to 0.42 but gets 0.75 of 0.42.
    (i, wi), (j, wj) = pretrained.truncation_weights(0.405)
    assert (i, j) == (20, 21) and wi == pytest.approx(0.25) and wj == pytest.approx(0.75)
    # 0.14 / 0.02 = 7.000000000000001 in float64: the 0.16 table with weight ~1.
    (i, wi), (j, wj) = pretrained.truncation_weights(0.14)
    assert (i, j) == (7, 8) and 0 < wi < 1e-14 and wj == pytest.approx(1.0)
    # 0.58 / 0.02 = 28.999999999999996: the 0.56 table with weight ~1.
    (i, wi), (j, wj) = pretrained.truncation_weights(0.58)
    assert (i, j) == (28, 29) and wi == pytest.approx(1.0) and 0 < wj < 1e-14
    for bad in (0.0, -0.1, 1.01):
        with pytest.raises(ValueError, match=r"outside \(0, 1\]"):
            pretrained.truncation_weights(bad)


def test_interpolated_statistics_in_float32():
    table = np.random.default_rng(0).standard_normal((51, 5)).astype(np.float32)
    np.testing.assert_array_equal(pretrained.interpolate_table(table, 0.4), table[20])
    expected = table[20] * np.float32(0.25) + table[21] * np.float32(0.75)
    got = pretrained.interpolate_table(table, 0.405)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    stats = pretrained.batch_stats_for_truncation({"bn": {"mean": table, "var": table}}, 0.14)
    np.testing.assert_allclose(stats["bn"]["mean"], table[8], rtol=1e-6)


def test_non_biggan_state_dict_is_refused():
    sd = {"conv1.weight": np.zeros((8, 3, 3, 3)), "bn1.running_mean": np.zeros(8)}
    with pytest.raises(ValueError, match="Expected a pytorch-pretrained-biggan BigGAN-deep"
                                         ".*found 2 tensors named conv1.weight, bn1.running_mean"):
        convert_pretrained.convert_state_dict(sd)


def test_other_resolution_is_refused(state):
    with pytest.raises(ValueError, match=r"Expected the BigGAN-deep 256 generator \(12 GBlocks\); "
                                         r"found the BigGAN-deep 128 one \(10 GBlocks\)"):
        convert_pretrained.convert_state_dict(state, expected_resolution=256)
    with pytest.raises(ValueError, match="config.json says output_dim=512, but the weights have "
                                         "output_dim=128"):
        convert_pretrained.convert_state_dict(state, release_config={"output_dim": 512})
    truncated = {k: v for k, v in state.items() if not k.startswith("generator.layers.10.")}
    with pytest.raises(ValueError, match="Expected 10, 12 or 14 GBlocks .*; found 9"):
        convert_pretrained.convert_state_dict(truncated)


def test_mismatched_or_extra_tensors_are_named(state):
    wrong = dict(state)
    wrong["generator.layers.3.conv_2.weight_orig"] = np.zeros((8, 8, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"generator.layers.3.conv_2.weight_orig: found shape "
                                         r"\(8, 8, 3, 3\), expected \(3, 3, 16, 16\)"):
        convert_pretrained.convert_state_dict(wrong)
    extra = dict(state, **{"generator.extra.weight": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="does not use: generator.extra.weight"):
        convert_pretrained.convert_state_dict(extra)
    fewer_stats = {k: v[:11] if "running" in k else v for k, v in state.items()}
    with pytest.raises(ValueError, match="tables for 51 truncation values; found 11"):
        convert_pretrained.convert_state_dict(fewer_stats)


def test_read_input_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="No pytorch_model.bin"):
        convert_pretrained.read_input(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"not a checkpoint")
    monkeypatch.setitem(sys.modules, "torch", None)       # as if the [torch] extra were absent
    with pytest.raises(ImportError, match=r"pip install -e '.\[torch\]'"):
        convert_pretrained.read_input(tmp_path)


def test_saved_directory_round_trips_and_samples(converted, pretrained_dir):
    cfg, variables, _ = converted
    metadata = json.loads((pretrained_dir / pretrained.METADATA_FILE).read_text())
    assert metadata["resolution"] == 128 and metadata["truncation_grid"]["num"] == 51
    generator = pretrained.load(pretrained_dir)
    for name in ("params", "spectral", "bn_tables"):
        jax.tree.map(np.testing.assert_array_equal, getattr(generator, name), variables[name])
    z = np.random.default_rng(0).uniform(-0.4, 0.4, (2, Z)).astype(np.float32)
    labels = np.array([3, 7])
    images = pretrained.sample(pretrained_dir, z, labels, 0.4)
    assert images.shape == (2, 128, 128, 3) and images.dtype == np.float32
    assert np.all(np.abs(images) <= 1) and images.std() > 1e-3
    np.testing.assert_array_equal(generator(z, labels, 0.4), images)
    assert np.abs(generator(z, labels, 0.8) - images).max() > 1e-4   # statistics follow truncation


@pytest.mark.parametrize("consistent", [True, False])
def test_sampling_skips_the_power_iteration_without_changing_images(consistent):
    """The sampler divides each kernel by its stored sigma once and runs no power iteration;
    G's own eval apply (one power iteration from the stored u per call) gives the same images."""
    cfg, variables, _ = convert_pretrained.convert_state_dict(
        synthetic_state_dict(seed=2, consistent_sn=consistent))
    generator = pretrained.PretrainedGenerator(cfg, variables["params"], variables["spectral"],
                                               variables["bn_tables"])
    sigma = variables["spectral"]["block3"]["conv1"]["SpectralNorm_0"]["conv/kernel/sigma"]
    np.testing.assert_allclose(generator.normalized_params["block3"]["conv1"]["conv"]["kernel"],
                               variables["params"]["block3"]["conv1"]["conv"]["kernel"] / sigma,
                               rtol=1e-6)
    z = np.random.default_rng(3).uniform(-0.5, 0.5, (2, Z)).astype(np.float32)
    labels = np.array([1, 4])
    g_vars = {"params": variables["params"], "spectral": variables["spectral"],
              "batch_stats": pretrained.batch_stats_for_truncation(variables["bn_tables"], 0.5)}
    want = biggan_model.build_generator(cfg).apply(g_vars, z, labels, train=False)
    got = generator(z, labels, 0.5)
    assert np.abs(want).max() > 0.1
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_sampling_input_errors(pretrained_dir, tmp_path):
    generator = pretrained.load(pretrained_dir)
    z = np.zeros((2, Z), np.float32)
    with pytest.raises(ValueError, match=r"expected \[batch, 8\]"):
        generator(np.zeros((2, 128)), np.array([0, 1]), 0.4)
    with pytest.raises(ValueError, match=r"class indices in \[0, 10\)"):
        generator(z, np.array([0, 10]), 0.4)
    with pytest.raises(ValueError, match="2 integers"):
        generator(z, np.array([0.5, 1.0]), 0.4)
    with pytest.raises(ValueError, match="outside"):
        generator(z, np.array([0, 1]), 0.0)
    with pytest.raises(FileNotFoundError, match="not a converted BigGAN-deep directory"):
        pretrained.load(tmp_path)
    with pytest.raises(FileExistsError, match="choose an empty --output"):
        pretrained.save(pretrained_dir, generator.cfg, {}, {})


def test_sample_helpers(tmp_path):
    np.testing.assert_array_equal(sample.sheet_labels([207, 980], 3), [207] * 3 + [980] * 3)
    z = sample.latents(6, Z, 0.3, seed=0)
    assert z.shape == (6, Z) and np.abs(z).max() <= 0.3
    np.testing.assert_array_equal(sample.latents(6, Z, 0.3, seed=0), z)
    np.save(tmp_path / "z.npy", z[:4])
    with pytest.raises(ValueError, match=r"shape \(4, 8\); expected \(6, 8\)"):
        sample.latents(6, Z, 0.3, seed=0, z_npy=str(tmp_path / "z.npy"))
    calls = []

    def sampler(zb, yb):
        calls.append(len(zb))
        return np.broadcast_to(yb[:, None, None, None] / 10.0, (len(zb), 2, 2, 3))

    images = sample.generate(sampler, z[:5], np.arange(5), batch_size=2)
    assert calls == [2, 2, 2] and images.shape == (5, 2, 2, 3)
    np.testing.assert_allclose(images[:, 0, 0, 0], np.arange(5) / 10.0)


def test_release_z_is_the_truncation_times_a_normal_truncated_to_two():
    """The release's z at truncation s: s * N(0, 1) truncated to [-2, 2] (std 0.8796 s), not
    the paper's threshold (|z| <= s)."""
    z = sample.latents(2000, 64, 0.5, seed=0, latent=sample.RELEASE_LATENT)
    assert z.shape == (2000, 64) and np.abs(z).max() <= 1.0
    assert np.mean(np.abs(z) > 0.5) > 0.25          # a threshold of 0.5 would leave none
    np.testing.assert_allclose(z.std(), 0.5 * 0.87962, rtol=0.01)
    np.testing.assert_array_equal(
        z, np.asarray(pretrained.draw_z(jax.random.key(0), (2000, 64), 0.5)))
    with pytest.raises(ValueError, match="outside"):
        pretrained.draw_z(jax.random.key(0), (2, 64), 1.5)


def test_sample_run_writes_npy_and_png(pretrained_dir, tmp_path):
    generator = pretrained.load(pretrained_dir)
    sampler, z_dim = sample.pretrained_sampler(str(pretrained_dir), 0.5)
    z = np.random.default_rng(1).uniform(-0.5, 0.5, (4, Z)).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    npy, png = str(tmp_path / "images.npy"), str(tmp_path / "sheet.png")
    sample.run(sampler, z_dim, [1, 2], 2, 0.5, seed=0, out=npy, z_npy=str(tmp_path / "z.npy"),
               batch_size=2)
    np.testing.assert_allclose(np.load(npy), generator(z, np.array([1, 1, 2, 2]), 0.5),
                               atol=1e-6)
    sample.run(sampler, z_dim, [1, 2], 2, 0.5, seed=3, out=png, batch_size=2)
    assert Image.open(png).size == (2 * 130 + 2, 2 * 130 + 2)   # 2 classes x 2 images, 2px gaps
    with pytest.raises(ValueError, match="outside"):
        sample.pretrained_sampler(str(pretrained_dir), 1.5)
