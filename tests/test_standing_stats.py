"""Standing statistics (Appendix C.1): samples independent of batch size and device count."""

import jax
import numpy as np
import pytest

from biggan import model as biggan_model
from biggan import standing_stats
from biggan.latents import sample_latents
from configs.biggan.digits import get_config
from gencore.sharding import batch_sharded, make_mesh


@pytest.fixture(scope="module")
def tiny():
    cfg = get_config().model
    cfg.update(g_ch=4, z_dim=48, shared_dim=8)
    g_vars, _ = biggan_model.init_variables(cfg, jax.random.key(0))
    params = g_vars["params"]
    g_state = {k: v for k, v in g_vars.items() if k != "params"}
    return cfg, params, g_state


def to_numpy(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def test_one_sample_alone_equals_it_inside_a_batch_on_1_and_8_devices(tiny):
    cfg, params, g_state = tiny
    assert jax.device_count() == 8
    stats = {}
    for n in (1, 8):
        mesh = make_mesh(jax.devices()[:n])
        stats[n] = to_numpy(standing_stats.standing_stats(
            cfg, params, g_state, jax.random.key(1), 1.0, passes=3, batch_size=16, mesh=mesh))
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
                           stats[1], stats[8])
    # The statistics are the averaged batch statistics, not the initial running ones.
    assert not np.allclose(stats[8]["bn_out"]["var"], g_state["batch_stats"]["bn_out"]["var"])

    sample = standing_stats.make_sampler(cfg)
    z, y = sample_latents(jax.random.key(2), 64, cfg.z_dim, cfg.num_classes, truncation=1.0)
    alone = {}
    for n in (1, 8):
        state = standing_stats.with_standing_stats(g_state, stats[n])
        placed = [jax.device_put(a, batch_sharded(make_mesh(jax.devices()[:n]))) for a in (z, y)]
        batch = np.asarray(sample(params, state, *placed))
        alone[n] = np.asarray(sample(params, state, z[5:6], y[5:6]))
        np.testing.assert_allclose(alone[n][0], batch[5], atol=1e-5)
    np.testing.assert_allclose(alone[1], alone[8], atol=1e-5)


def test_statistics_depend_on_the_truncation(tiny):
    cfg, params, g_state = tiny

    def stats(truncation):
        return to_numpy(standing_stats.standing_stats(
            cfg, params, g_state, jax.random.key(1), truncation, passes=2, batch_size=16))

    low, high = stats(0.25), stats(2.0)
    # G's first BN sees h = linear(z chunk); its variance grows with the spread of z.
    assert np.mean(low["block0"]["bn1"]["bn"]["var"]) < np.mean(high["block0"]["bn1"]["bn"]["var"])
