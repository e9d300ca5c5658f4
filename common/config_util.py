"""Load ml_collections configs named ``path/to/file.py[:variant]`` outside absl flags too."""

import importlib.util
import pathlib

import ml_collections


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
