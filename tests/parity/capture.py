#!/usr/bin/env python3
"""Capture the reference's `validate --json` verdicts for the parity corpus.

Runs the reference CLI (aetherflow-core, the Python implementation) on every
`corpus/NNN-name.yaml`, with a clean environment plus the optional sidecar
`corpus/NNN-name.env` (KEY=VALUE lines, split at the first `=`, values kept
verbatim), cwd = the corpus directory, and writes `golden/NNN-name.json`:

    {"reference": "aetherflow-core <version>", "exit_code": N,
     "report": <parsed JSON report or null>, "stderr_tail": "..."}

Usage (needs `pip install aetherflow-core==0.0.14`):

    python3 tests/parity/capture.py            # all corpus files
    python3 tests/parity/capture.py 057 070    # only files whose name starts so
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
GOLDEN = HERE / "golden"
EXPECTED_VERSION = "0.0.14"


def read_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    if not path.exists():
        return env
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise SystemExit(f"{path}: line without '=': {line!r}")
        env[key] = value
    return env


def main(argv: list[str]) -> int:
    version = metadata.version("aetherflow-core")
    if version != EXPECTED_VERSION:
        print(f"warning: aetherflow-core {version} installed, goldens were made with "
              f"{EXPECTED_VERSION}", file=sys.stderr)
    GOLDEN.mkdir(exist_ok=True)
    files = sorted(CORPUS.glob("*.yaml"))
    if argv:
        files = [f for f in files if any(f.name.startswith(a) for a in argv)]
    for flow in files:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            # Deterministic set ordering in messages (the test normalises it anyway).
            "PYTHONHASHSEED": "0",
        }
        env.update(read_env(flow.with_suffix(".env")))
        proc = subprocess.run(
            [sys.executable, "-c", "import sys; from aetherflow.core.cli import main; "
             "sys.exit(main())", "validate", "--flow-yaml", flow.name, "--json"],
            cwd=CORPUS, env=env, capture_output=True, text=True, timeout=120,
        )
        report = None
        out = proc.stdout.strip()
        if out:
            try:
                # The report is the first line; anything after it is not JSON.
                report = json.loads(out.splitlines()[0])
            except json.JSONDecodeError:
                report = None
        golden = {
            "reference": f"aetherflow-core {version}",
            "exit_code": proc.returncode,
            "report": report,
            "stderr_tail": proc.stderr[-600:],
        }
        (GOLDEN / (flow.stem + ".json")).write_text(
            json.dumps(golden, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"{flow.name}: exit {proc.returncode}, "
              f"{'no report' if report is None else 'ok=' + str(report.get('ok'))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
