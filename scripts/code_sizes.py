"""Module and function sizes in lines, per service package: count, median and the largest,
and the server-side SQL functions that run (the last definition of each: the store's repeatable
files win over the versioned migrations, a later migration over an earlier one).

Usage: python scripts/code_sizes.py [ROOT]   (ROOT defaults to the repository)
"""

from __future__ import annotations

import ast
import re
import statistics
import sys
from pathlib import Path

PACKAGES = ("auth_service", "loyalty_service", "gateway", "common")
SQL_HOMES = {"auth_service": "auth", "loyalty_service": "loyalty"}
Sized = tuple[int, str]
_SQL_FUNCTION = re.compile(
    r"CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+(\w+).*?(\$\w*\$).*?\2[^;]*;", re.S | re.I
)


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


def sql_functions(root: Path, package: str) -> list[Sized]:
    """The functions that run: each name's last definition, with its length in lines."""
    if package not in SQL_HOMES:
        return []
    files = sorted((root / "migrations" / SQL_HOMES[package]).glob("*.sql"))
    files += sorted((root / package / "store" / "sql").glob("*.sql"))
    found: dict[str, Sized] = {}
    for path in files:
        text = path.read_text()
        for match in _SQL_FUNCTION.finditer(text):
            start = text.count("\n", 0, match.start()) + 1
            length = match.group(0).count("\n") + 1
            where = f"{path.relative_to(root)}:{start}"
            found[match.group(1)] = (length, f"{match.group(1)} ({where})")
    return list(found.values())


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
        if sql := sql_functions(root, package):
            every_function += sql
            print(line(package, "sql funcs", sql))
    print(line("ALL", "modules", every_module))
    print(line("ALL", "functions", every_function) + "  (Python and SQL)")


if __name__ == "__main__":
    main()
