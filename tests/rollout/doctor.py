#!/usr/bin/env python3
"""`billing-api doctor` against a real deployment (PostgreSQL, an instance, nginx with TLS in
front): every check passes on a healthy one, and each check fails, alone, where it should.

Usage: doctor.py --bin BIN
"""
import argparse
import http.server
import json
import pathlib
import subprocess
import sys
import threading
import time
from email.utils import formatdate

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import harness  # noqa: E402
from harness import Instance, Nginx, Postgres, free_port, service_env  # noqa: E402


def doctor(binary, env, *args, wrapper=()):
    out = subprocess.run([*wrapper, str(binary), "doctor", *args], env=env, capture_output=True, text=True,
                         timeout=120)
    outcomes = {}
    for line in out.stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[0] in ("PASS", "WARN", "FAIL"):
            outcomes[parts[1] if parts[1] != "db" else "db clock"] = parts[0]
    return out.returncode, outcomes, out.stdout + out.stderr


class Stub(http.server.BaseHTTPRequestHandler):
    """A replica that is not what it should be: another version, a clock off by an hour."""
    version = "0.0.0"
    skew = 0
    ready_status = 200
    echo_request_id = True

    def do_GET(self):  # noqa: N802 - the http.server API
        status = 200
        if self.path == "/health/ready" and self.ready_status != 200:
            status = self.ready_status
            body, kind = json.dumps({"status": "fail", "checks": {"database": {"status": "fail", "error": "stub"}}}).encode(), "application/json"
        elif self.path == "/metrics":
            body, kind = b"# TYPE billing_build_info gauge\nbilling_build_info{version=\"x\"} 1\n", "text/plain; version=0.0.4"
        elif self.path == "/health/connection":
            body, kind = json.dumps({"client": "127.0.0.1", "scheme": "http", "via_trusted_proxy": False}).encode(), "application/json"
        else:
            body, kind = json.dumps({"status": "pass", "version": self.version, "checks": {}}).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Date", formatdate(time.time() + self.skew, usegmt=True))
        if self.echo_request_id:
            self.send_header("X-Request-Id", self.headers.get("X-Request-Id", ""))
        self.end_headers()
        self.wfile.write(body)

    def date_time_string(self, timestamp=None):
        return formatdate(time.time() + self.skew, usegmt=True)

    def log_message(self, *args):
        pass


def stub(**attrs):
    handler = type("StubReplica", (Stub,), attrs)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bin", required=True, type=pathlib.Path)
    binary = parser.parse_args().bin.resolve()
    work = harness.workdir("doctor")
    pg = Postgres(work)
    harness.migrate(binary, pg.url)
    port, admin = free_port(), free_port()
    inst = Instance.create(work, "api", binary, service_env(pg.url, port, {
        "BILLING_ADMIN__PORT": str(admin), "BILLING_DATABASE__MAX_CONNECTIONS": "10"}))
    inst.start()
    nginx = Nginx(work, [port])
    env = service_env(pg.url, 0)
    base = ["--url", nginx.base, "--ca-cert", str(nginx.cert), "--admin-url", f"http://127.0.0.1:{admin}"]
    failures = []

    def case(title, args, expect_fail, env_=env, warn=None, wrapper=()):
        code, outcomes, text = doctor(binary, env_, *args, wrapper=wrapper)
        failing = sorted(n for n, o in outcomes.items() if o == "FAIL")
        # Exactly the checks that should fail, and no other.
        ok = (code == 0 and not failing) if not expect_fail else (code == 1 and set(failing) == expect_fail)
        if warn:
            ok &= outcomes.get(warn) == "WARN"
        print(f"{'ok ' if ok else 'BAD'} {title}: exit {code}, failing: {', '.join(failing) or 'none'}")
        if not ok:
            failures.append(title)
            print(text)
        return outcomes

    try:
        outcomes = case("a healthy deployment", base, set())
        print("    checks: " + ", ".join(f"{n} {o}" for n, o in outcomes.items()))
        case("pool: 100 replicas would exceed max_connections", base + ["--replicas", "100"], {"pool"})
        case("metrics: the admin URL is not an admin listener",
             ["--url", nginx.base, "--ca-cert", str(nginx.cert), "--admin-url", f"http://127.0.0.1:{port}"], {"metrics"})
        case("versions: three versions answer",
             base + ["--admin-url", stub(version="0.0.1"), "--admin-url", stub(version="9.9.9")], {"versions"})
        # Nothing over TLS works then: the probes and the proxy check fail with it.
        case("tls: the certificate is not trusted", ["--url", nginx.base, "--admin-url", f"http://127.0.0.1:{admin}"],
             {"tls", "probes", "proxy"})
        case("tls: plain HTTP, straight to the service", ["--url", f"http://127.0.0.1:{port}"], {"tls"})
        case("versions: N and N+1 during a rollout are a warning, not a failure",
             base + ["--admin-url", stub(version="0.0.1")], set(), warn="versions")
        case("clock: the service's clock is an hour off", ["--url", stub(skew=3600), "--allow-http"], {"clock"})
        # The database an hour off this machine, and the service with it (the stub): only the
        # database's clock is wrong from here. libfaketime moves this machine's clock for doctor.
        case("db clock: the database's clock is an hour off", ["--url", stub(skew=-3600), "--allow-http"],
             {"db clock"}, env_=dict(env, FAKETIME_DONT_FAKE_MONOTONIC="1"), wrapper=("faketime", "-f", "-1h"))
        case("probes: readiness answers 503", ["--url", stub(ready_status=503), "--allow-http"], {"probes"})
        case("proxy: X-Request-Id is not passed back", ["--url", stub(echo_request_id=False), "--allow-http"],
             {"proxy"})
        # HSTS removed from the shipped nginx config: TLS still verifies, the check fails alone.
        site = (nginx.dir / "site.conf").read_text()
        hsts = 'add_header Strict-Transport-Security "max-age=63072000" always;'
        if hsts not in site:
            raise ValueError("the shipped nginx config no longer sends HSTS as this test expects")
        nginx.write_site(site.replace(hsts, ""))
        case("tls: no Strict-Transport-Security header", base, {"tls"})
        nginx.write_site(site)
        # The proxy not trusted: the same instance, restarted without server.trusted_proxies.
        trusted = (inst.dir / "env.json").read_text()
        env_untrusted = dict(json.loads(trusted), BILLING_SERVER__TRUSTED_PROXIES="")
        (inst.dir / "env.json").write_text(json.dumps(env_untrusted))
        inst.stop()
        inst.start()
        case("proxy: nginx is not in server.trusted_proxies", base, {"proxy"})
        (inst.dir / "env.json").write_text(trusted)
        inst.stop()
        inst.start()
        # A migration pending: the schema one step behind the binary.
        subprocess.run([str(binary), "migrate", "revert"], env=env, check=True, stdout=subprocess.DEVNULL)
        case("migrations: one pending (and readiness fails)", base, {"migrations", "probes"})
    finally:
        inst.stop()
        nginx.stop()
        pg.stop()
    if failures:
        print(f"doctor: {len(failures)} case(s) not as expected: {', '.join(failures)}")
        sys.exit(1)
    print("doctor: passes a healthy deployment, and each check fails where it should")


if __name__ == "__main__":
    main()
