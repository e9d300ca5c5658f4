"""'SAME' stride-1 convolutions (NHWC x HWIO -> NHWC) that are also fast on XLA:CPU.

XLA:CPU computes a 3x3 conv's kernel gradient many times slower than the forward convolution.
Of the kernel gradients timed with `benchmarks/conv_cpu.py` (XLA's own, Winograd F(2x2, 3x3),
one GEMM per kernel tap), one GEMM per tap was the fastest; the rule below was chosen by that
measurement (figures in benchmarks/README.md). `conv_same` therefore, when the program is
lowered for the CPU, computes

- 3x3 kernels with `conv3x3_cpu`: XLA's forward convolution with a custom gradient: the input
  gradient is again a forward convolution (flipped, transposed kernel), the kernel gradient
  nine GEMMs over the batch and positions (`conv3x3_kernel_grad`);
- 1x1 kernels as one matrix product over the channels (its gradients are matrix products).

Other platforms (GPU, TPU, also when compiled ahead of time on a CPU host) lower XLA's own
convolution: the choice is `lax.platform_dependent`, made when the program is lowered.
Every path computes the same function; they differ only in float32 rounding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def conv_xla(x: jax.Array, w: jax.Array) -> jax.Array:
    """'SAME' stride-1 convolution x [B, H, W, Cin] * w [kh, kw, Cin, Cout] -> [B, H, W, Cout],
    XLA's convolution and gradients."""
    return lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def conv1x1(x: jax.Array, w: jax.Array) -> jax.Array:
    """1x1 convolution as a matrix product over channels: x [..., Cin], w [1, 1, Cin, Cout]."""
    return jnp.dot(x, w[0, 0])


def conv3x3_input_grad(dy: jax.Array, w: jax.Array) -> jax.Array:
    """Input gradient of a 3x3 'same' conv: a forward conv of dy [B, H, W, Cout] with the
    flipped, transposed kernel w [3, 3, Cin, Cout] -> [B, H, W, Cin]."""
    return conv_xla(dy, jnp.flip(w, (0, 1)).swapaxes(2, 3))


def conv3x3_kernel_grad(x: jax.Array, dy: jax.Array) -> jax.Array:
    """Kernel gradient of a 3x3 'same' conv, x [B, H, W, Cin], dy [B, H, W, Cout] ->
    [3, 3, Cin, Cout]: one GEMM [Cin, BHW] x [BHW, Cout] per kernel tap (shifted x)."""
    b, hgt, wid, cin = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    dy = dy.reshape(-1, dy.shape[-1])
    taps = [[lax.dot_general(xp[:, r:r + hgt, c:c + wid].reshape(-1, cin), dy,
                             (((0,), (0,)), ((), ()))) for c in range(3)] for r in range(3)]
    return jnp.stack([jnp.stack(row) for row in taps])


@jax.custom_vjp
def conv3x3_cpu(x: jax.Array, w: jax.Array) -> jax.Array:
    """3x3 'same' conv x [B, H, W, Cin] * w [3, 3, Cin, Cout]: XLA's forward convolution, with
    `conv3x3_input_grad` and `conv3x3_kernel_grad` as its gradients."""
    return conv_xla(x, w)


def _conv3x3_cpu_fwd(x: jax.Array, w: jax.Array) -> tuple[jax.Array, tuple]:
    return conv_xla(x, w), (x, w)


def _conv3x3_cpu_bwd(res: tuple, dy: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, w = res
    return conv3x3_input_grad(dy, w), conv3x3_kernel_grad(x, dy)


conv3x3_cpu.defvjp(_conv3x3_cpu_fwd, _conv3x3_cpu_bwd)


def conv_same(x: jax.Array, w: jax.Array) -> jax.Array:
    """'SAME' stride-1 convolution x [B, H, W, Cin] * w [kh, kw, Cin, Cout] -> [B, H, W, Cout].

    On the CPU: 3x3 kernels by `conv3x3_cpu`, 1x1 kernels by `conv1x1`; elsewhere, and for
    other kernel sizes, XLA's convolution.
    """
    kernel = w.shape[:2]
    cpu = {(3, 3): conv3x3_cpu, (1, 1): conv1x1}.get(kernel)
    if cpu is None:
        return conv_xla(x, w)
    return lax.platform_dependent(x, w, cpu=cpu, default=conv_xla)
