"""Regenerate the Python protobuf and gRPC code under clients/python/gen, deterministically.

Run through `make generate`. Every `.proto` under protos/homa is compiled with grpc_tools' protoc
(python, grpc_python) and mypy-protobuf (typed stubs). The output tree is wiped first so that a
removed proto never leaves a stale module behind, and an `__init__.py` is written into every
package so that `homa` is a regular package.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
THIRD_PARTY = ROOT / "third_party" / "googleapis"
OUT = ROOT / "clients" / "python" / "gen"


def main() -> int:
    protos = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / "homa").rglob("*.proto"))
    target = OUT / "homa"
    if target.exists():
        shutil.rmtree(target)
    OUT.mkdir(parents=True, exist_ok=True)
    bundled = Path(grpc_tools.__file__).parent / "_proto"
    bindir = Path(sys.executable).parent
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{THIRD_PARTY}",
        f"-I{bundled}",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={OUT}",
        f"--grpc_python_out={OUT}",
        f"--mypy_out={OUT}",
        f"--mypy_grpc_out={OUT}",
        *protos,
    ]
    code = protoc.main(args)
    if code != 0:
        return int(code)
    for directory in [target, *sorted(p for p in target.rglob("*") if p.is_dir())]:
        (directory / "__init__.py").write_text("")
    (target / "py.typed").write_text("")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
