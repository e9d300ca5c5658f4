r"""Training-step speed of the DDPM and iDDPM CIFAR-10 U-Nets: forward, backward, Adam; fp32.

  python benchmarks/diffusion_train_step.py [--batch=8] [--repeats=5] [--models=ddpm,iddpm]
      [--notorch] [--rng_impl=threefry2x32]

ddpm:  DDPM CIFAR-10 U-Net (35.7M), L_simple, linear schedule T=1000, dropout 0.1.
iddpm: iDDPM CIFAR-10 U-Net (52.5M), L_hybrid with the learned variance, cosine T=4000,
       dropout 0.3.
Each step draws t, noise and dropout masks, computes the loss and its gradient, and applies
Adam, all in one jitted function. When torch is installed, a PyTorch U-Net with the same
architecture and parameter count (written here after improved-diffusion's UNetModel) is
timed on the same batch, alternating with ours so that both see the same load; its loss is
the MSE of the output (the loss terms are elementwise and negligible next to the network).
Prints one JSON line: compile seconds, median seconds per step, images/s, the PyTorch
figures and ratio, the reference figures (`REFERENCE_IMAGES_PER_S`), and the load average
before and after. Measured figures: benchmarks/README.md.
"""

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from diffusion.losses import training_losses
from diffusion.reverse import Parameterization
from diffusion.schedules import make_schedule
from diffusion.unet import unet_from_config
from gencore.config_util import load_config

_BATCH = flags.DEFINE_integer("batch", 8, "Images per step.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed steps per model (after one warm-up).")
_MODELS = flags.DEFINE_list("models", ["ddpm", "iddpm"], "Which U-Nets to time.")
_TORCH = flags.DEFINE_bool("torch", True, "Also time the PyTorch U-Net when torch is installed.")
_RNG = flags.DEFINE_string("rng_impl", "threefry2x32", "JAX PRNG for t, noise and dropout: JAX's "
                           "default 'threefry2x32', as in training, or 'rbg' (XLA's "
                           "RngBitGenerator; 2.4x slower per bit on the 2-core EPYC).")

SETTINGS = {
    "ddpm": dict(config="configs/diffusion/ddpm_cifar10.py", schedule="linear", steps=1000,
                 lr=2e-4, param=Parameterization("eps", "fixedlarge"), loss="simple"),
    "iddpm": dict(config="configs/diffusion/iddpm_cifar10.py:cosine_hybrid", schedule="cosine",
                  steps=4000, lr=1e-4, param=Parameterization("eps", "learned_range"),
                  loss="hybrid"),
}
#: improved-diffusion's UNetModel, batch 8, fp32, in images/s, measured on a 2-core CPU where
#: PyTorch runs 3.3x faster than on the machine of benchmarks/README.md.
REFERENCE_IMAGES_PER_S = {"ddpm": 7.7, "iddpm": 4.9}


def key(seed: int) -> jax.Array:
    return jax.random.key(seed, impl=_RNG.value)


def jax_step(name: str, batch: int):
    """(compiled step, initial state, compile seconds) of one setting."""
    cfg = SETTINGS[name]
    model = unet_from_config(load_config(cfg["config"]).model)
    schedule = make_schedule(cfg["schedule"], cfg["steps"])
    opt = optax.adam(cfg["lr"])
    x0 = jax.random.uniform(key(0), (batch, 32, 32, 3), minval=-1.0, maxval=1.0)
    params = jax.jit(model.init)(key(1), x0, jnp.zeros((batch,)))["params"]

    def step(params, opt_state, rng):
        k_t, k_n, k_d = jax.random.split(rng, 3)
        i = jax.random.randint(k_t, (batch,), 0, schedule.num_steps)
        noise = jax.random.normal(k_n, x0.shape)

        def loss_fn(p):
            def model_fn(x, t):
                return model.apply({"params": p}, x, t, train=True, rngs={"dropout": k_d})

            terms = training_losses(model_fn, cfg["param"], schedule, x0, i, noise, cfg["loss"])
            return jnp.mean(terms["loss"])

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    state = (params, opt.init(params))
    t0 = time.perf_counter()
    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(*state, key(2)).compile()
    return compiled, state, time.perf_counter() - t0


def torch_unet(name: str):
    """The same U-Net in PyTorch (NCHW), as improved-diffusion's UNetModel builds it."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    hp = load_config(SETTINGS[name]["config"]).model
    ss, heads, drop = hp.get("scale_shift_norm", False), hp.get("num_heads", 1), hp["dropout"]
    emb_dim = 4 * hp["ch"]

    class Res(nn.Module):
        def __init__(self, cin: int, cout: int):
            super().__init__()
            self.n1, self.c1 = nn.GroupNorm(32, cin), nn.Conv2d(cin, cout, 3, padding=1)
            self.emb = nn.Linear(emb_dim, 2 * cout if ss else cout)
            self.n2, self.c2 = nn.GroupNorm(32, cout), nn.Conv2d(cout, cout, 3, padding=1)
            self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

        def forward(self, x, emb):
            h = self.c1(F.silu(self.n1(x)))
            e = self.emb(F.silu(emb))[:, :, None, None]
            if ss:
                scale, shift = e.chunk(2, dim=1)
                h = self.n2(h) * (1 + scale) + shift
            else:
                h = self.n2(h + e)
            return self.skip(x) + self.c2(F.dropout(F.silu(h), drop, self.training))

    class Attn(nn.Module):
        def __init__(self, c: int):
            super().__init__()
            self.norm, self.qkv, self.proj = nn.GroupNorm(32, c), nn.Conv1d(c, 3 * c, 1), \
                nn.Conv1d(c, c, 1)

        def forward(self, x):
            b, c, hgt, wid = x.shape
            qkv = self.qkv(self.norm(x).reshape(b, c, -1)).reshape(b * heads, 3 * c // heads, -1)
            q, k, v = qkv.chunk(3, dim=1)
            w = torch.softmax(torch.einsum("bct,bcs->bts", q, k) * (c // heads) ** -0.5, -1)
            h = torch.einsum("bts,bcs->bct", w, v).reshape(b, c, -1)
            return x + self.proj(h).reshape(b, c, hgt, wid)

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            ch, mult, nres = hp["ch"], hp["ch_mult"], hp["num_res_blocks"]
            self.temb = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(),
                                      nn.Linear(emb_dim, emb_dim))
            self.conv_in = nn.Conv2d(3, ch, 3, padding=1)
            self.down, chans, c, res = nn.ModuleList(), [ch], ch, 32
            for lvl, m in enumerate(mult):
                for _ in range(nres):
                    blk = [Res(c, ch * m)]
                    c = ch * m
                    if res in hp["attn_resolutions"]:
                        blk.append(Attn(c))
                    self.down.append(nn.ModuleList(blk))
                    chans.append(c)
                if lvl != len(mult) - 1:
                    self.down.append(nn.ModuleList([nn.Conv2d(c, c, 3, stride=2, padding=1)]))
                    chans.append(c)
                    res //= 2
            self.mid = nn.ModuleList([Res(c, c), Attn(c), Res(c, c)])
            self.up = nn.ModuleList()
            for lvl, m in reversed(list(enumerate(mult))):
                for i in range(nres + 1):
                    blk = [Res(c + chans.pop(), ch * m)]
                    c = ch * m
                    if res in hp["attn_resolutions"]:
                        blk.append(Attn(c))
                    if lvl and i == nres:
                        blk.append(nn.Conv2d(c, c, 3, padding=1))
                        res *= 2
                    self.up.append(nn.ModuleList(blk))
            self.out = nn.Sequential(nn.GroupNorm(32, c), nn.SiLU(),
                                     nn.Conv2d(c, 6 if hp.get("learn_sigma") else 3, 3, padding=1))
            self.ch = ch

        def run(self, layers, h, emb):
            for layer in layers:
                if isinstance(layer, Res):
                    h = layer(h, emb)
                elif isinstance(layer, Attn) or layer.stride[0] == 2:
                    h = layer(h)
                else:
                    h = layer(F.interpolate(h, scale_factor=2, mode="nearest"))
            return h

        def forward(self, x, t):
            half = self.ch // 2
            freqs = torch.exp(-np.log(10000.0) / (half - 1) * torch.arange(half))
            args = t[:, None].float() * freqs[None]
            emb = self.temb(torch.cat([torch.sin(args), torch.cos(args)], 1))
            hs = [self.conv_in(x)]
            for layers in self.down:
                hs.append(self.run(layers, hs[-1], emb))
            h = self.run(self.mid, hs[-1], emb)
            for layers in self.up:
                h = self.run(layers, torch.cat([h, hs.pop()], 1), emb)
            return self.out(h)

    return UNet()


def torch_step(name: str, batch: int):
    """(step function, parameter count) of the PyTorch U-Net with Adam."""
    import torch

    torch.manual_seed(0)
    net = torch_unet(name).train()
    opt = torch.optim.Adam(net.parameters(), lr=SETTINGS[name]["lr"])
    x = torch.rand(batch, 3, 32, 32) * 2 - 1
    steps = SETTINGS[name]["steps"]

    def step():
        t = torch.randint(0, steps, (batch,))
        out = net(x + torch.randn_like(x), t * (1000.0 / steps))
        loss = (out - torch.randn_like(out)).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return step, sum(p.numel() for p in net.parameters())


def main(_) -> None:
    load_before = os.getloadavg()[0]
    try:
        import torch  # noqa: F401

        use_torch = _TORCH.value
    except ImportError:
        use_torch = False
    result = {"batch": _BATCH.value, "dtype": "float32", "device": jax.devices()[0].platform,
              "rng_impl": _RNG.value}
    for name in _MODELS.value:
        compiled, state, compile_s = jax_step(name, _BATCH.value)
        state = compiled(*state, key(3))[:2]
        jax.block_until_ready(state)
        t_step, t_params = torch_step(name, _BATCH.value) if use_torch else (None, None)
        if t_step:
            t_step()
        ours, theirs = [], []
        for r in range(_REPEATS.value):
            t0 = time.perf_counter()
            *state, loss = compiled(*state, key(4 + r))
            loss.block_until_ready()
            ours.append(time.perf_counter() - t0)
            if t_step:
                t0 = time.perf_counter()
                t_step()
                theirs.append(time.perf_counter() - t0)
        sec = float(np.median(ours))
        entry = {"compile_s": round(compile_s, 1), "s_per_step": round(sec, 3),
                 "images_per_s": round(_BATCH.value / sec, 3),
                 "reference_images_per_s": REFERENCE_IMAGES_PER_S[name],
                 "speedup_vs_reference": round(_BATCH.value / sec / REFERENCE_IMAGES_PER_S[name],
                                               3)}
        if theirs:
            tsec = float(np.median(theirs))
            entry.update(torch_s_per_step=round(tsec, 3), torch_params=t_params,
                         speedup_vs_torch_same_load=round(tsec / sec, 3))
        result[name] = entry
    result["load_avg_before_after"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
