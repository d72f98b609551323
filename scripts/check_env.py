"""Fail the install when the environment is not the one the project pins (Spark sides, torch build)."""

from __future__ import annotations

import re
import subprocess
import sys


def spark_submit_version() -> str:
    completed = subprocess.run(["spark-submit", "--version"], capture_output=True, text=True, check=True)
    match = re.search(r"version (\d+\.\d+\.\d+)", completed.stdout + completed.stderr)
    if not match:
        raise SystemExit("could not read the version from `spark-submit --version`")
    return match.group(1)


def main() -> None:
    import pyspark
    import torch

    problems = []
    jvm_version = spark_submit_version()
    if pyspark.__version__ != jvm_version:
        problems.append(f"pyspark {pyspark.__version__} != spark-submit {jvm_version} (pyspark-client installed?)")
    if torch.version.cuda is not None:
        problems.append(f"torch {torch.__version__} is a CUDA build; the project pins the CPU build")
    if problems:
        raise SystemExit("environment check failed:\n  " + "\n  ".join(problems))
    print(f"environment ok: pyspark {pyspark.__version__} == spark-submit {jvm_version}, torch {torch.__version__}")


if __name__ == "__main__":
    sys.exit(main())
