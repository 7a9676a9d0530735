#!/usr/bin/env python3
"""Turns one billing-cycle transaction, as PostgreSQL logged it, into a pgbench script that
replays the same SQL (bench/cycles.sh): the baseline of the cycle's invoices/s.

bench/cycles.sh has PostgreSQL log the statements of a sample of transactions
(`log_transaction_sample_rate`, with `log_line_prefix = '[%p %v] '`: the process and the
virtual transaction id). This picks one that billed a subscription: it starts with the claim
of a due subscription (with a cursor: see `subscriptions::claim_due`), and writes its
statements, in order, with the logged parameters as pgbench variables (sent as parameters, as
sqlx sent them; `--variables` lists them for `pgbench -D`) except for those that must differ per
transaction:

- the claim keeps its cursor in pgbench variables (`\\gset c_`: each client walks the queue as
  a claimer does), and the claimed subscription's id replaces the logged one everywhere;
- the customer's and the item's ids follow from the subscription's (bench/cycles_fixtures.py
  gives them all the same hex digits);
- the invoice number comes from the tenant's counter, as the service takes it (`\\gset t_`);
- every id the transaction created is made anew from a random per-transaction value.

Nothing else is interpreted: the replay sends what the service sent, as prepared statements
(`pgbench -M prepared`, as sqlx does), with none of the service's work between them.
"""
import argparse
import re
import sys

LINE = re.compile(r"^\[(\d+) ([0-9/]+)\] (LOG|DETAIL):\s+(.*)$")
EXECUTE = re.compile(r"duration: [0-9.]+ ms\s+execute [^:]*: (.*)$")
PARAM = re.compile(r"\$(\d+) = (NULL|'(?:[^']|'')*')")
NEW_ID = re.compile(r"^[a-z]+_[0-9A-Za-z]{16,}$")
CLAIM = "FROM subscriptions s WHERE s.next_action_at IS NOT NULL"


def transactions(path):
    """{(pid, vxid): [(sql, {n: value or None})]} in log order."""
    found, last = {}, None
    with open(path, encoding="utf-8", errors="replace") as log:
        for raw in log:
            m = LINE.match(raw.rstrip("\n"))
            if not m:
                last = None
                continue
            pid, vxid, kind, text = m.groups()
            key = (pid, vxid)
            if kind == "LOG":
                e = EXECUTE.match(text)
                last = None
                if e:
                    found.setdefault(key, []).append([e.group(1), {}])
                    last = key
            elif kind == "DETAIL" and last == key and text.startswith("parameters:"):
                params = {}
                for n, v in PARAM.findall(text):
                    params[int(n)] = None if v == "NULL" else v[1:-1].replace("''", "'")
                found[key][-1][1] = params
    return found


def pick(found):
    """A transaction that claimed with a cursor and billed (an invoice was numbered)."""
    for statements in found.values():
        if (statements and CLAIM in statements[0][0] and len(statements[0][1]) == 3
                and any(s.startswith("INSERT INTO tenants") for s, _ in statements)):
            return statements
    return None


def script(statements):
    claim_sql, claim_params = statements[0]
    # The subscription the logged transaction claimed: the id its next statement locks.
    lock_params = statements[1][1]
    sub = next(v for v in lock_params.values() if v and v.startswith("sub_"))
    customer = "cus_" + sub[len("sub_"):]
    item = "si_" + sub[len("sub_"):]
    # An id is new when the first statement that names it writes it (an id read first, like a
    # price's, already exists).
    first_seen = {}
    for sql, params in statements:
        for v in params.values():
            first_seen.setdefault(v, sql.startswith("INSERT"))
    new_ids = {}
    constants = {}
    out = ["\\set r random(1, 1000000000000000)", "BEGIN;"]
    for index, (sql, params) in enumerate(statements):
        sql = " ".join(sql.split())
        seq_param = None
        m = re.search(r"number_seq = COALESCE\(\$(\d+)", sql)
        if m and sql.startswith("UPDATE invoices"):
            seq_param = int(m.group(1))

        def value(n):
            v = params.get(n)
            if index == 0 and n == 2:
                return ":c_next_action_at"
            if index == 0 and n == 3:
                return ":c_id"
            if n == seq_param and v is not None:
                return ":t_number"
            if v == sub:
                return ":c_id"
            if v == customer:
                return "('cus_' || substr(:c_id::text, 5))"
            if v == item:
                return "('si_' || substr(:c_id::text, 5))"
            if v is not None and NEW_ID.match(v) and first_seen.get(v):
                prefix = v.split("_")[0]
                new_ids.setdefault(v, len(new_ids) + 1)
                return f"('{prefix}_'::text || :r::text || '_{new_ids[v]}')"
            if v is None:
                return "NULL"
            # As a pgbench variable, which -M prepared sends as a parameter, as sqlx did (a
            # literal would do too, but pgbench would take the colons in it for variables).
            name = constants.setdefault(v, f"p{len(constants) + 1}")
            return ":" + name

        text = re.sub(r"\$(\d+)", lambda g: value(int(g.group(1))), sql)
        if index == 0:
            out.append(text + " \\gset c_")
        elif sql.startswith("INSERT INTO tenants"):
            out.append(text + " \\gset t_")
        else:
            out.append(text + ";")
    out.append("COMMIT;")
    return "\n".join(out) + "\n", [f"{name}={v}" for v, name in constants.items()]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log", required=True, help="PostgreSQL's log")
    p.add_argument("--out", required=True, help="the pgbench script to write")
    p.add_argument("--variables", required=True, help="where to write its constants, one NAME=VALUE a line (pgbench -D)")
    args = p.parse_args()
    statements = pick(transactions(args.log))
    if statements is None:
        sys.exit("no billing transaction with a cursor in the log (raise the sample rate?)")
    text, variables = script(statements)
    if any("\n" in v for v in variables):
        sys.exit("a parameter holds a newline: it cannot be a pgbench -D variable")
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    with open(args.variables, "w", encoding="utf-8") as f:
        f.write("".join(v + "\n" for v in variables))
    print(f"{len(statements)} statements")


if __name__ == "__main__":
    main()
