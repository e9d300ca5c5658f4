"""Load ml_collections configs named ``path/to/file.py[:variant]`` outside absl flags too, and
the parameter-count summary command of ``biggan.summary`` / ``diffusion.summary``."""

import importlib.util
import json
import os
import pathlib
from collections.abc import Callable

import ml_collections
from absl import app, flags
from ml_collections import config_flags


def load_config(spec: str) -> ml_collections.ConfigDict:
    """Load ``configs/biggan/imagenet128.py:row8`` (the variant is passed to get_config)."""
    path, _, arg = spec.partition(":")
    file = pathlib.Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"Config file {path!r} not found (from --config={spec!r}).")
    module_spec = importlib.util.spec_from_file_location(f"_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg or None)


def config_variants(config_dir: str | pathlib.Path) -> list[str]:
    """Every ``file.py[:variant]`` name defined by the config files in ``config_dir``.

    A config file lists its variants in a module-level ``VARIANTS`` tuple (empty: no variant).
    """
    names = []
    for file in sorted(pathlib.Path(config_dir).glob("*.py")):
        if file.stem in ("__init__", "base"):
            continue
        module_spec = importlib.util.spec_from_file_location(f"_config_{file.stem}", file)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        variants = getattr(module, "VARIANTS", ())
        names += [f"{file}:{v}" for v in variants] if variants else [str(file)]
    return names


def summary_main(config_dir: str | pathlib.Path, family: str,
                 summarize: Callable[[ml_collections.ConfigDict], dict],
                 list_row: Callable[[dict], str], report: Callable[[dict], str]) -> None:
    """``python -m <model>.summary --config=FILE[:variant] [--json]`` or ``--list``.

    summarize(config) -> a JSON-able dict with 'paper_source'; --json prints it, --list prints
    ``list_row`` of it for every config of ``config_dir``, otherwise ``report`` of it is printed
    under the config's name. Defines the flags, so call it only under ``__main__``.
    """
    config = config_flags.DEFINE_config_file("config", None, "Config file[:variant].")
    as_json = flags.DEFINE_bool("json", False, "Print one JSON object.")
    list_all = flags.DEFINE_bool("list", False, f"List every {family} config with its counts.")

    def main(argv: list[str]) -> None:
        del argv
        if list_all.value:
            for name in config_variants(os.path.relpath(config_dir)):
                print(f"{name:52s} {list_row(summarize(load_config(name)))}")
            return
        if config.value is None:
            raise app.UsageError("Pass --config=<file>[:variant] or --list.")
        s = summarize(config.value)
        if as_json.value:
            print(json.dumps(s))
            return
        print(f"config: {flags.FLAGS['config'].config_filename}  ({s['paper_source']})")
        print(report(s))

    app.run(main)
