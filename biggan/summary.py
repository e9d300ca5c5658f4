r"""Print G and D parameter counts of a BigGAN config without allocating weights.

  python -m biggan.summary --config=configs/biggan/imagenet128.py:row8 [--json]
  python -m biggan.summary --list

Counts are trainable parameters only (no SN vectors, no BN statistics); G's count includes
its shared embedding, which is also printed alone. The paper's Table 1 "Param (M)" excludes
the shared embedding: ``params_M`` below follows that convention.
"""

import pathlib

import ml_collections

from biggan import model as biggan_model
from gencore.config_util import summary_main

CONFIG_DIR = pathlib.Path(__file__).resolve().parent.parent / "configs" / "biggan"


def summarize(config: ml_collections.ConfigDict) -> dict:
    """Parameter counts of ``config.model`` next to the paper's figure for the row."""
    counts = biggan_model.parameter_counts(config.model)
    total = counts["G_params"] + counts["D_params"] - counts["G_shared_embedding_params"]
    return {**counts, "params_M": round(total / 1e6, 3),
            "paper_params_M": config.paper.get("params_M"),
            "paper_source": config.paper.get("source")}


def list_row(s: dict) -> str:
    """One ``--list`` line after the config name."""
    return (f"G {s['G_params']:>12,d}  D {s['D_params']:>12,d}  "
            f"shared {s['G_shared_embedding_params']:>8,d}  {s['params_M']:8.3f}M  "
            f"paper {s['paper_params_M'] or '-'}")


def report(s: dict) -> str:
    """The counts of one config, one per line."""
    return (f"G parameters:              {s['G_params']:>14,d}\n"
            f"  of which shared embedding {s['G_shared_embedding_params']:>13,d}\n"
            f"D parameters:              {s['D_params']:>14,d}\n"
            f"G + D - shared (Table 1 convention): {s['params_M']:.3f} M"
            f"   paper: {s['paper_params_M'] or 'n/a'}")


if __name__ == "__main__":
    summary_main(CONFIG_DIR, "BigGAN", summarize, list_row, report)
