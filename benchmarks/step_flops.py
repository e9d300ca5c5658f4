"""Analytic FLOPs of a training step's convolutions and matrix products, and XLA's count beside it.

The analytic count is read from the shapes of a traced program (``jax.make_jaxpr``), not from
XLA: every ``conv_general_dilated`` and ``dot_general`` of a network's forward pass costs

    dot:  2 * prod(out.shape) * prod(contracted sizes)
    conv: 2 * prod(out.shape) * kh * kw * (kernel input features)      (padding taps included)

(one multiply-add = 2 FLOPs). Training multiplies each product by its passes, found by JAX's
own activity rule on the jaxpr: 1 (forward) + 1 for each operand whose gradient is computed,
i.e. an operand that depends on the differentiated parameters (through no ``stop_gradient``)
while the product's output reaches the loss. So a layer whose input and weight are both
differentiated costs 3x its forward (the usual "x3"), the first layer on the data 2x (no input
gradient), a network that is only passed through 2x (input gradients only) and one that is
only evaluated 1x. For BigGAN's step (`biggan_step_ops`), with B the batch of one update:

    num_d_steps x [ G(B) forward only (fakes are stop_gradient)
                    + D(2B, fakes and reals) forward + input and weight gradients
                      (no input gradient at D's first conv: images are data) ]
    + G step: G(B) forward + input and weight gradients (no input gradient where z enters)
              + D(B) forward + input gradients only (D's weights are not differentiated)

and for diffusion (`unet_step_ops`): the U-Net forward + input and weight gradients (~3x).
Products none of whose operands depend on the data (spectral norm's power iteration on the
weights, ``per_example=False``) are counted apart from the network's.

XLA's count (``compiled.cost_analysis()['flops']``) differs in known ways that
`xla_breakdown` measures from the optimized HLO, instruction by instruction with XLA's own
rules (dot/convolution as above but convolution taps on padding are not counted; one FLOP per
element of each elementwise op, transcendentals excluded; reduce: one per reduced element),
grouped by the op's name scope: network products, spectral norm, orthogonal regularization,
normalisation, other elementwise in the networks, random numbers, optimiser/EMA/loss.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
import ml_collections

MATMUL_PRIMITIVES = ("conv_general_dilated", "dot_general")


@dataclasses.dataclass(frozen=True)
class MatmulOp:
    """One convolution or matrix product of a traced program, with its FLOPs and passes."""

    primitive: str           # 'conv_general_dilated' | 'dot_general'
    dense: float             # forward FLOPs, 2 x multiply-adds, padding taps included
    valid: float             # the same without taps on padding (XLA's convention); = dense for dots
    grad_lhs: bool           # gradient w.r.t. the first operand (activations) computed
    grad_rhs: bool           # gradient w.r.t. the second operand (kernel, weight) computed
    per_example: bool        # an operand depends on the data (False: weights only)

    @property
    def passes(self) -> int:
        """1 (forward) + the operand gradients computed."""
        return 1 + self.grad_lhs + self.grad_rhs

    @property
    def train_flops(self) -> float:
        """dense x passes: the analytic training count of this product."""
        return self.dense * self.passes

    @property
    def xla_convention_flops(self) -> float:
        """The same passes counted as XLA does: every pass without padding taps."""
        return self.valid * self.passes


def _valid_taps(n: int, k: int, o: int, stride: int, pad_lo: int, lhs_dil: int,
                rhs_dil: int) -> int:
    """(output position, kernel tap) pairs of one spatial dimension that land on an input
    element (not on padding or a dilation hole)."""
    last = (n - 1) * lhs_dil
    return sum(1 for a in range(o) for j in range(k)
               if 0 <= (p := a * stride + j * rhs_dil - pad_lo) <= last and p % lhs_dil == 0)


def conv_flops(eqn: jcore.JaxprEqn) -> tuple[float, float]:
    """(dense, valid) forward FLOPs of a ``conv_general_dilated`` equation."""
    lhs, rhs = (v.aval.shape for v in eqn.invars)
    out = eqn.outvars[0].aval.shape
    p = eqn.params
    dn = p["dimension_numbers"]
    spatial_k = [rhs[d] for d in dn.rhs_spec[2:]]
    kin = rhs[dn.rhs_spec[1]]
    dense = 2.0 * math.prod(out) * math.prod(spatial_k) * kin
    taps = [_valid_taps(lhs[ld], rhs[rd], out[od], s, pad[0], ldil, rdil)
            for ld, rd, od, s, pad, ldil, rdil in zip(
                dn.lhs_spec[2:], dn.rhs_spec[2:], dn.out_spec[2:], p["window_strides"],
                p["padding"], p["lhs_dilation"], p["rhs_dilation"], strict=True)]
    valid = 2.0 * out[dn.out_spec[0]] * out[dn.out_spec[1]] * kin * math.prod(taps)
    return dense, valid


def dot_flops(eqn: jcore.JaxprEqn) -> float:
    """Forward FLOPs of a ``dot_general`` equation: 2 * prod(out) * prod(contracted)."""
    lhs = eqn.invars[0].aval.shape
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    return 2.0 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lhs_contract)


def _subjaxprs(eqn: jcore.JaxprEqn) -> list[tuple[jcore.Jaxpr, list]]:
    """(sub-jaxpr, the equation's operands it takes) for the sub-programs an equation runs:
    call-like primitives (pjit, custom_jvp/vjp_call, shard_map, remat, closed_call) and every
    branch of a ``cond``."""
    if eqn.primitive.name == "cond":
        return [(b.jaxpr, list(eqn.invars[1:])) for b in eqn.params["branches"]]
    subs = []
    for value in eqn.params.values():
        for j in value if isinstance(value, tuple) else (value,):
            if isinstance(j, jcore.ClosedJaxpr):
                j = j.jaxpr
            if isinstance(j, jcore.Jaxpr) and len(j.invars) == len(eqn.invars):
                subs.append((j, list(eqn.invars)))
    return subs


def _flag(flags: dict, v: Any) -> bool:
    return isinstance(v, jcore.Var) and flags.get(v, False)


def _stop_gradient(eqn: jcore.JaxprEqn) -> bool:
    return eqn.primitive.name == "stop_gradient"


def _forward(jaxpr: jcore.Jaxpr, flags_in: Sequence[bool], gradient: bool) -> dict:
    """Which variables depend on the inputs flagged: {var: bool}. With ``gradient``, through
    no ``stop_gradient`` (the dependence a gradient follows)."""
    flags = dict(zip(jaxpr.invars, flags_in, strict=True))
    for eqn in jaxpr.eqns:
        subs = _subjaxprs(eqn)
        if gradient and _stop_gradient(eqn):
            outs = [False] * len(eqn.outvars)
        elif subs:
            outs = [False] * len(eqn.outvars)
            for sub, operands in subs:
                inner = _forward(sub, [_flag(flags, v) for v in operands], gradient)
                outs = [a or _flag(inner, v) for a, v in zip(outs, sub.outvars, strict=True)]
        else:
            outs = [any(_flag(flags, v) for v in eqn.invars)] * len(eqn.outvars)
        for v, f in zip(eqn.outvars, outs, strict=True):
            flags[v] = f
    return flags


def _active(jaxpr: jcore.Jaxpr, active_out: Sequence[bool]) -> dict:
    """Which variables reach the outputs flagged through no ``stop_gradient``: {var: bool}."""
    active = {v: a for v, a in zip(jaxpr.outvars, active_out, strict=True)
              if isinstance(v, jcore.Var) and a}
    for eqn in reversed(jaxpr.eqns):
        outs = [_flag(active, v) for v in eqn.outvars]
        if not any(outs) or _stop_gradient(eqn):
            continue
        subs = _subjaxprs(eqn)
        if subs:
            for sub, operands in subs:
                inner = _active(sub, outs)
                for v, w in zip(operands, sub.invars, strict=True):
                    if isinstance(v, jcore.Var) and inner.get(w, False):
                        active[v] = True
        else:
            for v in eqn.invars:
                if isinstance(v, jcore.Var):
                    active[v] = True
    return active


def _collect(jaxpr: jcore.Jaxpr, diff_in: Sequence[bool], data_in: Sequence[bool],
             active_out: Sequence[bool], ops: list[MatmulOp]) -> None:
    diff = _forward(jaxpr, diff_in, gradient=True)
    data = _forward(jaxpr, data_in, gradient=False)
    active = _active(jaxpr, active_out)
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        out_active = any(_flag(active, v) for v in eqn.outvars) and not _stop_gradient(eqn)
        if name in MATMUL_PRIMITIVES:
            dense, valid = conv_flops(eqn) if name == "conv_general_dilated" else (
                (f := dot_flops(eqn)), f)
            lhs, rhs = eqn.invars[:2]
            ops.append(MatmulOp(
                name, dense, valid, grad_lhs=out_active and _flag(diff, lhs),
                grad_rhs=out_active and _flag(diff, rhs),
                per_example=_flag(data, lhs) or _flag(data, rhs)))
            continue
        outs = [out_active and _flag(active, v) for v in eqn.outvars]
        for sub, operands in _subjaxprs(eqn):
            _collect(sub, [_flag(diff, v) for v in operands], [_flag(data, v) for v in operands],
                     outs, ops)


def matmul_ops(fn: Callable, args: Sequence[Any], differentiated: Sequence[bool],
               data: Sequence[bool], loss_outputs: Callable[[Any], Any] | None = None
               ) -> list[MatmulOp]:
    """The convolutions and matrix products of ``fn(*args)`` with their training passes.

    ``differentiated[i]``: the gradient is taken w.r.t. ``args[i]`` (a pytree); ``data[i]``:
    ``args[i]`` is per-example data. ``loss_outputs`` maps ``fn``'s output to the part the loss
    is computed from (the rest, e.g. updated statistics, gets no gradient); default: all of it.
    """
    closed = jax.make_jaxpr(fn)(*args)
    flags = lambda per_arg: [f for a, f in zip(args, per_arg, strict=True)   # noqa: E731
                             for _ in jax.tree_util.tree_leaves(a)]
    out_shape = jax.eval_shape(fn, *args)
    chosen = loss_outputs(out_shape) if loss_outputs else out_shape
    chosen_ids = {id(x) for x in jax.tree_util.tree_leaves(chosen)}
    active_out = [id(x) in chosen_ids for x in jax.tree_util.tree_leaves(out_shape)]
    ops: list[MatmulOp] = []
    _collect(closed.jaxpr, flags(differentiated), flags(data), active_out, ops)
    return ops


def summarize(ops: Sequence[MatmulOp]) -> dict:
    """Totals of a list of products: forward, training (dense x passes), the training count in
    XLA's convention, each for the per-example products and the weight-only ones."""
    def total(select: Callable[[MatmulOp], bool], value: Callable[[MatmulOp], float]) -> float:
        return float(sum(value(op) for op in ops if select(op)))

    per, weights = (lambda op: op.per_example), (lambda op: not op.per_example)
    return dict(
        forward=total(per, lambda op: op.dense),
        train=total(per, lambda op: op.train_flops),
        train_xla_convention=total(per, lambda op: op.xla_convention_flops),
        weight_only_train=total(weights, lambda op: op.train_flops),
        weight_only_xla_convention=total(weights, lambda op: op.xla_convention_flops),
    )


# ----------------------------------------------------------------------------- the two steps

def biggan_step_ops(config: ml_collections.ConfigDict) -> dict[str, list[MatmulOp]]:
    """The products of one BigGAN train step (module docstring's rule), per part:
    'd_step_g' (G forward making one D update's fakes), 'd_step_d' (D on fakes and reals with
    its weight gradient), 'g_step' (G then D, G's weight gradient); `biggan_step_flops` adds
    num_d_steps x the first two and the third."""
    from biggan import model as biggan_model
    from biggan.layers import SPECTRAL

    cfg, b = config.model, config.train.batch_size
    g_vars, d_vars = jax.eval_shape(lambda k: biggan_model.init_variables(cfg, k),
                                    jax.random.PRNGKey(0))
    G, D = biggan_model.build_generator(cfg), biggan_model.build_discriminator(cfg)
    g_state = {k: v for k, v in g_vars.items() if k != "params"}
    d_state = {SPECTRAL: d_vars[SPECTRAL]}
    r = cfg.resolution
    z = jax.ShapeDtypeStruct((b, cfg.z_dim), jnp.float32)
    y = jax.ShapeDtypeStruct((b,), jnp.int32)
    x2 = jax.ShapeDtypeStruct((2 * b, r, r, 3), jnp.float32)
    y2 = jax.ShapeDtypeStruct((2 * b,), jnp.int32)

    def gen(gp, gs, z, y):
        return G.apply({"params": gp, **gs}, z, y, train=True, mutable=["batch_stats", SPECTRAL])

    def disc(dp, ds, x, y):
        return D.apply({"params": dp, **ds}, x, y, train=True, mutable=[SPECTRAL])

    def g_then_d(gp, gs, dp, ds, z, y):
        return disc(dp, ds, gen(gp, gs, z, y)[0], y)

    first = lambda out: out[0]   # noqa: E731  (images / logits; not the updated state)
    gp, dp = g_vars["params"], d_vars["params"]
    return dict(
        d_step_g=matmul_ops(gen, (gp, g_state, z, y), (False,) * 4, (False, False, True, True),
                            first),
        d_step_d=matmul_ops(disc, (dp, d_state, x2, y2), (True, False, False, False),
                            (False, False, True, True), first),
        g_step=matmul_ops(g_then_d, (gp, g_state, dp, d_state, z, y), (True,) + (False,) * 5,
                          (False,) * 4 + (True, True), first),
    )


def biggan_step_flops(config: ml_collections.ConfigDict) -> dict:
    """Analytic FLOPs of one BigGAN step: `summarize` of each part, and their step totals
    (num_d_steps x (d_step_g + d_step_d) + g_step); plus G's and D's forward FLOPs per image."""
    parts = {k: summarize(v) for k, v in biggan_step_ops(config).items()}
    n = config.train.num_d_steps
    step = {key: n * (parts["d_step_g"][key] + parts["d_step_d"][key]) + parts["g_step"][key]
            for key in parts["g_step"]}
    b = config.train.batch_size
    return dict(step=step, parts=parts, g_forward_per_image=parts["d_step_g"]["forward"] / b,
                d_forward_per_image=parts["d_step_d"]["forward"] / (2 * b))


def unet_step_flops(config: ml_collections.ConfigDict) -> dict:
    """Analytic FLOPs of one diffusion step: the U-Net on the batch, forward + gradients."""
    from diffusion import model as diffusion_model

    b, r = config.train.batch_size, config.model.resolution
    unet = diffusion_model.build_unet(config)
    params = jax.eval_shape(lambda k: diffusion_model.init_params(config, k), jax.random.PRNGKey(0))
    x = jax.ShapeDtypeStruct((b, r, r, 3), jnp.float32)
    t = jax.ShapeDtypeStruct((b,), jnp.float32)
    y = jax.ShapeDtypeStruct((b,), jnp.int32) if config.model.num_classes else None

    def net(p, x, t, y):
        return unet.apply({"params": p}, x, t, y, train=True,
                          rngs={"dropout": jax.random.PRNGKey(0)})

    step = summarize(matmul_ops(net, (params, x, t, y), (True, False, False, False),
                                (False, True, True, True)))
    return dict(step=step, unet_forward_per_image=step["forward"] / b)


# ----------------------------------------------------------------------- XLA's count, by part

_ELEMENTWISE = frozenset("""add subtract multiply divide maximum minimum negate abs compare select
and or xor not clamp sign floor ceil round-nearest-even round-nearest-afz remainder shift-left
shift-right-logical shift-right-arithmetic convert popcnt is-finite""".split())
_TRANSCENDENTAL = frozenset("""exponential log tanh sqrt rsqrt logistic erf cbrt sine cosine
expm1 log1p tan power atan2""".split())
_NETWORK = re.compile(r"Generator|Discriminator|UNet")
_NORM = re.compile(r"(^|/)(bn\w*|BatchNorm\w*|GroupNorm\w*|norm\w*|\w*_norm\w*)(/|$)")
_RNG = re.compile(r"threefry|random_bits|_normal|_uniform|_randint|_bernoulli|random_")
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*")
_SHAPE = re.compile(r"^\w+\[([\d,]*)\]")


def _elements(shape: str) -> int:
    """Elements of an HLO array type like 'f32[32,48]{1,0}' (tuples: 0)."""
    m = _SHAPE.match(shape)
    return math.prod(int(d) for d in m.group(1).split(",") if d) if m else 0


def _dims(shape: str) -> list[int]:
    m = _SHAPE.match(shape)
    return [int(d) for d in m.group(1).split(",") if d] if m else []


def _closing(text: str, depth: int) -> int:
    """Index of the parenthesis that closes ``depth`` open ones (the text's end if none)."""
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if depth == 0:
            return i
    return len(text)


def _parse_instruction(line: str) -> tuple[str, str, str, list[str], str] | None:
    """(name, type, opcode, operand names, rest) of one HLO instruction line."""
    m = _INSTR.match(line)
    if not m:
        return None
    rest = line[m.end():]
    if rest.startswith("("):            # tuple type: skip to its closing parenthesis
        i = _closing(rest, 0)
        shape, rest = rest[:i + 1], rest[i + 1:].lstrip()
    else:
        shape, _, rest = rest.partition(" ")
    opcode, _, rest = rest.partition("(")
    i = _closing(rest, 1)
    operands = re.findall(r"%([\w.\-]+)", rest[:i])
    return m.group(1), shape, opcode.strip(), operands, rest[i + 1:]


def _conv_hlo_flops(out: str, lhs: str, rhs: str, attrs: str) -> float:
    """XLA's convolution count: 2 x multiply-adds over the (output, tap) pairs off padding."""
    labels = re.search(r"dim_labels=(\w+)_(\w+)->(\w+)", attrs)
    window = re.search(r"window=\{([^}]*)\}", attrs)
    lhs_l, rhs_l, out_l = labels.groups()
    ld, rd, od = _dims(lhs), _dims(rhs), _dims(out)
    fields = dict(f.split("=") for f in window.group(1).split()) if window else {}
    nsp = len(rhs_l) - 2
    split = lambda key, default: (fields[key].split("x") if key in fields   # noqa: E731
                                  else [default] * nsp)
    size, stride = split("size", "1"), split("stride", "1")
    pad = split("pad", "0_0")
    lhs_dil, rhs_dil = split("lhs_dilate", "1"), split("rhs_dilate", "1")
    taps = 1
    for k in range(nsp):
        c = str(k)
        taps *= _valid_taps(ld[lhs_l.index(c)], int(size[k]), od[out_l.index(c)], int(stride[k]),
                            int(pad[k].split("_")[0]), int(lhs_dil[k]), int(rhs_dil[k]))
    kin = rd[rhs_l.index("i")]
    return 2.0 * od[out_l.index("b")] * od[out_l.index("f")] * kin * taps


def _category(op_name: str, matmul: bool) -> str:
    """The part of the step an HLO instruction belongs to, from its op_name scope."""
    if "_spectral_normalize" in op_name:
        return "spectral_norm_matmuls" if matmul else "spectral_norm_elementwise"
    if "ortho_reg" in op_name:
        return "ortho_reg_matmuls" if matmul else "ortho_reg_elementwise"
    if _NETWORK.search(op_name):
        if matmul:
            return "network_matmuls"
        return "network_normalisation" if _NORM.search(op_name) else "network_elementwise"
    if matmul:
        return "other_matmuls"
    return "random_numbers" if _RNG.search(op_name) else "optimizer_ema_loss"


def hlo_instructions(hlo_text: str) -> list[tuple[str, str, str, str, list[str], str]]:
    """(computation, name, type, opcode, operand names, attributes) of every instruction of an
    HLO module's text (``compiled.as_text()``), in order."""
    parsed = []
    computation = ""
    for line in hlo_text.splitlines():
        head = re.match(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$", line)
        if head and "=" not in line.split("{")[0]:
            computation = head.group(1)
            continue
        ins = _parse_instruction(line)
        if ins is not None:
            parsed.append((computation, *ins))
    return parsed


def op_name_of(attrs: str) -> str:
    """The JAX name stack (``metadata={op_name=...}``) of an instruction's attributes."""
    return (re.search(r'op_name="([^"]*)"', attrs) or [None, ""])[1]


def xla_breakdown(hlo_text: str) -> dict[str, float]:
    """FLOPs of an optimized HLO module (``compiled.as_text()``) per `_category`, with XLA's
    HloCostAnalysis rules (see module docstring); reducer computations count through their
    reduce, fused computations through their instructions."""
    parsed = hlo_instructions(hlo_text)
    shapes = {name: shape for _, name, shape, *_ in parsed}
    reducers = {r for *_, attrs in parsed for r in re.findall(r"to_apply=%?([\w.\-]+)", attrs)}
    out: dict[str, float] = collections.defaultdict(float)
    for computation, _name, shape, opcode, operands, attrs in parsed:
        if computation in reducers:
            continue
        op_name = op_name_of(attrs)
        if opcode == "dot":
            lhs = _dims(shapes[operands[0]])
            contract = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", attrs).group(1)
            k = math.prod(lhs[int(d)] for d in contract.split(",") if d)
            flops, matmul = 2.0 * _elements(shape) * k, True
        elif opcode == "convolution":
            flops = _conv_hlo_flops(shape, shapes[operands[0]], shapes[operands[1]], attrs)
            matmul = True
        elif opcode in _ELEMENTWISE:
            flops, matmul = float(_elements(shape)), False
        elif opcode == "reduce":
            n = len(operands) // 2
            flops = float(sum(_elements(shapes[o]) for o in operands[:n]) - _elements(shape))
            matmul = False
        else:
            continue
        out[_category(op_name, matmul)] += flops
    return dict(out)


def instruction_groups(hlo_text: str) -> dict[str, dict]:
    """Instruction name -> {'kind', 'pass', 'op_name'} for every instruction of an optimized
    HLO module. kind: 'convolution' or 'matmul' (the op, or a fusion around one), 'copy /
    transpose', 'fusion' (elementwise and reductions) or 'other'; pass: 'backward' (a
    ``transpose(`` in the name stack), 'forward' (inside G, D or the U-Net) or 'update'."""
    instructions = hlo_instructions(hlo_text)
    opcodes = collections.defaultdict(set)
    for computation, _, _, opcode, _, _ in instructions:
        opcodes[computation].add(opcode)
    groups = {}
    for _, name, _, opcode, _, attrs in instructions:
        calls = re.search(r"calls=%?([\w.\-]+)", attrs)
        ops = {opcode} | (opcodes[calls.group(1)] if opcode == "fusion" and calls else set())
        if "convolution" in ops:
            kind = "convolution"
        elif "dot" in ops:
            kind = "matmul"
        elif ops <= {"copy", "transpose", "parameter", "bitcast", "fusion"} and ops != {"fusion"}:
            kind = "copy / transpose"
        else:
            kind = "fusion" if opcode == "fusion" else "other"
        op_name = op_name_of(attrs)
        passes = ("backward" if "transpose(" in op_name else
                  "forward" if _NETWORK.search(op_name) else "update")
        groups[name] = {"kind": kind, "pass": passes, "op_name": op_name}
    return groups
