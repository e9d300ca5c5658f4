r"""Print G and D parameter counts of a BigGAN config without allocating weights.

  python -m biggan.summary --config=configs/biggan/imagenet128.py:row8 [--json]
  python -m biggan.summary --list

Counts are trainable parameters only (no SN vectors, no BN statistics); G's count includes
its shared embedding, which is also printed alone. The paper's Table 1 "Param (M)" excludes
the shared embedding: ``params_M`` below follows that convention.
"""

import json
import os
import pathlib

import ml_collections
from absl import app, flags
from ml_collections import config_flags

from biggan import models
from common.config_util import config_variants, load_config

CONFIG_DIR = pathlib.Path(__file__).resolve().parent.parent / "configs" / "biggan"

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file[:variant].")
_JSON = flags.DEFINE_bool("json", False, "Print one JSON object.")
_LIST = flags.DEFINE_bool("list", False, "List every BigGAN config with its counts.")


def summarize(config: ml_collections.ConfigDict) -> dict:
    """Parameter counts of ``config.model`` next to the paper's figure for the row."""
    counts = models.parameter_counts(config.model)
    total = counts["G_params"] + counts["D_params"] - counts["G_shared_embedding_params"]
    return {**counts, "params_M": round(total / 1e6, 3),
            "paper_params_M": config.paper.get("params_M"),
            "paper_source": config.paper.get("source")}


def main(argv: list[str]) -> None:
    del argv
    if _LIST.value:
        for name in config_variants(os.path.relpath(CONFIG_DIR)):
            s = summarize(load_config(name))
            print(f"{name:52s} G {s['G_params']:>12,d}  D {s['D_params']:>12,d}  "
                  f"shared {s['G_shared_embedding_params']:>8,d}  {s['params_M']:8.3f}M  "
                  f"paper {s['paper_params_M'] or '-'}")
        return
    if _CONFIG.value is None:
        raise app.UsageError("Pass --config=<file>[:variant] or --list.")
    s = summarize(_CONFIG.value)
    if _JSON.value:
        print(json.dumps(s))
        return
    print(f"config: {flags.FLAGS['config'].config_filename}  ({s['paper_source']})")
    print(f"G parameters:              {s['G_params']:>14,d}")
    print(f"  of which shared embedding {s['G_shared_embedding_params']:>13,d}")
    print(f"D parameters:              {s['D_params']:>14,d}")
    print(f"G + D - shared (Table 1 convention): {s['params_M']:.3f} M"
          f"   paper: {s['paper_params_M'] or 'n/a'}")


if __name__ == "__main__":
    app.run(main)
