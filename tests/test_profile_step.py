"""The grouping of a compiled program's instructions that `benchmarks/profile_step.py` sums
its profile by (`step_flops.instruction_groups`)."""

import pathlib
import sys

import jax
import jax.numpy as jnp
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))

import step_flops  # noqa: E402

from gencore.conv import conv_same  # noqa: E402


def test_instructions_are_grouped_by_kind_and_pass():
    class UNet:   # the name the grouping looks for in the name stack
        @staticmethod
        def apply(w, v, x):
            with jax.named_scope("UNet"):
                return jnp.tanh(conv_same(x, w)) @ v

    def loss(w, v, x):
        return jnp.sum(UNet.apply(w, v, x) ** 2)

    args = (jnp.ones((3, 3, 16, 16)), jnp.ones((16, 8)), jnp.ones((4, 16, 16, 16)))
    compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(*args).compile()
    groups = step_flops.instruction_groups(compiled.as_text())
    pairs = {(g["pass"], g["kind"]) for g in groups.values()}
    assert ("forward", "convolution") in pairs
    assert ("backward", "matmul") in pairs or ("backward", "convolution") in pairs
    assert {g["kind"] for g in groups.values()} <= {
        "convolution", "matmul", "copy / transpose", "fusion", "other"}
    fused = [g for name, g in groups.items() if "fusion" in name]
    assert fused and all(g["kind"] != "other" for g in fused)


@pytest.mark.parametrize("text,kind", [
    ("%copy.1 = f32[4]{0} copy(%p)", "copy / transpose"),
    ("%add.2 = f32[4]{0} add(%p, %p)", "other"),
    ("%dot.3 = f32[4,4]{1,0} dot(%p, %p), lhs_contracting_dims={1}, rhs_contracting_dims={0}",
     "matmul"),
])
def test_single_instructions(text, kind):
    assert step_flops.instruction_groups(f"ENTRY %main {{\n  {text}\n}}")[text.split()[0][1:]][
        "kind"] == kind
