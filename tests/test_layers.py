"""The code's shape stays as issue 13 left it: one direction of dependencies between the layers
(the contracts in pyproject.toml, checked by import-linter), no import circle anywhere, and no
module past 600 lines (migrations aside)."""

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("config", "analytics", "dashboard")


def test_no_module_imports_a_layer_above_its_own():
    done = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


def test_there_is_no_import_circle():
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    circles = set()
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            if imported != importer and graph.chain_exists(importer=imported, imported=importer):
                circles.add(tuple(sorted((importer, imported))))
    # A package's __init__ re-exporting its own modules is not a circle of the code.
    circles = {
        c for c in circles if not (c[1].startswith(c[0] + ".") or c[0].startswith(c[1] + "."))
    }
    assert not circles, "\n".join(
        " -> ".join(graph.find_shortest_chain(importer=a, imported=b)) + f" -> {a}"
        for a, b in sorted(circles)
    )


def test_no_module_is_over_600_lines():
    long = {
        str(path.relative_to(ROOT)): n
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts and (n := len(path.read_text().splitlines())) > 600
    }
    assert not long, long


def _ruff(*args):
    ruff = str(Path(sys.executable).parent / "ruff")
    return subprocess.run(
        [ruff, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_code_passes_the_linter_and_is_laid_out_by_the_formatter():
    checked = _ruff("check", "--no-cache", "--output-format", "concise", ".")
    assert checked.returncode == 0, checked.stdout[-6000:]
    formatted = _ruff("format", "--check", "--no-cache", ".")
    assert formatted.returncode == 0, formatted.stdout[-6000:] + "\n(run `make format`)"


def test_the_formatter_is_not_switched_off():
    skipped = [
        f"{path.relative_to(ROOT)}:{n}"
        for top in (*PACKAGES, "tests", "bench")
        for path in (ROOT / top).rglob("*.py")
        if "migrations" not in path.parts and path.name != "test_layers.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "fmt: skip" in line or "fmt: off" in line
    ]
    assert not skipped, skipped
