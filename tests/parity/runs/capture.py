#!/usr/bin/env python3
"""Capture the reference's `run` behaviour for the run-time parity cases.

Every case is a directory `cases/NN-name/` with `flow.yaml` (and any other files it
needs) and `case.json`:

    {"description": "...",
     "env": {"A": "x"},                       # added to a clean environment (PATH only)
     "runs": [{"args": ["run", "--flow-yaml", "flow.yaml", "--run-id", "r1"],
               "before": {"sleep": 2, "touch": ["flag"], "remove": ["flag"]}}],
     "paths": ["work/f/a/r1"],                # existence recorded after every run
     "stderr_contains": ["Lock not acquired: k"],
     "deliberate_difference": "...",          # optional, copied into the golden
     "ours": {"runs": [{"jobs": {...}}]}}     # optional, copied into the golden

For each case the directory is copied to a fresh temporary directory ROOT, `{ROOT}` in
every copied text file is replaced by its path, an empty `ROOT/out/` is created, and the runs are executed in order with
cwd = ROOT. After each run the golden records:

* `exit_code` (a signal N is recorded as -N);
* `run_id`: the `--run-id` given, `"<12hex>"` for a generated id of 12 lowercase hex
  characters, or null when the run did not start (the reference's `run_start` line);
* `jobs` / `steps`: the reference's state DB (`ROOT/state.sqlite`, tables `job_runs` and
  `step_runs`, §4.2) rows of that run id: `{job: status}` and `{"job.step": status}`;
* `files`: every file under `ROOT/out/` with its text (the steps write there);
* `paths`: whether each listed path exists;
* `stderr_contains`: whether stderr contains each listed string.

Usage (needs `pip install aetherflow-core==0.0.14`):

    python3 tests/parity/runs/capture.py          # all cases
    python3 tests/parity/runs/capture.py 03 10    # only cases whose name starts so
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = HERE / "cases"
GOLDEN = HERE / "golden"
EXPECTED_VERSION = "0.0.14"
HEX12 = re.compile(r"^[0-9a-f]{12}$")


def prepare(case_dir: Path, root: Path) -> None:
    for src in case_dir.rglob("*"):
        rel = src.relative_to(case_dir)
        dst = root / rel
        if src.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        text = src.read_text(encoding="utf-8")
        dst.write_text(text.replace("{ROOT}", str(root)), encoding="utf-8")


def before(root: Path, spec: dict) -> None:
    for rel in spec.get("touch", []):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.touch()
    for rel in spec.get("remove", []):
        (root / rel).unlink(missing_ok=True)
    if spec.get("sleep"):
        time.sleep(spec["sleep"])


def arg_after(args: list[str], flag: str) -> str | None:
    for i, a in enumerate(args[:-1]):
        if a == flag:
            return args[i + 1]
    return None


def files_under(root: Path) -> dict[str, str]:
    out = root / "out"
    if not out.exists():
        return {}
    return {
        str(p.relative_to(root)): p.read_text(encoding="utf-8", errors="replace")
        for p in sorted(out.rglob("*")) if p.is_file()
    }


def db_rows(root: Path, run_id: str | None) -> tuple[dict, dict]:
    db = root / "state.sqlite"
    if run_id is None or not db.exists():
        return {}, {}
    con = sqlite3.connect(db)
    try:
        jobs = {j: s for j, s in con.execute(
            "SELECT job_id, status FROM job_runs WHERE run_id=? ORDER BY rowid", (run_id,))}
        steps = {f"{j}.{s}": st for j, s, st in con.execute(
            "SELECT job_id, step_id, status FROM step_runs WHERE run_id=? ORDER BY rowid",
            (run_id,))}
    except sqlite3.OperationalError:
        return {}, {}
    finally:
        con.close()
    return jobs, steps


def run_case(case_dir: Path, version: str) -> dict:
    spec = json.loads((case_dir / "case.json").read_text(encoding="utf-8"))
    results = []
    with tempfile.TemporaryDirectory(prefix="af-parity-run-") as tmp:
        root = Path(tmp)
        prepare(case_dir, root)
        (root / "out").mkdir(exist_ok=True)
        for run in spec["runs"]:
            before(root, run.get("before", {}))
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "PYTHONHASHSEED": "0",
            }
            env.update(spec.get("env", {}))
            args = run["args"]
            proc = subprocess.run(
                [sys.executable, "-c", "import sys; from aetherflow.core.cli import main; "
                 "sys.exit(main())", *args],
                cwd=root, env=env, capture_output=True, text=True, timeout=120,
            )
            m = re.search(r"run_start flow_id=\S+ run_id=(\S+)", proc.stderr)
            real_id = m.group(1) if m else None
            given = arg_after(args, "--run-id")
            if real_id is None:
                run_id = None
            elif given is not None and real_id == given:
                run_id = given
            elif HEX12.match(real_id):
                run_id = "<12hex>"
            else:
                run_id = real_id
            jobs, steps = db_rows(root, real_id)
            results.append({
                "args": args,
                "exit_code": proc.returncode,
                "run_id": run_id,
                "jobs": jobs,
                "steps": steps,
                "files": files_under(root),
                "paths": {p: (root / p).exists() for p in spec.get("paths", [])},
                "stderr_contains": {
                    s: s in proc.stderr for s in spec.get("stderr_contains", [])},
                "stderr_tail": proc.stderr[-400:].replace(str(root), "{ROOT}"),
            })
    golden = {
        "reference": f"aetherflow-core {version}",
        "description": spec.get("description", ""),
        "runs": results,
    }
    for key in ("deliberate_difference", "ours"):
        if key in spec:
            golden[key] = spec[key]
    return golden


def main(argv: list[str]) -> int:
    version = metadata.version("aetherflow-core")
    if version != EXPECTED_VERSION:
        print(f"warning: aetherflow-core {version} installed, goldens were made with "
              f"{EXPECTED_VERSION}", file=sys.stderr)
    GOLDEN.mkdir(exist_ok=True)
    cases = sorted(p for p in CASES.iterdir() if (p / "case.json").exists())
    if argv:
        cases = [c for c in cases if any(c.name.startswith(a) for a in argv)]
    for case_dir in cases:
        golden = run_case(case_dir, version)
        (GOLDEN / (case_dir.name + ".json")).write_text(
            json.dumps(golden, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        summary = ", ".join(
            f"exit {r['exit_code']} jobs={r['jobs']}" for r in golden["runs"])
        print(f"{case_dir.name}: {summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
