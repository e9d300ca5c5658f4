r"""The reference side of `side_by_side.py`: one training iteration of the real PyTorch code.

  BIGGAN_PYTORCH_DIR=... IMPROVED_DIFFUSION_DIR=... python benchmarks/reference_step.py \
      SETTING [--batch=B] [--width=W] [--device=cpu|cuda] [--precision=default|highest] \
      [--threads=N] [--warmup=1]

Needs PyTorch (no JAX); speaks `step_settings.py`'s protocol on stdin / stdout.

The reference code is imported from checkouts named by environment variables, nothing of it
is copied here:

- BIGGAN_PYTORCH_DIR: github.com/ajbrock/BigGAN-PyTorch. The model, optimisers and EMA are
  built as its train.py builds them, from its own argument parser given the flags of the
  setting, and one iteration is one call of ``train_fns.GAN_training_function``'s closure
  (num_D_steps D steps, one G step, the EMA update), after ``state_dict['itr'] += 1`` and
  ``G.train(); D.train(); G_ema.train()`` as in train.py's loop.
- IMPROVED_DIFFUSION_DIR: github.com/openai/improved-diffusion. Model and diffusion are built
  from scripts/image_train.py's argument parser with the setting's flags, and one iteration
  is ``TrainLoop.run_step`` (forward, loss, backward, AdamW, EMA, log bookkeeping) followed by
  ``step += 1``, as ``TrainLoop.run_loop`` runs it. On CUDA the model is wrapped in
  DistributedDataParallel by TrainLoop itself, in a one-process group.

The batch is a fixed random tensor in [-1, 1] (data loading is not timed). Modules that
these repositories import but a training step does not use (h5py, blobfile, mpi4py) are
replaced by empty stand-ins when they are missing.
"""

import argparse
import contextlib
import os
import sys
import tempfile
import types

from step_settings import SETTINGS, serve

# The flags of each setting, in the reference's own command-line language. BigGAN: the
# reference's launch script of that setting, with the update counts of our config (our
# per-device batch, no accumulation, our D steps per G step); ortho_reg = G_ortho / 2.
BIGGAN_FLAGS = {
    "biggan_cifar10": ("--dataset C10 --num_D_steps 4 --G_lr 2e-4 --D_lr 2e-4 "
                       "--G_attn 0 --D_attn 0 --G_init N02 --D_init N02 --G_ortho 0.0 "
                       "--ema --use_ema --ema_start 1000"),
    "biggan128": ("--dataset I128_hdf5 --num_D_steps 2 --G_lr 5e-5 --D_lr 2e-4 "
                  "--D_B2 0.999 --G_B2 0.999 --G_attn 64 --D_attn 64 "
                  "--G_nl inplace_relu --D_nl inplace_relu --SN_eps 1e-4 --BN_eps 1e-4 "
                  "--adam_eps 1e-6 --G_ortho 2e-4 --G_shared --G_init ortho --D_init ortho "
                  "--hier --dim_z 120 --shared_dim 128 --ema --use_ema --ema_start 20000"),
    "biggan_deep128": ("--model BigGANdeep --dataset I128_hdf5 --num_D_steps 2 --G_lr 5e-5 "
                       "--D_lr 2e-4 --D_B2 0.999 --G_B2 0.999 --G_attn 64 --D_attn 64 "
                       "--G_depth 2 --D_depth 2 --G_nl inplace_relu --D_nl inplace_relu "
                       "--SN_eps 1e-4 --BN_eps 1e-4 --adam_eps 1e-6 --G_ortho 0.0 --G_shared "
                       "--G_init ortho --D_init ortho --hier --dim_z 128 --shared_dim 128 "
                       "--ema --use_ema --ema_start 20000"),
}
# improved-diffusion: scripts/image_train.py flags. DDPM's CIFAR-10 U-Net (ch_mult 1,2,2,2
# at 32 px, 2 res blocks, one head, attention at 16 px, no scale-shift norm, dropout 0.1,
# L_simple, linear T=1000) and the README's CIFAR-10 L_hybrid row.
DIFFUSION_FLAGS = {
    "ddpm_cifar10": ("--image_size 32 --num_res_blocks 2 --num_heads 1 "
                     "--attention_resolutions 16 --use_scale_shift_norm False --dropout 0.1 "
                     "--learn_sigma False --diffusion_steps 1000 --noise_schedule linear "
                     "--lr 2e-4"),
    "iddpm_cifar10_hybrid": ("--image_size 32 --num_res_blocks 3 --learn_sigma True "
                             "--dropout 0.3 --diffusion_steps 4000 --noise_schedule cosine "
                             "--lr 1e-4"),
}


def checkout(variable: str, marker: str) -> str:
    """The checkout named by environment variable ``variable`` (it must hold ``marker``)."""
    root = os.environ.get(variable, "")
    if not os.path.isfile(os.path.join(root, marker)):
        sys.exit(f"reference_step.py: set {variable} to a checkout holding {marker} "
                 f"(now {root!r}).")
    return os.path.abspath(root)


def stand_in(name: str, **attributes) -> None:
    """Registers an empty module ``name`` unless it can be imported."""
    try:
        __import__(name)
    except ImportError:
        sys.modules[name] = types.SimpleNamespace(**attributes)


def biggan_iteration(setting: str, batch: int, width: int, device: str):
    """(one-iteration function, params of G + D, real images per iteration)."""
    import torch

    sys.path.insert(0, checkout("BIGGAN_PYTORCH_DIR", "train_fns.py"))
    stand_in("h5py")
    import train_fns
    import utils

    flags = BIGGAN_FLAGS[setting].split() + [
        "--batch_size", str(batch), "--G_ch", str(width), "--D_ch", str(width),
        "--num_G_accumulations", "1", "--num_D_accumulations", "1", "--seed", "0"]
    config = vars(utils.prepare_parser().parse_args(flags))
    config["resolution"] = utils.imsize_dict[config["dataset"]]
    config["n_classes"] = utils.nclass_dict[config["dataset"]]
    config["G_activation"] = utils.activation_dict[config["G_nl"]]
    config["D_activation"] = utils.activation_dict[config["D_nl"]]
    utils.seed_rng(config["seed"])
    model = __import__(config["model"])
    G = model.Generator(**config).to(device)
    D = model.Discriminator(**config).to(device)
    G_ema = model.Generator(**{**config, "skip_init": True, "no_optim": True}).to(device)
    ema = utils.ema(G, G_ema, config["ema_decay"], config["ema_start"])
    GD = model.G_D(G, D)
    state_dict = {"itr": 0, "epoch": 0, "save_num": 0, "save_best_num": 0, "best_IS": 0,
                  "best_FID": 999999, "config": config}
    z_, y_ = utils.prepare_z_y(batch, G.dim_z, config["n_classes"], device=device)
    train = train_fns.GAN_training_function(G, D, GD, z_, y_, ema, state_dict, config)
    real = batch * config["num_D_steps"]
    res = config["resolution"]
    generator = torch.Generator().manual_seed(1)
    x = (torch.rand(real, 3, res, res, generator=generator) * 2 - 1).to(device)
    y = torch.randint(0, config["n_classes"], (real,), generator=generator).to(device)

    def iteration():
        state_dict["itr"] += 1
        G.train()
        D.train()
        G_ema.train()
        metrics = train(x, y)
        synchronize(device)
        return metrics

    params = sum(p.numel() for net in (G, D) for p in net.parameters())
    return iteration, params, real


def diffusion_iteration(setting: str, batch: int, width: int, device: str):
    """(one-iteration function, U-Net params, images per iteration)."""
    import torch
    import torch.distributed as dist

    root = checkout("IMPROVED_DIFFUSION_DIR", "improved_diffusion/train_util.py")
    sys.path[:0] = [root, os.path.join(root, "scripts")]
    world = types.SimpleNamespace(Get_rank=lambda: 0, rank=0, size=1, bcast=lambda v, root=0: v)
    stand_in("blobfile")
    stand_in("mpi4py", MPI=types.SimpleNamespace(COMM_WORLD=world))
    if isinstance(sys.modules["mpi4py"], types.SimpleNamespace):
        sys.modules["mpi4py.MPI"] = sys.modules["mpi4py"].MPI
    store = tempfile.mkdtemp()
    dist.init_process_group("nccl" if device == "cuda" else "gloo",
                            init_method="file://" + os.path.join(store, "group"),
                            rank=0, world_size=1)
    import image_train
    from improved_diffusion import dist_util, logger
    from improved_diffusion.resample import create_named_schedule_sampler
    from improved_diffusion.script_util import (
        args_to_dict,
        create_model_and_diffusion,
        model_and_diffusion_defaults,
    )
    from improved_diffusion.train_util import TrainLoop

    logger.configure(dir=store, format_strs=[])
    flags = DIFFUSION_FLAGS[setting].split() + [
        "--num_channels", str(width), "--batch_size", str(batch)]
    args = image_train.create_argparser().parse_args(flags)
    torch.manual_seed(0)
    model, diffusion = create_model_and_diffusion(
        **args_to_dict(args, model_and_diffusion_defaults().keys()))
    model.to(dist_util.dev())
    loop = TrainLoop(model=model, diffusion=diffusion, data=None, batch_size=args.batch_size,
                     microbatch=args.microbatch, lr=args.lr, ema_rate=args.ema_rate,
                     log_interval=args.log_interval, save_interval=args.save_interval,
                     resume_checkpoint=args.resume_checkpoint, use_fp16=args.use_fp16,
                     fp16_scale_growth=args.fp16_scale_growth,
                     schedule_sampler=create_named_schedule_sampler(args.schedule_sampler,
                                                                    diffusion),
                     weight_decay=args.weight_decay, lr_anneal_steps=args.lr_anneal_steps)
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(batch, 3, args.image_size, args.image_size, generator=generator) * 2 - 1

    def iteration():
        loop.run_step(images, {})
        loop.step += 1
        synchronize(device)

    return iteration, sum(p.numel() for p in model.parameters()), batch


def synchronize(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("setting", choices=sorted(SETTINGS))
    parser.add_argument("--batch", type=int, default=0, help="0: the setting's batch")
    parser.add_argument("--width", type=int, default=0, help="0: the setting's width")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=("default", "highest"), default="default")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: torch's own")
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()
    setting = SETTINGS[args.setting]
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    allow_tf32 = args.precision == "default"
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    torch.backends.cudnn.allow_tf32 = allow_tf32
    torch.backends.cudnn.benchmark = False
    build = biggan_iteration if setting.family == "biggan" else diffusion_iteration
    with contextlib.redirect_stdout(sys.stderr):
        iteration, params, images = build(args.setting, args.batch or setting.batch,
                                          args.width or setting.width, args.device)
    serve(iteration, {"params": params, "images_per_step": images, "torch": torch.__version__,
                      "threads": torch.get_num_threads()}, args.warmup)


if __name__ == "__main__":
    main()
