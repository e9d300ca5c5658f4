"""docs/paper_map.md points at code that exists.

Reads every Markdown table of docs/paper_map.md whose last column is "code" and checks each
backticked entry of that column:

- ``path/to/module.py:name`` (name possibly dotted, e.g. ``Class.method``): the module imports
  and the attribute exists;
- ``configs/<family>/<file>.py[:variant]``: the config loads with
  ``gencore.config_util.load_config`` (the variant passed to its ``get_config``).

Imports and config loading only: no model is built. Also checks that the map is not empty (at
least 40 rows) and that every row names some code.
"""

import functools
import importlib
import pathlib
import re

import pytest

from gencore.config_util import load_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAPER_MAP = ROOT / "docs" / "paper_map.md"
MIN_ROWS = 40

CELL_SPLIT = re.compile(r"(?<!\\)\|")   # Markdown cell borders; '\|' is a literal bar
CODE_SPAN = re.compile(r"`([^`]+)`")
REFERENCE = re.compile(r"(?P<path>[\w/]+\.py)(?::(?P<name>[\w.]+))?")


def table_rows(text: str) -> list[tuple[str, str]]:
    """(paper item, code cell) of every body row of the tables whose last header is 'code'."""
    rows, in_code_table = [], False
    for line in text.splitlines():
        if not line.startswith("|"):
            in_code_table = False
            continue
        cells = [cell.strip() for cell in CELL_SPLIT.split(line.strip())[1:-1]]
        if cells and cells[-1] == "code":
            in_code_table = True
        elif in_code_table and not set("".join(cells)) <= set("-: "):
            rows.append((cells[0], cells[-1]))
    return rows


ROWS = table_rows(PAPER_MAP.read_text())
REFERENCES = sorted({ref for _, code in ROWS for ref in CODE_SPAN.findall(code)})


def test_map_has_rows_and_every_row_names_code():
    assert len(ROWS) >= MIN_ROWS, f"{PAPER_MAP} has {len(ROWS)} table rows, expected >= {MIN_ROWS}"
    empty = [item for item, code in ROWS if not CODE_SPAN.findall(code)]
    assert not empty, f"rows without code: {empty}"


@functools.cache
def config(path: str, variant: str | None):
    return load_config(f"{ROOT / path}:{variant}" if variant else str(ROOT / path))


@pytest.mark.parametrize("reference", REFERENCES)
def test_reference_resolves(reference):
    match = REFERENCE.fullmatch(reference)
    assert match, f"{reference!r} is not 'path/to/file.py:name' or a config name"
    path, name = match["path"], match["name"]
    assert (ROOT / path).is_file(), f"{path} does not exist"
    if path.startswith("configs/"):
        assert config(path, name) is not None
        return
    assert name, f"{reference!r} names a module but no function or class in it"
    target = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    for part in name.split("."):
        assert hasattr(target, part), f"{reference}: {target!r} has no attribute {part!r}"
        target = getattr(target, part)
