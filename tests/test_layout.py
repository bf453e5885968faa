"""The package's layout reads as the pipeline: a module imports only from its own stage or
earlier ones, never another module's private names, and the engine never imports a UI library."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ddpayne_core"

# Pipeline order (docs/pipeline.md): a module may import from its own rank or a lower one.
RANKS = [
    {"constants", "paths", "io_utils", "progress", "memory"},
    {"labels", "instrument"},
    {"io"},
    {"preprocess"},
    {"theory"},
    {"model"},
    {"fit"},
    {"flags"},
    {"catalog"},
    {"pipeline"},
    {"simulate"},
    {"validation"},
    {"app"},
    {"demo", "real", "desi_demo", "cli"},
]
UI_LIBRARIES = {"panel", "holoviews", "bokeh", "param", "matplotlib.pyplot"}


def rank(module: str) -> int:
    """Rank of 'ddpayne_core.<stage>[.x]'."""
    stage = module.split(".")[1]
    for k, names in enumerate(RANKS):
        if stage in names:
            return k
    raise AssertionError(f"{module}: stage {stage!r} has no place in RANKS")


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if len(parts) > 1:
            yield ".".join(parts), path


def imports(name: str, path: Path):
    """(imported module, imported names) for every import in the file, relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            yield target, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []


def test_no_module_imports_from_a_later_pipeline_stage():
    upward = []
    for name, path in modules():
        for target, names in imports(name, path):
            if not target.startswith("ddpayne_core"):
                continue
            targets = [target] if target != "ddpayne_core" else [f"ddpayne_core.{n}" for n in names]
            for t in targets:
                if rank(t) > rank(name):
                    upward.append(f"{name} imports {t}")
    assert not upward, upward


def test_no_private_name_is_imported_from_another_module():
    private = [f"{name} imports {target}.{n}" for name, path in modules()
               for target, names in imports(name, path)
               for n in names if n.startswith("_") and n != "__future__" and target != "__future__"]
    assert not private, private


def test_the_engine_imports_no_ui_library():
    found = [f"{name} imports {target}" for name, path in modules()
             for target, _ in imports(name, path)
             if target in UI_LIBRARIES or target.split(".")[0] in UI_LIBRARIES - {"matplotlib.pyplot"}]
    assert not found, found


def test_the_rule_catches_an_upward_import(tmp_path):
    """The checker itself: a flags module importing the app would be reported."""
    fake = tmp_path / "bad.py"
    fake.write_text("from ..app.explore import load_bundle\n")
    found = list(imports("ddpayne_core.flags.bad", fake))
    assert found == [("ddpayne_core.app.explore", ["load_bundle"])]
    assert rank(found[0][0]) > rank("ddpayne_core.flags.bad")


@pytest.mark.parametrize("subpackage", ["io", "preprocess", "model", "fit", "flags", "simulate",
                                        "validation", "app", "theory"])
def test_every_stage_says_what_comes_in_and_goes_out(subpackage):
    import importlib

    module = importlib.import_module(f"ddpayne_core.{subpackage}")
    assert module.__doc__ and len(module.__doc__) > 80
    assert all(hasattr(module, n) for n in getattr(module, "__all__", []))


def test_importing_the_package_has_no_side_effects_and_stays_light():
    import subprocess
    import sys

    code = ("import sys, matplotlib; b = matplotlib.get_backend(); import ddpayne_core; "
            "print('torch' in sys.modules, matplotlib.get_backend() == b, len(ddpayne_core.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    torch_loaded, same_backend, n_api = out.stdout.split()
    assert torch_loaded == "False" and same_backend == "True" and int(n_api) > 20
