"""A script of ``benchmarks/`` loaded as a module, for the tests of its pure parts (the scripts are not a
package: they run as ``python benchmarks/NAME.py``)."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).parents[1]


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/NAME.py`` as the module ``bench_NAME``, registered in ``sys.modules`` because its
    dataclasses look their module up by name; :func:`unload_benchmark` takes it out again."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def unload_benchmark(name: str) -> None:
    sys.modules.pop(f"bench_{name}", None)
