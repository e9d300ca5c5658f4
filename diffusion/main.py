r"""Train a diffusion model.

  python -m diffusion.main --config=configs/diffusion/digits.py --workdir=workdirs/ddpm_digits
  python -m diffusion.main --config=configs/diffusion/ddpm_cifar10.py --workdir=gs://... \
      --multihost --config.data.data_dir=gs://.../tensorflow_datasets

Restarting with the same workdir resumes from its latest checkpoint.
"""

from diffusion import train
from gencore.training import train_main

if __name__ == "__main__":
    train_main("configs/diffusion/digits.py", train.train_and_evaluate)
