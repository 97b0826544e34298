"""Entry points only parse and call: no ``bin`` module imports another (``bin/cli`` aside),
no bench script imports another (``bench/bench_common`` aside), and every ``--help`` works."""

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "espnet_supernet" / "bin"
ENTRY_POINTS = sorted(p.stem for p in BIN.glob("*.py") if p.stem not in ("__init__", "cli"))


def imported_modules(path: Path, package: str) -> set:
    """Absolute names of the modules ``path`` imports (relative imports resolved within
    ``package``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def test_no_bin_module_imports_another():
    allowed = {"espnet_supernet.bin", "espnet_supernet.bin.cli"}
    offending = {}
    for path in sorted(BIN.glob("*.py")):
        bad = {m for m in imported_modules(path, "espnet_supernet.bin")
               if (m == "espnet_supernet.bin" or m.startswith("espnet_supernet.bin."))
               and m not in allowed and not m.startswith("espnet_supernet.bin.cli.")}
        if bad:
            offending[path.name] = sorted(bad)
    assert not offending, f"bin modules importing other bin modules: {offending}"


def test_no_bench_script_imports_another():
    scripts = {p.stem for p in (ROOT / "bench").glob("*.py")}
    offending = {}
    for path in sorted((ROOT / "bench").glob("*.py")):
        bad = {m.split(".")[0] for m in imported_modules(path, "")} & scripts
        bad -= {"bench_common", path.stem}
        if bad:
            offending[path.name] = sorted(bad)
    assert not offending, f"bench scripts importing other bench scripts: {offending}"


def test_every_entry_point_has_a_usage_docstring():
    missing = [name for name in ENTRY_POINTS
               if "Usage:" not in (ast.get_docstring(ast.parse((BIN / f"{name}.py")
                                                               .read_text())) or "")]
    assert not missing, f"no Usage: section in the docstring of {missing}"


HELP_ALL = """
import contextlib, io, json, runpy, sys
results = {}
for name in sys.argv[1:]:
    module = f"espnet_supernet.bin.{name}"
    out, err = io.StringIO(), io.StringIO()
    sys.argv = [module, "--help"]
    code = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit as exit:
            code = exit.code
    results[name] = {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()[-2000:]}
print(json.dumps(results))
"""


def test_every_entry_point_answers_help():
    """``python -m espnet_supernet.bin.<name> --help`` of every module, run as
    ``__main__`` in one interpreter (one ESPnet import instead of one per module)."""
    out = subprocess.run([sys.executable, "-c", HELP_ALL, *ENTRY_POINTS], capture_output=True,
                         text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    for name in ENTRY_POINTS:
        result = results[name]
        assert result["code"] in (0, None), (name, result["stderr"])
        assert "usage:" in result["stdout"], (name, result["stdout"][:500], result["stderr"])
        assert "Traceback" not in result["stderr"], (name, result["stderr"])
