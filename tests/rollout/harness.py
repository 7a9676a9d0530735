"""What the rollout scenarios run on: a throwaway PostgreSQL, service instances managed through
pid files (as systemd would, so that scripts/rollout.sh can restart them with `instance.py`),
nginx with the shipped configuration, and the database checks that follow a load.

Everything binds to 127.0.0.1 and is stopped when the scenario ends.
"""
import json
import os
import re
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, check, timeout=30.0, every=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(every)
    raise TimeoutError(f"timed out waiting for {what}")


def http_status(url, timeout=2.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def as_postgres(cmd):
    """PostgreSQL refuses to run as root: run its programs as the postgres user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"] + cmd
    return cmd


class Postgres:
    def __init__(self, work):
        self.dir = pathlib.Path(work) / "pg"
        self.dir.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if bindir.returncode == 0:
            self.bin = pathlib.Path(bindir.stdout.strip())
        else:
            self.bin = sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin"))[-1]
        self.port = free_port()
        subprocess.run(
            as_postgres([str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-U", "postgres", "-A", "trust",
                         "--no-sync", "-E", "UTF8", "--locale=C"]),
            check=True, stdout=subprocess.DEVNULL)
        # Durable commits, as production runs.
        subprocess.run(
            as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-l", str(self.dir / "pg.log"), "-w",
                         "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200",
                         "start"]),
            check=True, stdout=subprocess.DEVNULL)
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def query(self, sql):
        out = subprocess.run([str(self.bin / "psql"), self.url, "-XAt", "-v", "ON_ERROR_STOP=1", "-c", sql],
                             capture_output=True, text=True, check=True)
        return [line.split("|") for line in out.stdout.splitlines() if line]

    def stop(self):
        subprocess.run(as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "stop", "-m", "fast"]),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


_KNOWN = {}


def known_env(binary, env):
    """`env` without the settings `binary` does not know. An older release refuses a setting it
    has never heard of (a typo would otherwise go unnoticed), so a rollback to it must not be
    given the newer release's settings: this is what an operator does by hand (see
    docs/operations.md, "Releases and rollback")."""
    binary = str(binary)
    if binary not in _KNOWN:
        table = subprocess.run([binary, "config", "reference"], capture_output=True, text=True, check=True).stdout
        _KNOWN[binary] = set(re.findall(r"`(BILLING_[A-Z0-9_]+)`", table))
    known = _KNOWN[binary]
    return {k: v for k, v in env.items()
            if "__" not in k or k in known or k.removesuffix("_FILE") in known}


def service_env(database_url, port, extra=None):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BILLING_SERVER__PORT": str(port),
        "BILLING_ADMIN__PORT": "0",
        "BILLING_DATABASE__URL": database_url,
        "BILLING_DATABASE__MIGRATE_ON_START": "false",
        "BILLING_SERVER__TRUSTED_PROXIES": "127.0.0.1",
        "BILLING_LOG__LEVEL": "info",
    }
    # Sixteen clients of one tenant: rate limits on, but out of their reach.
    for budget in ("READ", "WRITE", "UNAUTHENTICATED"):
        for what in ("PER_SECOND", "BURST"):
            env[f"BILLING_RATE_LIMIT__{budget}_{what}"] = "100000"
    env.update(extra or {})
    return env


class Instance:
    """One service instance, kept in a folder: the binary it runs (`bin`), its settings
    (`env.json`), its pid and its log. `instance.py restart <folder>` swaps the process for a new
    one of whatever `bin` names, the way `systemctl restart` would."""

    def __init__(self, folder):
        self.dir = pathlib.Path(folder)

    @classmethod
    def create(cls, parent, name, binary, env):
        d = pathlib.Path(parent) / name
        d.mkdir(parents=True)
        inst = cls(d)
        inst.set_binary(binary)
        (d / "env.json").write_text(json.dumps(env))
        return inst

    @property
    def port(self):
        return int(json.loads((self.dir / "env.json").read_text())["BILLING_SERVER__PORT"])

    def set_binary(self, binary):
        (self.dir / "bin").write_text(str(binary))

    def pid(self):
        try:
            return int((self.dir / "pid").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def start(self, wait_ready=True, pass_fds=(), extra_env=None):
        env = json.loads((self.dir / "env.json").read_text())
        env.update(extra_env or {})
        binary = (self.dir / "bin").read_text().strip()
        env = known_env(binary, env)
        log = open(self.dir / "service.log", "ab")
        proc = subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, pass_fds=pass_fds)
        (self.dir / "pid").write_text(str(proc.pid))
        if wait_ready:
            self.wait_ready()
        return proc

    def ready_url(self):
        return f"http://127.0.0.1:{self.port}/health/ready"

    def wait_ready(self, timeout=30):
        wait_until(f"{self.dir.name} ready", lambda: http_status(self.ready_url(), 1) == 200, timeout)

    def stop(self, timeout=60):
        """SIGTERM, then wait for the process to exit (it drains first)."""
        pid = self.pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive(pid):
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        raise TimeoutError(f"{self.dir.name} did not exit within {timeout}s of SIGTERM")


def alive(pid):
    """Whether `pid` still runs. A process that exited but was not reaped yet (a zombie, when
    another process started it) counts as gone."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
    except ChildProcessError:
        pass
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


class Nginx:
    """nginx with deploy/nginx/billing-api.conf, only ports, paths and addresses rewritten."""

    def __init__(self, work, upstream_ports):
        self.dir = pathlib.Path(work) / "nginx"
        self.dir.mkdir()
        self.https_port, self.http_port = free_port(), free_port()
        self.cert = self.make_certificate()
        self.set_upstreams(upstream_ports, reload=False)
        (self.dir / "nginx.conf").write_text(f"""
worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log {self.dir}/access.log;
    client_body_temp_path {self.dir}/body;
    proxy_temp_path {self.dir}/proxy;
    include {self.dir}/site.conf;
}}
""")
        subprocess.run(["nginx", "-t", "-q", "-c", str(self.dir / "nginx.conf"), "-p", str(self.dir)], check=True)
        subprocess.run(["nginx", "-c", str(self.dir / "nginx.conf"), "-p", str(self.dir)], check=True)
        wait_until("nginx", lambda: (self.dir / "nginx.pid").exists())

    def make_certificate(self):
        """A throwaway CA and a server certificate for 127.0.0.1 signed by it, as a private CA
        would issue; returns the CA certificate, which clients trust."""
        d = self.dir
        run = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True)  # noqa: E731
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=rollout test CA",
            "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(d / "tls.key"), "-out", str(d / "tls.csr"))
        (d / "ext.cnf").write_text("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                                   "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
        run("x509", "-req", "-in", str(d / "tls.csr"), "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
            "-CAcreateserial", "-days", "1", "-extfile", str(d / "ext.cnf"), "-out", str(d / "tls.crt"))
        return d / "ca.crt"

    def site(self, upstream_ports):
        text = (ROOT / "deploy/nginx/billing-api.conf").read_text()
        servers = [line for line in text.splitlines() if line.strip().startswith("server 127.0.0.1:")]
        if not servers:
            raise ValueError("deploy/nginx/billing-api.conf has no `server 127.0.0.1:PORT ...;` upstream lines")
        template = servers[0]
        port = template.split("127.0.0.1:")[1].split()[0].rstrip(";")
        ours = "\n".join(template.replace(f"127.0.0.1:{port}", f"127.0.0.1:{p}") for p in upstream_ports)
        lines, placed = [], False
        for line in text.splitlines():
            if line in servers:
                if not placed:
                    lines.append(ours)
                    placed = True
                continue
            lines.append(line)
        text = "\n".join(lines) + "\n"
        text = (text.replace("listen 80;", f"listen 127.0.0.1:{self.http_port};")
                .replace("listen [::]:80;\n", "")
                .replace("listen 443 ssl;", f"listen 127.0.0.1:{self.https_port} ssl;")
                .replace("listen [::]:443 ssl;\n", "")
                .replace("/etc/nginx/tls/billing-api.crt", str(self.dir / "tls.crt"))
                .replace("/etc/nginx/tls/billing-api.key", str(self.dir / "tls.key")))
        version = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr
        minor = int(version.split("nginx/1.")[1].split(".")[0]) if "nginx/1." in version else 99
        if minor < 25:
            # nginx 1.22 (Debian 12) predates `http2 on;`; its equivalent is a listen parameter.
            text = text.replace("    http2 on;\n", "").replace(f"{self.https_port} ssl;", f"{self.https_port} ssl http2;")
        return text

    def set_upstreams(self, ports, reload=True):
        """The instances that get traffic."""
        (self.dir / "site.conf").write_text(self.site(ports))
        if reload:
            self.reload()

    def write_site(self, text):
        """Replaces the site configuration (a changed copy of the shipped one) and reloads."""
        (self.dir / "site.conf").write_text(text)
        self.reload()

    def reload(self):
        pid = (self.dir / "nginx.pid").read_text().strip()
        subprocess.run(["nginx", "-s", "reload", "-c", str(self.dir / "nginx.conf"), "-p", str(self.dir)],
                       check=True, capture_output=True)
        # The old workers finish; new ones with the new configuration take new connections.
        time.sleep(0.5)
        if (self.dir / "nginx.pid").read_text().strip() != pid:
            raise RuntimeError("nginx restarted instead of reloading")

    @property
    def base(self):
        return f"https://127.0.0.1:{self.https_port}"

    def error_lines(self):
        """nginx's error log so far, line by line."""
        try:
            return (self.dir / "error.log").read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def stop(self):
        try:
            os.kill(int((self.dir / "nginx.pid").read_text()), signal.SIGQUIT)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass


def api_key(binary, database_url, tenant):
    out = subprocess.run([str(binary), "apikey", "create", "--tenant", tenant, "--scope", "*"],
                         env=known_env(binary, service_env(database_url, 0)), capture_output=True, text=True,
                         check=True)
    return out.stdout.strip().splitlines()[-1]


def migrate(binary, database_url):
    subprocess.run([str(binary), "migrate", "run"], env=known_env(binary, service_env(database_url, 0)), check=True,
                   stdout=subprocess.DEVNULL)


def workdir(name):
    """A scratch folder, removed when the process exits unless ROLLOUT_KEEP=1 (to read the logs
    of a failure: nginx's error.log, each instance's service.log)."""
    d = tempfile.mkdtemp(prefix=f"rollout-{name}-")
    os.chmod(d, 0o755)
    if os.environ.get("ROLLOUT_KEEP") != "1":
        import atexit

        atexit.register(shutil.rmtree, d, True)
    return d
