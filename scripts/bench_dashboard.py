"""`make bench-dashboard`: the dashboard's response times with a year of daily records, against a month.

Generates 365 days (and, as the baseline in the same run, 30 days) of records in the pipeline's formats,
then times every endpoint (in-process, through the ASGI app) and writes var/bench/dashboard.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from fastapi.testclient import TestClient  # noqa: E402

from recdp.storage import DataRoot  # noqa: E402
from scripts.dashboard_records import generate_records  # noqa: E402
from sda.dashboard import create_dashboard_app  # noqa: E402


def timings(client: TestClient, path: str, repeats: int) -> dict[str, float]:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        response = client.get(path)
        seconds.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise SystemExit(f"{path}: HTTP {response.status_code}")
    seconds.sort()
    return {"p50_ms": round(1000 * statistics.median(seconds), 2),
            "p95_ms": round(1000 * seconds[int(0.95 * (len(seconds) - 1))], 2), "repeats": repeats}


def measure(folder: Path, days: int, repeats: int) -> dict[str, dict]:
    shutil.rmtree(folder, ignore_errors=True)
    root = DataRoot(folder)
    runs = generate_records(root, "criteo", dt.date(2025, 1, 1), days)
    client = TestClient(create_dashboard_app(root))
    paths = {"page": "/", "datasets": "/api/datasets", "timeline": "/api/timeline?dataset=criteo",
             "run": f"/api/runs/{runs[-1]}", "champion": "/api/champion?dataset=criteo"}
    client.get(paths["champion"])  # the first call loads torch and MLflow: not a response time
    return {name: timings(client, path, repeats) for name, path in paths.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--work", type=Path, default=PROJECT_ROOT / "var" / "bench")
    args = parser.parse_args()
    year = measure(args.work / "dashboard_year", 365, args.repeats)
    month = measure(args.work / "dashboard_month", 30, args.repeats)
    report = {"benchmark": "dashboard", "year_days": 365, "baseline_days": 30, "year": year, "month": month,
              "ratio_p50": {k: round(year[k]["p50_ms"] / max(month[k]["p50_ms"], 1e-6), 2) for k in year}}
    args.work.mkdir(parents=True, exist_ok=True)
    out = args.work / "dashboard.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"{'endpoint':<10}{'365 days p50':>14}{'p95':>9}{'30 days p50':>13}{'ratio':>8}")
    for name in year:
        print(f"{name:<10}{year[name]['p50_ms']:>12.1f}ms{year[name]['p95_ms']:>7.1f}ms"
              f"{month[name]['p50_ms']:>11.1f}ms{report['ratio_p50'][name]:>7.2f}x")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
