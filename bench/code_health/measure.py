"""Code-health figures of issue 18: lines per module, long functions, CLI start-up.

Usage: ``python bench/code_health/measure.py [REPO]`` (default: this checkout). Prints Markdown.
Counts production packages only (not tests, bench). A function's length is its line span
(decorators to last line), as reviewers read it. Start-up is the median of 5 runs of the installed
``mmdx`` in REPO/.venv (or the one on PATH), in wall seconds and in CPU seconds (user + system): on a shared,
loaded machine the CPU time is the comparable figure.
"""

from __future__ import annotations

import ast
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ("core", "store", "ingest", "ecg", "models", "reports", "pacs_bridge", "app")
LONG_FUNCTION = 80
LONG_MODULE = 800


def modules(repo: Path) -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (repo / pkg).rglob("*.py") if "migrations" not in p.parts)


def long_functions(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            span = (node.end_lineno or node.lineno) - start + 1
            if span > LONG_FUNCTION:
                out.append((node.name, span))
    return out


def startup(repo: Path, args: list[str]) -> tuple[float, float]:
    exe = repo / ".venv" / "bin" / "mmdx"
    cmd = [str(exe) if exe.exists() else (shutil.which("mmdx") or "mmdx"), *args]
    wall, cpu = [], []
    for _ in range(5):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=False, cwd=repo)
        wall.append(time.perf_counter() - t)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    repo = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    mods = modules(repo)
    sizes = {m: len(m.read_text(encoding="utf-8").splitlines()) for m in mods}
    longs = [(m, name, n) for m in mods for name, n in long_functions(m)]
    print(f"- production modules: {len(mods)}, lines: {sum(sizes.values())}")
    big = sorted(((n, m) for m, n in sizes.items() if n > LONG_MODULE), reverse=True)
    print(f"- modules over {LONG_MODULE} lines: {len(big)}")
    for n, m in big:
        print(f"  - {m.relative_to(repo)}: {n}")
    print(f"- functions over {LONG_FUNCTION} lines: {len(longs)}")
    for m, name, n in sorted(longs, key=lambda x: -x[2]):
        print(f"  - {m.relative_to(repo)}:{name}: {n}")
    for args in (["--help"], ["--version"]):
        wall, cpu = startup(repo, args)
        print(f"- `mmdx {' '.join(args)}`: {wall:.2f} s wall, {cpu:.2f} s CPU (median of 5)")


if __name__ == "__main__":
    main()
