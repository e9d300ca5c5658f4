"""Load ml_collections configs named ``path/to/file.py[:variant]`` outside absl flags too,
check ``--config`` and its ``--config.<section>.<field>=`` overrides before anything else runs,
read the numbers of list flags (``--classes=1,7``) with a one-line error, and the
parameter-count summary command of ``biggan.summary`` / ``diffusion.summary``."""

import difflib
import importlib.util
import json
import os
import pathlib
import sys
from collections.abc import Callable, Sequence

import ml_collections
from absl import app, flags
from ml_collections import config_flags

from gencore.console import stop_on_error


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


def unknown_override(config: ml_collections.ConfigDict, path: str) -> str | None:
    """Why ``--config.<path>`` names no field of ``config`` (the valid names at the first
    unknown part and the closest one), or None if it does."""
    node: object = config
    parts = path.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(node, ml_collections.ConfigDict):
            return None   # inside a field's own value (e.g. a tuple index): ml_collections checks
        if part not in node:
            where = ".".join(["config", *parts[:depth]])
            names = sorted(node.keys())
            close = difflib.get_close_matches(part, names, n=1, cutoff=0.5)
            hint = f" Did you mean {where}.{close[0]}?" if close else ""
            return (f"Unknown config field --config.{path}: {where} has no field {part!r}.{hint} "
                    f"Its fields: {', '.join(names)}.")
        node = node[part]
    return None


def check_config_arguments(argv: Sequence[str] | None = None, flag: str = "config") -> None:
    """Exits with one line if ``--<flag>=FILE[:variant]`` in ``argv`` (default ``sys.argv``)
    cannot be loaded (missing file, unknown variant, a config error), or if a
    ``--<flag>.<path>=`` override names no field of it (the line names the valid fields and the
    closest one). Call it before ``app.run``: it runs before any model is built."""
    argv = sys.argv if argv is None else argv
    spec, paths = None, []
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{flag}="):
            spec = arg.split("=", 1)[1]
        elif arg == f"--{flag}" and i + 1 < len(argv):
            spec = argv[i + 1]
        elif arg.startswith(f"--{flag}."):
            paths.append(arg[len(flag) + 3:].split("=", 1)[0])
    if spec is None:
        return
    try:
        config = load_config(spec)
    except Exception as error:
        sys.exit(f"--{flag}={spec}: {type(error).__name__}: {error}")
    for path in paths:
        problem = unknown_override(config, path)
        if problem:
            sys.exit(problem)


def parse_numbers(values: list[str], kind: type, flag: str, example: str) -> tuple:
    """``values`` of a list flag as ``kind`` (int or float), or a one-line error naming it."""
    try:
        return tuple(kind(v) for v in values)
    except ValueError:
        raise ValueError(f"--{flag}={','.join(values)}: pass {kind.__name__} values, e.g. "
                         f"--{flag}={example}.") from None


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

    check_config_arguments()
    app.run(stop_on_error("summary", main))
