"""launch.compile_check: topology names and the messages need no libtpu (default suite);
compiles for compile-only TPU devices are the ``tpu`` tier (``pytest -m tpu``, needs the
``tpu`` extra; the digits smoke case takes about a minute on a 2-core host)."""

import json

import pytest

from launch import compile_check


@pytest.mark.parametrize("name, topology, devices", [
    ("v3-8", "v3:2x2", 8), ("v3-128", "v3:8x8", 128), ("v3-512", "v3:16x16", 512),
    ("v3:8x8", "v3:8x8", 128), ("v4-8", "v4:2x2x1", 4), ("v5litepod-16", "v5e:4x4", 16),
    ("v5p-32", "v5p:2x2x4", 16), ("v6e-256", "v6e:16x16", 256)])
def test_parse_topology(name, topology, devices):
    parsed = compile_check.parse_topology(name)
    assert (parsed.topology, parsed.num_devices) == (topology, devices)


@pytest.mark.parametrize("name", ["v3-100", "v3-7", "v9-8", "tpu", "v3:3x3"])
def test_unknown_topology_lists_valid_names(name):
    with pytest.raises(ValueError, match="valid: .*v3-128"):
        compile_check.parse_topology(name)


def test_bad_topology_exits_2(capsys):
    status = compile_check.main(["compile_check", "--config=configs/biggan/digits.py",
                                 "--topology=v3-100"])
    assert status == 2
    assert "v3-256" in capsys.readouterr().err


def test_without_libtpu_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setattr(compile_check, "libtpu_available", lambda: False)
    status = compile_check.main(["compile_check", "--config=configs/biggan/digits.py",
                                 "--topology=v3-8"])
    assert status == 2
    assert "pip install -e '.[tpu]'" in capsys.readouterr().err


needs_libtpu = pytest.mark.skipif(not compile_check.libtpu_available(),
                                  reason="needs the tpu extra (libtpu)")


@pytest.mark.tpu
@needs_libtpu
def test_digits_fits_v3_8(capsys):
    status = compile_check.main(["compile_check", "--config=configs/biggan/digits.py",
                                 "--topology=v3:2x2", "--batch=16", "--json"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert status == 0
    assert report["devices"] == 8 and report["micro_batch_per_device"] == 2
    assert report["train"]["fits"] and report["sample"]["fits"]
    assert 0 < report["train"]["total_bytes"] < report["hbm_per_device_bytes"]
    assert report["flops_per_step"] > 0 and report["step_s_at_peak"] > 0


@pytest.mark.tpu
@needs_libtpu
def test_oversized_program_does_not_fit():
    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    topology = compile_check.parse_topology("v3-8")
    compile_check.prepare_environment()
    mesh = Mesh(np.asarray(compile_check.tpu_devices(topology)), ("d",))
    per_device = 20 * 2**30 // 4   # 20 GiB of float32 per core, more than a v3 core's HBM
    x = jax.ShapeDtypeStruct((8 * per_device,), np.float32,
                             sharding=NamedSharding(mesh, PartitionSpec("d")))
    figures = compile_check.compile_figures(jax.jit(lambda a: a * 2), (x,),
                                            topology.chip.hbm_per_device)
    assert not figures["fits"]
