"""Module and function sizes in lines, per service package: count, median and the largest.

Usage: python scripts/code_sizes.py [ROOT]   (ROOT defaults to the repository)
"""

from __future__ import annotations

import ast
import statistics
import sys
from pathlib import Path

PACKAGES = ("auth_service", "loyalty_service", "gateway", "common")
Sized = tuple[int, str]


def sizes(root: Path, package: str) -> tuple[list[Sized], list[Sized]]:
    modules: list[Sized] = []
    functions: list[Sized] = []
    for path in sorted((root / package).rglob("*.py")):
        source = path.read_text()
        name = str(path.relative_to(root))
        modules.append((len(source.splitlines()), name))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                functions.append((length, f"{name}:{node.name}"))
    return modules, functions


def line(label: str, kind: str, sized: list[Sized]) -> str:
    largest = max(sized)
    median = statistics.median(size for size, _ in sized)
    return (
        f"{label:16} {kind:9} count={len(sized):4} median={median:5.1f}"
        f" max={largest[0]:4} ({largest[1]})"
    )


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent
    every_module: list[Sized] = []
    every_function: list[Sized] = []
    for package in PACKAGES:
        modules, functions = sizes(root, package)
        every_module += modules
        every_function += functions
        print(line(package, "modules", modules))
        print(line(package, "functions", functions))
    print(line("ALL", "modules", every_module))
    print(line("ALL", "functions", every_function))


if __name__ == "__main__":
    main()
