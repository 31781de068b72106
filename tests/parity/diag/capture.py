"""Capture `doctor` and `explain` of the Python reference for every case in cases/.

Writes golden/<case>.json = {"reference": "aetherflow-core 0.0.14", "doctor": {...},
"explain": {...}} with each command's exit code and parsed --json output. The reference's
secrets hook is a Python module, not our `AETHERFLOW_SECRETS_PROVIDER`, so that variable
has no effect on it; the test accounts for that. Run from this directory:
    python3 capture.py
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.path.join(HERE, "cases")
GOLDEN = os.path.join(HERE, "golden")


def env_of(case):
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "PYTHONHASHSEED": "0"}
    side = os.path.join(CASES, case + ".env")
    if os.path.exists(side):
        for line in open(side):
            line = line.strip()
            if line and "=" in line:
                k, v = line.split("=", 1)
                env[k] = v
    return env


def run(cmd, case):
    p = subprocess.run(
        [sys.executable, "-m", "aetherflow.core.cli", cmd, "--flow-yaml", case + ".yaml", "--json"],
        cwd=CASES, env=env_of(case), capture_output=True, text=True,
    )
    out = p.stdout.strip().splitlines()
    report = None
    if out:
        try:
            report = json.loads(out[0])
        except json.JSONDecodeError:
            report = None
    return {"exit_code": p.returncode, "report": report}


def main():
    os.makedirs(GOLDEN, exist_ok=True)
    for name in sorted(os.listdir(CASES)):
        if not name.endswith(".yaml") or name == "profiles.yaml":
            continue
        case = name[:-5]
        golden = {"reference": "aetherflow-core 0.0.14", "doctor": run("doctor", case), "explain": run("explain", case)}
        with open(os.path.join(GOLDEN, case + ".json"), "w") as f:
            json.dump(golden, f, indent=2, sort_keys=True)
            f.write("\n")
        print(case, golden["doctor"]["exit_code"], golden["explain"]["exit_code"])


if __name__ == "__main__":
    main()
