"""Every paper config has a ``runlocal`` variant (``file.py:row8,runlocal``, or
``file.py:runlocal``): the same row's layout, shrunk to run on a CPU on the embedded digits, and
valid for its family's train step. The tests' tiny configs start from the digits ones."""

import jax
import pytest

from biggan import train_step as biggan_step
from diffusion import train_step as diffusion_step
from gencore import sharding
from gencore.config_util import config_variants, load_config

ROWS = config_variants("configs/biggan") + config_variants("configs/diffusion")


def runlocal_name(name: str) -> str:
    return f"{name},runlocal" if ":" in name else f"{name}:runlocal"


@pytest.mark.parametrize("name", ROWS)
def test_runlocal_keeps_the_layout_and_shrinks_the_rest(name):
    full, small = load_config(name), load_config(runlocal_name(name))
    assert small.data.name == "digits" and small.train.batch_size == 16
    assert small.train.steps == 4 and small.eval.num_samples == 16
    sharding.check_batch_divisible(small.eval.batch_size, jax.device_count(),
                                   "config.eval.batch_size")   # 8 devices here
    assert small.data.resolution == full.data.resolution          # the row's layout
    assert small.model.num_classes in (0, 10)
    if "biggan" in name:
        assert (small.model.name, small.model.hier) == (full.model.name, full.model.hier)
        assert small.model.g_ch == 8
        biggan_step.validate_train_config(small, jax.device_count())
    else:
        assert small.diffusion.loss_type == full.diffusion.loss_type
        assert small.model.learn_sigma == full.model.learn_sigma and small.model.ch == 32
        diffusion_step.validate_train_config(small, jax.device_count())


def test_unknown_variant_names_the_runlocal_form():
    with pytest.raises(ValueError, match="row10.*'<variant>,runlocal'"):
        load_config("configs/biggan/imagenet128.py:row10,runlocal")
