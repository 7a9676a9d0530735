#!/usr/bin/env python3
"""The N-1 gate: the previous release must keep working on the current schema, because during a
rollout (and after a rollback) it runs on it. On each backend: migrate a fresh database with the
current binary, check that the previous binary accepts it (`migrate status`, readiness), and
replay a recorded client session (tests/compat/requests.json) against the previous binary; then
replay it against the current one too, so the recording stays true.

Usage: compat.py --current BIN --previous BIN
"""
import argparse
import json
import pathlib
import subprocess
import sys
import urllib.error
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import harness  # noqa: E402
from harness import Instance, Postgres, free_port, service_env  # noqa: E402

SESSION = harness.ROOT / "tests/compat/requests.json"
# The test key of the helpers: webhooks can be configured.
ENCRYPTION_KEY = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio="


def fill(value, captured):
    if isinstance(value, str):
        for name, v in captured.items():
            value = value.replace("{" + name + "}", str(v))
        return value
    if isinstance(value, list):
        return [fill(v, captured) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, captured) for k, v in value.items()}
    return value


def pick(body, path):
    for part in path.split("."):
        body = body[int(part)] if isinstance(body, list) else body[part]
    return body


def replay(base, key, run):
    """Runs every step; returns the problems."""
    steps = json.loads(SESSION.read_text())["steps"]
    captured, problems = {"run": run}, []
    for n, step in enumerate(steps, 1):
        step = fill(step, captured)
        headers = {"Content-Type": "application/json"}
        if step.get("auth", True):
            headers["Authorization"] = f"Bearer {key}"
        if "idempotency_key" in step:
            headers["Idempotency-Key"] = step["idempotency_key"]
        data = json.dumps(step["body"]).encode() if "body" in step else None
        request = urllib.request.Request(base + step["path"], data=data, headers=headers, method=step["method"])
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                status, text, answer_headers = r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            status, text, answer_headers = e.code, e.read(), e.headers
        label = f"step {n} {step['method']} {step['path']}"
        if status != step["expect"]:
            problems.append(f"{label}: {status}, expected {step['expect']}: {text[:200]!r}")
            continue
        body = json.loads(text) if text else {}
        for field, want in step.get("check", {}).items():
            if body.get(field) != want:
                problems.append(f"{label}: {field} is {body.get(field)!r}, expected {want!r}")
        for name, want in step.get("header", {}).items():
            if answer_headers.get(name) != want:
                problems.append(f"{label}: header {name} is {answer_headers.get(name)!r}, expected {want!r}")
        for name, path in step.get("capture", {}).items():
            try:
                captured[name] = pick(body, path)
            except (KeyError, IndexError, TypeError):
                problems.append(f"{label}: no {path} to capture in the answer")
    return problems, len(steps)


def database(backend, work):
    if backend == "postgres":
        pg = Postgres(work)
        return pg.url, pg.stop
    return f"sqlite://{work}/billing.db", lambda: None


def check_backend(backend, current, previous):
    work = harness.workdir(f"compat-{backend}")
    url, stop_db = database(backend, work)
    problems = []
    try:
        harness.migrate(current, url)
        env = service_env(url, 0, {"BILLING_WEBHOOKS__ENCRYPTION_KEY": ENCRYPTION_KEY})
        status = subprocess.run([str(previous), "migrate", "status"], env=env, capture_output=True, text=True)
        if status.returncode != 0 or "FAILED" in status.stdout:
            problems.append(f"the previous release cannot read the schema: {status.stdout}{status.stderr}")
        for name, binary in (("previous", previous), ("current", current)):
            key = harness.api_key(binary, url, f"compat-{name}")
            port = free_port()
            inst = Instance.create(work, name, binary,
                                   service_env(url, port, {"BILLING_WEBHOOKS__ENCRYPTION_KEY": ENCRYPTION_KEY}))
            try:
                inst.start()
                found, steps = replay(f"http://127.0.0.1:{port}", key, f"{backend}-{name}")
                problems += [f"{name} release: {p}" for p in found]
                print(f"  {backend}: {name} release on the current schema: {steps - len(found)} of {steps} steps as recorded")
            finally:
                inst.stop()
    finally:
        stop_db()
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--current", required=True, type=pathlib.Path)
    parser.add_argument("--previous", required=True, type=pathlib.Path)
    args = parser.parse_args()
    problems = []
    for backend in ("postgres", "sqlite"):
        problems += check_backend(backend, args.current.resolve(), args.previous.resolve())
    for p in problems:
        print(f"FAIL: {p}")
    if problems:
        sys.exit(1)
    print("N-1 gate: the previous release works on the current schema")


if __name__ == "__main__":
    main()
