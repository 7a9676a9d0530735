"""Clients of the API as a billing integration would be: each creates a customer, drafts an
invoice, finalizes it, pays it and reads it back, over and over, through the proxy. Half the
writes carry an Idempotency-Key. Every answer is counted by status; a write is *acknowledged*
when its 2xx answer arrived, and the acknowledged ones are kept to be looked for afterwards.
"""
import http.client
import json
import ssl
import threading
import time
import uuid
from collections import Counter
from urllib.parse import urlsplit


class Results:
    def __init__(self):
        self.lock = threading.Lock()
        self.statuses = Counter()
        self.errors = Counter()
        self.customers = set()
        self.invoices = {}  # id -> the furthest state acknowledged: draft, open, paid
        self.payments = set()
        self.failures = []  # (method, path, status or error, body excerpt)
        self.completed_at = []  # monotonic time of every answer or client error, in order
        self.crashes = []  # clients that stopped on an exception of the load generator itself
        self.coverage = []  # problems with the load itself (see run_under_load)

    @property
    def sent(self):
        return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def failed(self):
        return (sum(n for s, n in self.statuses.items() if not 200 <= s < 300) + sum(self.errors.values())
                + len(self.crashes))

    def summary(self):
        by_status = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        errors = ", ".join(f"{e}: {n}" for e, n in sorted(self.errors.items()))
        crashes = f"; {len(self.crashes)} clients crashed" if self.crashes else ""
        return (f"{self.sent} requests, {self.failed} failed ({by_status}{'; ' + errors if errors else ''}{crashes}); "
                f"acknowledged writes: {len(self.customers)} customers, {len(self.invoices)} invoices, "
                f"{len(self.payments)} payments")


class Client:
    def __init__(self, base, key, cafile, results):
        u = urlsplit(base)
        self.host, self.port, self.https = u.hostname, u.port, u.scheme == "https"
        self.key = key
        self.results = results
        self.context = ssl.create_default_context(cafile=cafile) if self.https else None
        self.conn = None

    def _connect(self):
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=60, context=self.context)
        return http.client.HTTPConnection(self.host, self.port, timeout=60)

    def call(self, method, path, body=None, idempotent=False):
        headers = {"Authorization": f"Bearer {self.key}"}
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        if idempotent:
            headers["Idempotency-Key"] = str(uuid.uuid4())
        if self.conn is None:
            self.conn = self._connect()
        try:
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
            text = response.read()
            if response.getheader("connection", "").lower() == "close":
                self.conn.close()
                self.conn = None
        except (OSError, http.client.HTTPException) as e:
            # What a client library would report; the request may or may not have been applied.
            self.conn = None
            with self.results.lock:
                self.results.completed_at.append(time.monotonic())
                self.results.errors[type(e).__name__] += 1
                self.results.failures.append((method, path, type(e).__name__, str(e)[:200]))
            return None
        with self.results.lock:
            self.results.completed_at.append(time.monotonic())
            self.results.statuses[response.status] += 1
            if not 200 <= response.status < 300:
                self.results.failures.append((method, path, response.status, text[:300].decode(errors="replace")))
        if not 200 <= response.status < 300:
            return None
        return json.loads(text) if text else {}

    def one_round(self, n):
        r = self.results
        customer = self.call("POST", "/v1/customers", {"name": f"Load {n}", "currency": "usd"}, idempotent=n % 2 == 0)
        if customer is None:
            return
        with r.lock:
            r.customers.add(customer["id"])
        invoice = self.call("POST", "/v1/invoices", {
            "customer": customer["id"],
            "lines": [{"description": "Plan", "quantity": 1, "unit_amount": 1250}],
        }, idempotent=n % 2 == 1)
        if invoice is None:
            return
        with r.lock:
            r.invoices[invoice["id"]] = "draft"
        final = self.call("POST", f"/v1/invoices/{invoice['id']}/finalize", idempotent=n % 2 == 0)
        if final is None:
            return
        with r.lock:
            r.invoices[invoice["id"]] = "open"
        payment = self.call("POST", "/v1/payments", {
            "invoice": invoice["id"], "amount": 1250, "currency": "usd",
        }, idempotent=n % 2 == 1)
        if payment is None:
            return
        with r.lock:
            r.payments.add(payment["id"])
            r.invoices[invoice["id"]] = "paid"
        self.call("GET", f"/v1/invoices/{invoice['id']}")
        self.call("GET", "/v1/customers?limit=5")


class Load:
    """`clients` threads running rounds until stop()."""

    def __init__(self, base, key, cafile=None, clients=16):
        self.results = Results()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(base, key, cafile, i), daemon=True)
                        for i in range(clients)]

    def _run(self, base, key, cafile, i):
        client = Client(base, key, cafile, self.results)
        n = i * 1_000_000
        try:
            while not self.stopping.is_set():
                client.one_round(n)
                n += 1
        except Exception as e:  # noqa: BLE001 - a client that stops must not pass for a quiet one
            with self.results.lock:
                self.results.crashes.append(f"client {i}: {type(e).__name__}: {e}")

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=90)
        return self.results


def verify(pg, results):
    """Every acknowledged write is in the database, in at least the state acknowledged, and the
    ledger balances: its postings sum to zero per currency, and each customer's balance is the sum
    of their receivable postings. Returns the problems found."""
    problems = []
    customers = {row[0] for row in pg.query("SELECT id FROM customers")}
    missing = results.customers - customers
    if missing:
        problems.append(f"{len(missing)} acknowledged customers missing, e.g. {sorted(missing)[:3]}")
    invoices = dict(pg.query("SELECT id, status FROM invoices"))
    rank = {"draft": 0, "open": 1, "paid": 2}
    for invoice, acked in results.invoices.items():
        status = invoices.get(invoice)
        if status is None:
            problems.append(f"acknowledged invoice {invoice} missing")
        elif rank.get(status, -1) < rank[acked]:
            problems.append(f"invoice {invoice} is {status}, but {acked} was acknowledged")
    payments = {row[0] for row in pg.query("SELECT id FROM payments")}
    missing = results.payments - payments
    if missing:
        problems.append(f"{len(missing)} acknowledged payments missing, e.g. {sorted(missing)[:3]}")
    for currency, total in pg.query("SELECT currency, SUM(amount) FROM ledger_entries GROUP BY currency"):
        if int(total) != 0:
            problems.append(f"the ledger does not balance in {currency}: postings sum to {total}")
    unbalanced = pg.query(
        "SELECT b.customer_id, b.balance, COALESCE(SUM(e.amount), 0) FROM customer_balances b "
        "LEFT JOIN ledger_entries e ON e.tenant_id = b.tenant_id AND e.customer_id = b.customer_id "
        "AND e.currency = b.currency AND e.account = 'accounts_receivable' "
        "GROUP BY b.customer_id, b.balance HAVING b.balance <> COALESCE(SUM(e.amount), 0)")
    if unbalanced:
        problems.append(f"{len(unbalanced)} customer balances differ from their postings, e.g. {unbalanced[:2]}")
    return problems


#: The longest the clients may go without any answer while the rollout runs. A request that waits
#: this long is as good as failed to a user; and a load that stopped would otherwise pass as
#: "0 failed".
MAX_SILENCE = 5.0


def run_under_load(base, key, cafile, during, clients=16, warmup=2.0, cooldown=2.0):
    """Runs `during()` (the rollout) while the clients run; returns the results, with
    `coverage` problems if the load did not keep going through the whole rollout."""
    load = Load(base, key, cafile, clients).start()
    time.sleep(warmup)
    started = time.monotonic()
    try:
        during()
        ended = time.monotonic()
        time.sleep(cooldown)
    finally:
        results = load.stop()
    times = [started] + [t for t in results.completed_at if started <= t <= ended] + [ended]
    gap = max(b - a for a, b in zip(times, times[1:]))
    results.during = (len(times) - 2, ended - started, gap)
    if len(times) - 2 < clients:
        results.coverage.append(f"only {len(times) - 2} answers during the {ended - started:.1f}s rollout")
    if gap > MAX_SILENCE:
        results.coverage.append(f"no answer for {gap:.1f}s during the rollout (at most {MAX_SILENCE}s allowed)")
    results.coverage += results.crashes
    return results
