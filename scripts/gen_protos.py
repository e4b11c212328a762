"""Generate Python code and .pyi stubs from protos/ (make proto), or check it is current.

The code lands in the package `protogen` (protogen/loyalty/auth/v1/auth_pb2.py, ...): its name
says it is generated, and keeps the proto package `loyalty.*` from reading as a third service
beside auth_service and loyalty_service. protoc writes imports by proto path (`from
loyalty.auth.v1 import ...`), so they are rewritten to `from protogen.loyalty...`."""

from __future__ import annotations

import filecmp
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import google.api
from grpc_tools import protoc  # noqa: F401  (fails early when grpcio-tools is missing)

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GOOGLEAPIS = Path(next(iter(google.api.__path__))).parent.parent


PACKAGE = "protogen"
_OWN_IMPORT = re.compile(r"(?m)^(from|import) loyalty\.")


def generate(root: Path) -> None:
    out = root / PACKAGE
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{GOOGLEAPIS}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *files,
    ]
    subprocess.run(cmd, check=True, cwd=PROTOS)
    for directory in [out, *out.rglob("*")]:
        if directory.is_dir():
            (directory / "__init__.py").touch()
    for module in [*out.rglob("*.py"), *out.rglob("*.pyi")]:
        text = module.read_text()
        module.write_text(_OWN_IMPORT.sub(rf"\1 {PACKAGE}.loyalty.", text))


def differences(left: Path, right: Path) -> list[str]:
    cmp = filecmp.dircmp(left, right, ignore=["__pycache__"])
    found = [*cmp.left_only, *cmp.right_only, *cmp.diff_files]
    for name, sub in cmp.subdirs.items():
        found += [f"{name}/{d}" for d in differences(Path(sub.left), Path(sub.right))]
    return found


def main(argv: list[str]) -> int:
    if argv[:1] != ["--check"]:
        generate((Path(argv[0]) if argv else ROOT).resolve())
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        stale = differences(Path(tmp) / PACKAGE, ROOT / PACKAGE)
    if stale:
        print("generated code is stale; run `make proto`:", *stale, sep="\n  ")
        return 1
    print("generated code is current")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
