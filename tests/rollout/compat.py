#!/usr/bin/env python3
"""The N-1 gate: the previous release must keep working on the current schema, because during a
rollout (and after a rollback) it runs on it. On each backend: migrate a fresh database with the
current binary, check that the previous binary accepts it (`migrate status`, readiness), run
both releases side by side on it, replay a recorded client session
(tests/compat/requests.json) against each (the current one keeps the recording true), then let
each read what the other wrote.

With --breaking SQL, the schema is changed as a breaking migration would (PostgreSQL) and the
gate must fail: this shows that it can.

Usage: compat.py --current BIN --previous BIN [--breaking SQL]
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


def call(base, key, method, path, body=None, idempotency_key=None):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def replay(base, key, run):
    """Runs every step; returns the problems, the step count and the values captured."""
    steps = json.loads(SESSION.read_text())["steps"]
    captured, problems = {"run": run}, []
    for n, step in enumerate(steps, 1):
        step = fill(step, captured)
        status, text, answer_headers = call(base, key if step.get("auth", True) else None, step["method"],
                                            step["path"], step.get("body"), step.get("idempotency_key"))
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
    return problems, len(steps), captured


#: What one version reads of the objects the other wrote: path template → the fields that must
#: be equal whichever version answers.
CROSS_READS = [
    ("/v1/customers/{customer}", ["id", "name", "email", "currency"]),
    ("/v1/invoices/{invoice}", ["id", "status", "number", "total", "amount_paid", "amount_refunded"]),
    ("/v1/payments/{payment}", ["id", "amount", "invoice"]),
    ("/v1/customers/{customer}/balance", ["object"]),
    ("/v1/webhook_endpoints/{endpoint}", ["id", "url", "status"]),
]


def cross_read(writer_base, reader_base, key, captured):
    """The reader version reads what the writer version wrote (as in a rollout, where both run
    on one database): every object is there and reads the same from both."""
    problems = []
    for template, fields in CROSS_READS:
        path = fill(template, captured)
        answers = []
        for base in (writer_base, reader_base):
            status, text, _ = call(base, key, "GET", path)
            answers.append((status, json.loads(text) if text else {}))
        (ws, wrote), (rs, read) = answers
        if (ws, rs) != (200, 200):
            problems.append(f"GET {path}: {rs} from the reader, {ws} from the writer")
            continue
        for field in fields:
            if wrote.get(field) != read.get(field):
                problems.append(f"GET {path}: {field} reads {read.get(field)!r}, written as {wrote.get(field)!r}")
    return problems


def database(backend, work):
    if backend == "postgres":
        pg = Postgres(work)
        return pg.url, pg.stop
    return f"sqlite://{work}/billing.db", lambda: None


def check_backend(backend, current, previous, breaking_sql=None):
    """Both releases on one database migrated by the current one, side by side as in a rollout:
    each replays the session, then reads what the other wrote."""
    work = harness.workdir(f"compat-{backend}")
    url, stop_db = database(backend, work)
    problems = []
    instances = {}
    try:
        harness.migrate(current, url)
        if breaking_sql:
            # The schema as a migration that breaks the running version would leave it.
            subprocess.run(["psql", url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(breaking_sql)], check=True)
        env = service_env(url, 0, {"BILLING_WEBHOOKS__ENCRYPTION_KEY": ENCRYPTION_KEY})
        status = subprocess.run([str(previous), "migrate", "status"], env=harness.known_env(previous, env),
                                capture_output=True, text=True)
        if status.returncode != 0 or "FAILED" in status.stdout:
            problems.append(f"the previous release cannot read the schema: {status.stdout}{status.stderr}")
        runs = {}
        for name, binary in (("previous", previous), ("current", current)):
            port = free_port()
            inst = Instance.create(work, name, binary,
                                   service_env(url, port, {"BILLING_WEBHOOKS__ENCRYPTION_KEY": ENCRYPTION_KEY}))
            instances[name] = inst
            inst.start(wait_ready=False)
        for name, binary in (("current", current), ("previous", previous)):
            try:
                instances[name].wait_ready()
            except TimeoutError:
                problems.append(f"{name} release: never ready on this schema")
                continue
            key = harness.api_key(binary, url, f"compat-{name}")
            base = f"http://127.0.0.1:{instances[name].port}"
            found, steps, captured = replay(base, key, f"{backend}-{name}")
            runs[name] = (base, key, captured)
            problems += [f"{name} release: {p}" for p in found]
            print(f"  {backend}: {name} release on the current schema: {steps - len(found)} of {steps} steps as recorded")
        if len(runs) == 2:
            for writer, reader in (("current", "previous"), ("previous", "current")):
                base, key, captured = runs[writer]
                found = cross_read(base, runs[reader][0], key, captured)
                problems += [f"{reader} reading what {writer} wrote: {p}" for p in found]
                print(f"  {backend}: the {reader} release reads what the {writer} release wrote: "
                      f"{len(CROSS_READS) - len(found)} of {len(CROSS_READS)} objects the same")
    finally:
        for inst in instances.values():
            inst.stop()
        stop_db()
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--current", required=True, type=pathlib.Path)
    parser.add_argument("--previous", required=True, type=pathlib.Path)
    parser.add_argument("--breaking", type=pathlib.Path,
                        help="SQL applied after the current migrations (PostgreSQL only): the gate must fail")
    args = parser.parse_args()
    if args.breaking:
        problems = check_backend("postgres", args.current.resolve(), args.previous.resolve(), args.breaking)
        for p in problems[:5]:
            print(f"  found: {p}")
        if not any(p.startswith(("previous release", "the previous release")) for p in problems):
            print(f"FAIL: the previous release passed with {args.breaking.name} applied: "
                  "the gate cannot catch a breaking migration")
            sys.exit(1)
        print(f"N-1 gate: with {args.breaking.name} it fails, as it must ({len(problems)} problems)")
        return
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
