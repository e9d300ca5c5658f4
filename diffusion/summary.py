r"""Print the U-Net parameter count of a diffusion config without allocating weights.

  python -m diffusion.summary --config=configs/diffusion/ddpm_cifar10.py [--json]
  python -m diffusion.summary --list
"""

import json
import os
import pathlib

import ml_collections
from absl import app, flags
from ml_collections import config_flags

from common.config_util import config_variants, load_config
from diffusion.model import parameter_count

CONFIG_DIR = pathlib.Path(__file__).resolve().parent.parent / "configs" / "diffusion"

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file[:variant].")
_JSON = flags.DEFINE_bool("json", False, "Print one JSON object.")
_LIST = flags.DEFINE_bool("list", False, "List every diffusion config with its count.")


def summarize(config: ml_collections.ConfigDict) -> dict:
    """Parameter count of ``config.model`` next to the paper's figures for the row."""
    params = parameter_count(config)
    return {"params": params, "params_M": round(params / 1e6, 3),
            "paper_params": config.paper.get("params"),
            "paper_params_M": config.paper.get("params_M"),
            "paper_source": config.paper.get("source")}


def main(argv: list[str]) -> None:
    del argv
    if _LIST.value:
        for name in config_variants(os.path.relpath(CONFIG_DIR)):
            s = summarize(load_config(name))
            print(f"{name:52s} {s['params']:>12,d}  {s['params_M']:8.3f}M  "
                  f"paper {s['paper_params_M'] or '-'}")
        return
    if _CONFIG.value is None:
        raise app.UsageError("Pass --config=<file>[:variant] or --list.")
    s = summarize(_CONFIG.value)
    if _JSON.value:
        print(json.dumps(s))
        return
    print(f"config: {flags.FLAGS['config'].config_filename}  ({s['paper_source']})")
    print(f"U-Net parameters: {s['params']:>14,d}   paper: {s['paper_params_M'] or 'n/a'} M")


if __name__ == "__main__":
    app.run(main)
