r"""Time BigGAN-PyTorch's CIFAR-10 training iteration written in PyTorch, on this machine.

  python benchmarks/pytorch_cifar_step.py            # needs the [torch] extra

The side-by-side half of the speed comparison in benchmarks/README.md: the same setting as
``configs/biggan/cifar10.py:pytorch_reference`` (G and D ch 64, i.e. 256 channels at 32x32,
batch 50, 4 D steps per G step, hinge loss, Adam(0, 0.999, eps 1e-8) at 2e-4, class-conditional
BN from per-class embeddings, projection D, spectral norm with one power iteration per
forward, EMA of G), written in PyTorch the way BigGAN-PyTorch runs an iteration: each D step
draws G's fakes without a graph and runs D on [fakes; reals]; the G step runs G and D with D's
weights frozen. The parameter counts printed must equal ``python -m biggan.summary
--config=configs/biggan/cifar10.py:pytorch_reference`` (4,304,387 and 4,207,361), which checks
that the two sides time the same networks. Prints one JSON line like benchmarks/train_step.py,
with the iteration's FLOPs from ``torch.utils.flop_counter``.
"""

import argparse
import json
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm
from torch.utils.flop_counter import FlopCounterMode

CH, Z_DIM, CLASSES, BATCH, D_STEPS, LR = 256, 128, 10, 50, 4, 2e-4


def sn_conv(cin: int, cout: int, k: int) -> nn.Module:
    return spectral_norm(nn.Conv2d(cin, cout, k, padding=k // 2), eps=1e-8)


class ConditionalBN(nn.Module):
    """BN without affine, then (1 + gain[y]) * x + bias[y] (gain/bias: per-class embeddings)."""

    def __init__(self, ch: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(ch, affine=False, eps=1e-5)
        self.gain, self.bias = nn.Embedding(CLASSES, ch), nn.Embedding(CLASSES, ch)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.bn(x) * (1 + self.gain(y)[:, :, None, None]) + self.bias(y)[:, :, None, None]


class GBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn1, self.bn2 = ConditionalBN(CH), ConditionalBN(CH)
        self.conv1, self.conv2 = sn_conv(CH, CH, 3), sn_conv(CH, CH, 3)
        self.shortcut = sn_conv(CH, CH, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, y)), scale_factor=2)
        h = self.conv2(F.relu(self.bn2(self.conv1(h), y)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2))


class Generator(nn.Module):
    """z (B, 128), y (B,) -> images (B, 3, 32, 32): linear to 4x4x256, three up-blocks."""

    def __init__(self):
        super().__init__()
        self.linear = spectral_norm(nn.Linear(Z_DIM, 16 * CH), eps=1e-8)
        self.blocks = nn.ModuleList(GBlock() for _ in range(3))
        self.out_bn = nn.BatchNorm2d(CH, eps=1e-5)
        self.out_conv = sn_conv(CH, 3, 3)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.linear(z).view(-1, CH, 4, 4)
        for block in self.blocks:
            h = block(h, y)
        return torch.tanh(self.out_conv(F.relu(self.out_bn(h))))


class DBlock(nn.Module):
    def __init__(self, cin: int, downsample: bool, preactivation: bool):
        super().__init__()
        self.conv1, self.conv2 = sn_conv(cin, CH, 3), sn_conv(CH, CH, 3)
        self.downsample, self.preactivation = downsample, preactivation
        self.shortcut = sn_conv(cin, CH, 1) if (downsample or cin != CH) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(F.relu(x) if self.preactivation else x)))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.shortcut is not None:
            if self.preactivation:
                s = self.shortcut(s)
                s = F.avg_pool2d(s, 2) if self.downsample else s
            else:
                s = self.shortcut(F.avg_pool2d(s, 2) if self.downsample else s)
        return h + s


class Discriminator(nn.Module):
    """images (B, 3, 32, 32), y (B,) -> logits (B,): four blocks, sum-pool, projection."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(DBlock(3, True, False), DBlock(CH, True, True),
                                    DBlock(CH, False, True), DBlock(CH, False, True))
        self.linear = spectral_norm(nn.Linear(CH, 1), eps=1e-8)
        self.embed = spectral_norm(nn.Embedding(CLASSES, CH), eps=1e-8)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.sum(F.relu(self.blocks(x)), dim=(2, 3))
        return self.linear(h).squeeze(1) + torch.sum(self.embed(y) * h, dim=1)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def make_iteration(G: nn.Module, D: nn.Module, G_ema: nn.Module):
    """One BigGAN-PyTorch iteration: D_STEPS D updates on fresh reals, one G update, EMA."""
    g_opt = torch.optim.Adam(G.parameters(), LR, betas=(0.0, 0.999), eps=1e-8)
    d_opt = torch.optim.Adam(D.parameters(), LR, betas=(0.0, 0.999), eps=1e-8)

    def iteration(reals: torch.Tensor, labels: torch.Tensor) -> None:
        D.requires_grad_(True)
        for i in range(D_STEPS):
            d_opt.zero_grad(set_to_none=True)
            y = torch.randint(0, CLASSES, (BATCH,))
            with torch.no_grad():
                fakes = G(torch.randn(BATCH, Z_DIM), y)
            logits = D(torch.cat([fakes, reals[i]]), torch.cat([y, labels[i]]))
            fake_logits, real_logits = logits[:BATCH], logits[BATCH:]
            (F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()).backward()
            d_opt.step()
        D.requires_grad_(False)
        g_opt.zero_grad(set_to_none=True)
        y = torch.randint(0, CLASSES, (BATCH,))
        (-D(G(torch.randn(BATCH, Z_DIM), y), y).mean()).backward()
        g_opt.step()
        with torch.no_grad():
            for e, p in zip(G_ema.parameters(), G.parameters(), strict=True):
                e.lerp_(p, 1 - 0.9999)

    return iteration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="timed iterations after a warm-up")
    args = parser.parse_args()
    torch.manual_seed(0)
    G, D, G_ema = Generator(), Discriminator(), Generator()
    G_ema.load_state_dict(G.state_dict())
    iteration = make_iteration(G, D, G_ema)
    reals = torch.rand(D_STEPS, BATCH, 3, 32, 32) * 2 - 1
    labels = torch.randint(0, CLASSES, (D_STEPS, BATCH))
    with FlopCounterMode(display=False) as counter:
        iteration(reals, labels)   # also the warm-up
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        iteration(reals, labels)
        times.append(time.perf_counter() - start)
    step_seconds = statistics.median(times)
    flops = float(counter.get_total_flops())
    print(json.dumps({
        "implementation": "pytorch", "torch": torch.__version__,
        "threads": torch.get_num_threads(), "G_params": parameter_count(G),
        "D_params": parameter_count(D), "batch_size": BATCH, "num_d_steps": D_STEPS,
        "step_seconds": round(step_seconds, 4), "step_seconds_all": [round(t, 4) for t in times],
        "real_images_per_second": round(BATCH * D_STEPS / step_seconds, 2),
        "step_flops": flops, "achieved_flops_per_second": flops / step_seconds,
    }))


if __name__ == "__main__":
    main()
