#!/usr/bin/env python3
"""Capture the reference's output files for the db golden suite.

Builds `fixture.sqlite` from `fixture.sql` in a temporary directory, runs the reference
(`aetherflow run --flow-yaml flow.yaml`, aetherflow-core 0.0.14) on `flow.yaml` there
(`{ROOT}` replaced by that directory), and copies every file the run wrote under the job's
artifacts directory to `golden/<relative path>`. `tests/integration/db_golden.rs` runs ours
on the same flow and fixture and compares the files byte for byte.

Usage (needs `pip install aetherflow-core==0.0.14`):

    python3 tests/golden/db/capture.py
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"
EXPECTED_VERSION = "0.0.14"


def main() -> int:
    version = metadata.version("aetherflow-core")
    if version != EXPECTED_VERSION:
        print(f"warning: aetherflow-core {version} installed, goldens were made with "
              f"{EXPECTED_VERSION}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        conn = sqlite3.connect(root / "fixture.sqlite")
        conn.executescript((HERE / "fixture.sql").read_text(encoding="utf-8"))
        conn.commit()
        conn.close()
        flow = (HERE / "flow.yaml").read_text(encoding="utf-8").replace("{ROOT}", str(root))
        (root / "flow.yaml").write_text(flow, encoding="utf-8")
        proc = subprocess.run(
            ["aetherflow", "run", "--flow-yaml", "flow.yaml"],
            cwd=root, capture_output=True, text=True,
        )
        if proc.returncode != 0:
            print(proc.stdout, proc.stderr, sep="\n", file=sys.stderr)
            print(f"the reference run failed (exit {proc.returncode})", file=sys.stderr)
            return 1
        arts = list((root / "work" / "golden_db" / "j").glob("*/artifacts"))
        if len(arts) != 1:
            print(f"expected one artifacts dir, found {arts}", file=sys.stderr)
            return 1
        if GOLDEN.exists():
            shutil.rmtree(GOLDEN)
        n = 0
        for f in sorted(arts[0].rglob("*")):
            if f.is_file():
                dest = GOLDEN / f.relative_to(arts[0])
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, dest)
                n += 1
        print(f"captured {n} files into {GOLDEN.relative_to(HERE.parent.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
