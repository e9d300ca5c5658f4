r"""Train BigGAN.

  python -m biggan.main --config=configs/biggan/digits.py --workdir=workdirs/digits
  python -m biggan.main --config=configs/biggan/imagenet128.py:row8 --workdir=gs://... \
      --multihost --config.data.data_dir=gs://.../tensorflow_datasets

Restarting with the same workdir resumes from its latest checkpoint.
"""

from biggan import train
from gencore.training import train_main

if __name__ == "__main__":
    train_main("configs/biggan/digits.py", train.train_and_evaluate)
