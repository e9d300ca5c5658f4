r"""Train a diffusion model.

  python -m diffusion.main --config=configs/diffusion/digits.py --workdir=workdirs/ddpm_digits
  python -m diffusion.main --config=configs/diffusion/ddpm_cifar10.py --workdir=gs://... \
      --multihost --config.data.data_dir=gs://.../tensorflow_datasets

Restarting with the same workdir resumes from its latest checkpoint.
"""

from absl import app, flags
from ml_collections import config_flags

from common.training import setup_process
from diffusion import train

_CONFIG = config_flags.DEFINE_config_file("config", "configs/diffusion/digits.py",
                                          "Config file[:variant]; fields overridable.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, logs and samples go here.",
                               required=True)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    setup_process()
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
