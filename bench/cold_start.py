#!/usr/bin/env python3
"""Cold start, as a scale-to-zero platform sees it: from starting the process to the first
answered API request (an authenticated `GET /v1/customers`, so the pool connects and a key is
looked up), on SQLite and on PostgreSQL, over several runs. The database exists and is
migrated, as it is when an instance starts from zero; migrations are not run at start.

Usage: bench/cold_start.py [--bin target/release/billing-api] [--runs 15]
"""
import argparse
import http.client
import pathlib
import statistics
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests/rollout"))
import harness  # noqa: E402


def first_answer(port, key, deadline):
    """Polls until the first 200 to an authenticated list request; returns its monotonic time."""
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/v1/customers?limit=1", headers={"Authorization": f"Bearer {key}"})
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.001)
    raise TimeoutError("no answer")


def measure(binary, url, runs):
    key = harness.api_key(binary, url, "coldstart")
    times = []
    for _ in range(runs):
        port = harness.free_port()
        env = harness.service_env(url, port, {"BILLING_SHUTDOWN__GRACE_PERIOD": "0s"})
        started = time.monotonic()
        proc = subprocess.Popen([str(binary), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            times.append((first_answer(port, key, started + 30) - started) * 1000)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", type=pathlib.Path, default=pathlib.Path("target/release/billing-api"))
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    binary = args.bin.resolve()
    work = harness.workdir("coldstart")
    pg = harness.Postgres(work)
    try:
        for backend, url in (("sqlite", f"sqlite://{work}/billing.db"), ("postgres", pg.url)):
            harness.migrate(binary, url)
            times = sorted(measure(binary, url, args.runs))
            p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
            print(f"cold start to first answered request, {backend}: median {statistics.median(times):.0f} ms, "
                  f"p90 {p90:.0f} ms, min {times[0]:.0f} ms ({args.runs} runs)")
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
