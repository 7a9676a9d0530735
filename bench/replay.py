#!/usr/bin/env python3
"""Turns what billing-api sent to PostgreSQL for one request into a pgbench script that sends the
same statements, in the same order, on the same number of connections (bench/write_path.sh).

Input: the server's JSON log (log_destination = jsonlog, log_statement = all) covering one
request. Every statement of a client backend (psql's own excepted) is kept: `statement: …` as it
is, `execute <name>: …` with its parameters put in as literals, except the values that differ
from one request to the next, which become expressions of pgbench variables:

  - the invoice and customer the request names  -> the fixture picked by `:inv` (an array
    constant indexed by a parameter: no extra round trip);
  - ids the service generated (`pay_…`, `le_…`, `evt_…`, …), the Idempotency-Key and the request
    id -> unique per transaction, equal wherever the service used the same value;

so that every transaction does the same work as a new request. Colons inside literals are
escaped (E'\\x3a'): pgbench would read `:1` as a variable.

Prints one line per statement and `statements: N`; writes the script to --out.
"""
import argparse
import json
import re
import sys

ID = re.compile(r"^([a-z]+)_[0-9a-f]{16,32}$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def parse_parameters(detail):
    """`parameters: $1 = 'a', $2 = NULL, …` -> {1: 'a', 2: None}."""
    values, i = {}, 0
    text = detail[len("parameters: "):] if detail and detail.startswith("parameters: ") else ""
    while i < len(text):
        m = re.compile(r"\s*\$(\d+) = ").match(text, i)
        if not m:
            break
        n, i = int(m.group(1)), m.end()
        if text.startswith("NULL", i):
            values[n], i = None, i + 4
        else:
            assert text[i] == "'", text[i:i + 20]
            i += 1
            out = []
            while True:
                j = text.index("'", i)
                out.append(text[i:j])
                if text.startswith("''", j):
                    out.append("'")
                    i = j + 2
                else:
                    i = j + 1
                    break
            values[n] = "".join(out)
        if text.startswith(",", i):
            i += 1
    return values


def literal(value):
    if value is None:
        return "NULL"
    if ":" in value or "\\" in value:
        escaped = value.replace("\\", "\\\\").replace("'", "''").replace(":", "\\x3a")
        return "E'" + escaped + "'"
    return "'" + value.replace("'", "''") + "'"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log", required=True, nargs="+")
    p.add_argument("--invoice", required=True, help="the invoice the captured request paid")
    p.add_argument("--customer", required=True, help="its customer")
    p.add_argument("--fixtures", required=True, help="TSV of invoice id, customer id: what :inv picks from")
    p.add_argument("--key-id", required=True, help="the API key's id (the same in every request)")
    p.add_argument("--idempotency-key", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()

    fixtures = [line.split("\t") for line in open(args.fixtures).read().split("\n") if line.strip()]
    invoices = "ARRAY[" + ",".join(f"'{i}'" for i, _ in fixtures) + "]"
    customers = "ARRAY[" + ",".join(f"'{c}'" for _, c in fixtures) + "]"
    fresh = {}  # captured per-request value -> its expression

    def render(value):
        if value is None:
            return "NULL"
        if value == args.invoice:
            return f"({invoices})[:inv]"
        if value == args.customer:
            return f"({customers})[:inv]"
        if value == args.key_id:
            return literal(value)
        if value == args.idempotency_key or UUID.match(value) or ID.match(value):
            if value not in fresh:
                prefix = ID.match(value).group(1) + "_" if ID.match(value) else "k"
                fresh[value] = f"('{prefix}' || :client_id || 'x' || :n || 'x{len(fresh)}')"
            return fresh[value]
        return literal(value)

    statements = []
    for path in args.log:
        for line in open(path):
            entry = json.loads(line)
            if entry.get("backend_type") != "client backend" or entry.get("application_name") == "psql":
                continue
            message = entry.get("message", "")
            if message.startswith("statement: "):
                sql = message[len("statement: "):]
            elif message.startswith("execute ") and ": " in message:
                sql = message.split(": ", 1)[1]
                params = parse_parameters(entry.get("detail"))
                sql = re.sub(r"\$(\d+)", lambda m: render(params[int(m.group(1))]), sql)
            else:
                continue
            statements.append(" ".join(sql.split()))
    if not statements:
        sys.exit("no statement of the service in the log")
    with open(args.out, "w") as out:
        out.write("-- Generated by bench/replay.py from PostgreSQL's log of one POST /v1/payments.\n")
        out.write(f"\\set inv random(1, {len(fixtures)})\n\\set n random(1, 1000000000000)\n")
        for sql in statements:
            out.write(sql + ";\n")
    for sql in statements:
        print("  " + (sql[:110] + "…" if len(sql) > 110 else sql))
    print(f"statements: {len(statements)}")


if __name__ == "__main__":
    main()
