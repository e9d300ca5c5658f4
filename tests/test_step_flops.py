"""benchmarks/step_flops.py: the analytic count on a conv + dense model by hand, the HLO parse
against XLA's cost analysis, and the digits BigGAN step against XLA's count (no timing)."""

import pathlib
import sys

import jax
import jax.numpy as jnp
import pytest
from jax import lax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))

import step_flops  # noqa: E402
import train_step_flops  # noqa: E402

from gencore.config_util import load_config  # noqa: E402

B, H, CIN, COUT, OUT = 2, 4, 3, 5, 7
CONV_DENSE = 2 * B * H * H * 9 * CIN * COUT          # 8640: every tap, padding included
CONV_VALID = 2 * B * COUT * CIN * (3 * H - 2) ** 2   # 6000: taps on the 4x4 input only
DENSE = 2 * B * (H * H * COUT) * OUT                 # 2240


def tiny(params: dict, x: jax.Array) -> jax.Array:
    """3x3 'SAME' conv [2,4,4,3] -> [2,4,4,5], then a dense layer on the flattened map -> [2,7];
    plus a weight-only product under stop_gradient (a stand-in for a power iteration)."""
    h = lax.conv_general_dilated(x, params["conv"], (1, 1), "SAME",
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
    u = lax.stop_gradient(params["dense"].T @ jnp.ones((H * H * COUT,)))   # 2 * 7 * 80
    return jnp.dot(h.reshape(B, -1), params["dense"]) + u.sum()


def tiny_args() -> tuple[dict, jax.Array]:
    return ({"conv": jnp.ones((3, 3, CIN, COUT)), "dense": jnp.ones((H * H * COUT, OUT))},
            jnp.ones((B, H, H, CIN)))


def test_tiny_model_count_by_hand():
    ops = step_flops.matmul_ops(tiny, tiny_args(), (True, False), (False, True))
    conv, weight, dense = ops
    assert (conv.dense, conv.valid, conv.passes) == (CONV_DENSE, CONV_VALID, 2)  # no input grad
    assert (dense.dense, dense.passes, dense.per_example) == (DENSE, 3, True)
    assert (weight.dense, weight.passes, weight.per_example) == (2 * OUT * H * H * COUT, 1, False)
    total = step_flops.summarize(ops)
    assert total["forward"] == CONV_DENSE + DENSE
    assert total["train"] == 2 * CONV_DENSE + 3 * DENSE                       # 24000
    assert total["train_xla_convention"] == 2 * CONV_VALID + 3 * DENSE        # 18720
    # Forward only (nothing differentiated): every product once.
    forward = step_flops.summarize(step_flops.matmul_ops(tiny, tiny_args(), (False, False),
                                                         (False, True)))
    assert forward["train"] == forward["forward"] == CONV_DENSE + DENSE


def test_hlo_parse_matches_xla_on_the_tiny_gradient():
    def loss(params, x):
        return jnp.sum(tiny(params, x) ** 2)

    compiled = jax.jit(jax.grad(loss)).lower(*tiny_args()).compile()
    parts = step_flops.xla_breakdown(compiled.as_text())
    # XLA's own conv gradients (no custom VJP here): padding taps uncounted in all passes.
    assert parts["other_matmuls"] == 2 * CONV_VALID + 3 * DENSE + 2 * OUT * H * H * COUT
    assert sum(parts.values()) == pytest.approx(compiled.cost_analysis()["flops"], rel=0.02)


def test_digits_biggan_step_against_xla():
    """One D step (two in the config; one compiles faster) at batch 8: XLA's products equal the
    analytic count in XLA's convention (no taps on padding), the reconciliation's parts add up
    to XLA's count, and apart from the padding taps (11% on these 4-16 px maps) the two are
    within 5% (the rest is element-wise work, the optimiser and the EMA)."""
    config = load_config("configs/biggan/digits.py")
    config.train.update(num_d_steps=1, batch_size=8)
    analytic = step_flops.biggan_step_flops(config)["step"]
    compiled = train_step_flops.compiled_step(config)
    xla = compiled.cost_analysis()["flops"]
    parts = step_flops.xla_breakdown(compiled.as_text())
    products = parts["network_matmuls"] + parts.get("other_matmuls", 0.0)
    assert products == pytest.approx(analytic["train_xla_convention"], rel=1e-3)
    rec = train_step_flops.reconciliation(analytic, xla, parts)
    assert analytic["train"] + sum(rec.values()) == pytest.approx(xla, rel=1e-9)
    assert abs(rec["not_parsed"]) < 0.01 * xla
    assert xla - rec["conv_padding_taps"] == pytest.approx(analytic["train"], rel=0.05)
