#!/usr/bin/env python3
"""Check that per-ISA object files define no symbols the linker could share across ISAs.

An inline function or template instantiated in an *_avx512.cpp object is emitted as a weak
(COMDAT) symbol; if another object also uses it, the linker keeps ONE copy — possibly the
AVX-512 one — and an AVX2-only CPU crashes with SIGILL. So ISA objects may only define strong
symbols in their own namespace and local symbols.

Usage: tools/check_isa_objects.py BUILD_DIR   (exit 1 and a list when something is shared)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def shared_symbols(obj: Path) -> list[str]:
    out = subprocess.run(["nm", "-C", "--defined-only", str(obj)], capture_output=True, text=True,
                         check=True).stdout
    bad = []
    for line in out.splitlines():
        parts = line.split(maxsplit=2)
        if len(parts) == 3 and parts[1] in ("W", "V", "u"):
            name = parts[2]
            # Instantiations keyed on a lambda type are unique to this object: safe.
            if "{lambda" in name or "::$_" in name:
                continue
            bad.append(name)
    return bad


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path("build")
    objs = [p for p in root.rglob("*.o") if p.name.split(".")[0].endswith(("_avx2", "_avx512"))]
    if not objs:
        print(f"no per-ISA objects under {root}", file=sys.stderr)
        return 2
    failed = False
    for obj in sorted(objs):
        bad = shared_symbols(obj)
        if bad:
            failed = True
            print(f"{obj}: {len(bad)} weak symbol(s) shared across ISAs:")
            for b in bad[:20]:
                print(f"    {b}")
    print(f"checked {len(objs)} per-ISA objects: {'FAIL' if failed else 'ok'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
