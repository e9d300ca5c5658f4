r"""Print the U-Net parameter count of a diffusion config without allocating weights.

  python -m diffusion.summary --config=configs/diffusion/ddpm_cifar10.py [--json]
  python -m diffusion.summary --list
"""

import pathlib

import ml_collections

from diffusion.model import parameter_count
from gencore.config_util import summary_main

CONFIG_DIR = pathlib.Path(__file__).resolve().parent.parent / "configs" / "diffusion"


def summarize(config: ml_collections.ConfigDict) -> dict:
    """Parameter count of ``config.model`` next to the paper's figures for the row."""
    params = parameter_count(config)
    return {"params": params, "params_M": round(params / 1e6, 3),
            "paper_params": config.paper.get("params"),
            "paper_params_M": config.paper.get("params_M"),
            "paper_source": config.paper.get("source")}


def list_row(s: dict) -> str:
    """One ``--list`` line after the config name."""
    return f"{s['params']:>12,d}  {s['params_M']:8.3f}M  paper {s['paper_params_M'] or '-'}"


def report(s: dict) -> str:
    """The count of one config."""
    return f"U-Net parameters: {s['params']:>14,d}   paper: {s['paper_params_M'] or 'n/a'} M"


if __name__ == "__main__":
    summary_main(CONFIG_DIR, "diffusion", summarize, list_row, report)
