"""The docstring examples run and give what they show: every module of the package whose
source has one (found by walking the package, so a new module is covered without a list)."""

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import mfnn


def _modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(mfnn.__path__, prefix="mfnn."):
        spec = importlib.util.find_spec(info.name)
        if spec is not None and spec.origin and ">>> " in Path(spec.origin).read_text():
            names.append(info.name)
    return sorted(names)


MODULES = _modules_with_examples()


def test_the_walk_finds_the_modules():
    assert {"mfnn.simulate", "mfnn.targets", "mfnn.sweep", "mfnn.diagnostics.transport"} <= set(
        MODULES
    )


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
