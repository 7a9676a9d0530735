#!/usr/bin/env python3
"""The API contract, enforced: schemathesis generates requests from the service's own
/openapi.json (valid ones, and invalid ones the server must refuse), follows the document's links
for stateful sequences (create → read → update → finalize → pay → refund), and runs every check
on every answer: no 5xx, status codes, headers and bodies as documented, schema-valid requests
accepted, invalid ones refused, authentication enforced, deleted objects gone.

Runs on SQLite and on PostgreSQL (a throwaway cluster), with webhooks configured, seeded and
bounded; exits 1 on any finding.

Its two warnings are expected. "Missing test data": operations on ids the fuzzer made up answer
404. "Schema validation mismatch: 3 operations mostly rejected generated data": those operations
refuse requests that fit the document for rules no static schema can state (docs/errors.md#rules).
`POST /v1/meter_events` needs a `timestamp` within the grace period before now and one of the
tenant's customers. `POST /v1/test_clocks/{id}/advance` only moves a clock forward from where it
is. `POST /v1/prices/{id}/versions` needs tiers in increasing order, unbounded last, and packages
only on per-unit prices. The refusals are 422 with those rules' codes, which the document names
in every 422 response, so hooks.py drops these refusals from the findings and nothing else.

Usage: run.py --bin BIN [--backend sqlite|postgres ...] [--seed N] [--max-examples N]
       [--max-time SECONDS] [--schemathesis PATH]
"""
import argparse
import concurrent.futures
import json
import os
import pathlib
import re
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "rollout"))
import harness  # noqa: E402
from harness import Instance, Postgres, free_port, service_env  # noqa: E402

# The test key of the helpers (32 bytes of '*'): webhook endpoints can be created.
ENCRYPTION_KEY = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio="


def run_backend(args, backend):
    """Fuzzes one backend; returns (passed, report). The report is printed by the caller, whole,
    so two backends run side by side do not interleave their lines."""
    lines = []
    print = lines.append  # noqa: A001
    ok = fuzz_backend(args, backend, print)
    return ok, "\n".join(lines)


def fuzz_backend(args, backend, print):
    work = harness.workdir(f"contract-{backend}")
    stop_db = lambda: None  # noqa: E731
    if backend == "postgres":
        pg = Postgres(work)
        url, stop_db = pg.url, pg.stop
    else:
        url = f"sqlite://{work}/billing.db"
    inst = None
    try:
        harness.migrate(args.bin, url)
        key = harness.api_key(args.bin, url, f"contract-{backend}")
        port = free_port()
        inst = Instance.create(work, "api", args.bin, service_env(url, port, {
            "BILLING_WEBHOOKS__ENCRYPTION_KEY": ENCRYPTION_KEY,
            # Endpoints are created at fuzzed addresses: nothing is sent to them (the API is what
            # is under test; delivery has its own tests against local receivers).
            "BILLING_WEBHOOKS__DISPATCHER": "false",
            "BILLING_LOG__LEVEL": "warn",
        }))
        inst.start()
        base = f"http://127.0.0.1:{port}"
        report = pathlib.Path(work) / "report"
        cmd = [args.schemathesis, "--config-file", str(pathlib.Path(__file__).with_name("schemathesis.toml")),
               "run", f"{base}/openapi.json",
               "--checks", "all",
               "--phases", "examples,coverage,fuzzing,stateful",
               "--mode", "all",
               "--seed", str(args.seed),
               "--max-examples", str(args.max_examples),
               # One worker: CPython 3.11's `ast` module keeps its recursion depth per process,
               # and hypothesis parses lambda sources, so two worker threads can fail a run with
               # "SystemError: AST constructor recursion depth mismatch" (seen here). The two
               # backends still run side by side, one process each.
               "--workers", "1",
               "--request-timeout", "10",
               "--suppress-health-check", "too_slow,filter_too_much",
               "--report", "ndjson", "--report-dir", str(report),
               "--output-truncate", "true", "--no-color"]
        if args.max_time:
            cmd += ["--max-time", str(args.max_time)]
        started = time.monotonic()
        env = dict(os.environ, SCHEMATHESIS_HOOKS=str(pathlib.Path(__file__).with_name("hooks.py")),
                   BILLING_CONTRACT_KEY=key)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        elapsed = time.monotonic() - started
        out = proc.stdout + proc.stderr
        requests, checks = count_requests(report)
        summary = out[out.find("Test Phases:"):] if "Test Phases:" in out else out[-3000:]
        print(f"{backend}: schemathesis exit {proc.returncode} in {elapsed:.0f}s: {requests} requests, "
              f"{checks} checks on their answers")
        if proc.returncode != 0:
            print(out[-20000:] if args.verbose else out[-6000:])
        else:
            print("  " + summary.strip().replace("\n", "\n  "))
        crashed = inst.pid() is None or not harness.alive(inst.pid())
        if crashed:
            print(f"{backend}: the service is not running any more")
        return proc.returncode == 0 and not crashed and requests > 0 and checks > 0
    finally:
        if inst:
            inst.stop()
        stop_db()


def count_requests(report_dir):
    """Requests schemathesis sent and checks it ran on their answers, from its NDJSON events."""
    requests = checks = 0
    for path in pathlib.Path(report_dir).glob("*.ndjson"):
        for line in path.read_text().splitlines():
            try:
                event = json.loads(line).get("ScenarioFinished")
            except (json.JSONDecodeError, AttributeError):
                continue
            if event:
                requests += len(event.get("recorder", {}).get("cases", {}))
                checks += sum(len(c) for c in event.get("recorder", {}).get("checks", {}).values())
    return requests, checks


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True, type=pathlib.Path)
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgres"])
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--max-examples", type=int, default=40)
    parser.add_argument("--max-time", type=int, default=0)
    parser.add_argument("--schemathesis", default=str(harness.ROOT / "target/tools/contract/bin/schemathesis"))
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    args.bin = args.bin.resolve()
    backends = args.backend or ["sqlite", "postgres"]
    # Side by side: schemathesis is one Python process (one core at most) per backend, and the
    # service it drives is idle most of the time, so on two cores this halves the wall time.
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(backends)) as pool:
        runs = {b: pool.submit(run_backend, args, b) for b in backends}
        results = {}
        for backend, run in runs.items():
            ok, report = run.result()
            print(report, flush=True)
            results[backend] = ok
    failed = [b for b, ok in results.items() if not ok]
    if failed:
        print(f"contract: findings on {', '.join(failed)}")
        sys.exit(1)
    print("contract: no findings on " + ", ".join(results))


if __name__ == "__main__":
    main()
