"""Fail (exit 1) when generated code differs from what `make generate` would write now.

Python stubs (clients/python/gen) are regenerated with scripts/generate.py in a scratch copy;
TypeScript stubs (clients/typescript/gen) with `buf generate -o <scratch>` (needs `make setup`).
"""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GEN = ROOT / "clients" / "python" / "gen" / "homa"
TS_GEN = ROOT / "clients" / "typescript" / "gen"
BUF = ROOT / "tools" / "node_modules" / ".bin" / "buf"


def _diff(left: Path, right: Path) -> list[str]:
    cmp = filecmp.dircmp(left, right)
    out = [f"only in committed: {left / n}" for n in cmp.left_only]
    out += [f"missing from committed: {left / n}" for n in cmp.right_only]
    out += [f"differs: {left / n}" for n in cmp.diff_files]
    for name in cmp.common_dirs:
        out += _diff(left / name, right / name)
    return out


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "repo"
        for part in ("protos", "third_party", "scripts"):
            shutil.copytree(ROOT / part, copy / part)
        subprocess.run([sys.executable, str(copy / "scripts" / "generate.py")], check=True)
        problems = _diff(GEN, copy / "clients" / "python" / "gen" / "homa")
        if not BUF.exists():
            print(f"{BUF} is missing: run `make setup`")
            return 1
        ts_out = Path(tmp) / "ts"
        subprocess.run([str(BUF), "generate", "-o", str(ts_out)], check=True, cwd=ROOT)
        problems += _diff(TS_GEN, ts_out / "clients" / "typescript" / "gen")
    problems = [p for p in problems if "__pycache__" not in p]
    for line in problems:
        print(line)
    if problems:
        print("generated code is stale: run `make generate` and commit the result")
        return 1
    print("generated code is current")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
