#!/usr/bin/env python3
"""Clones one subscription into COUNT, each with a customer of its own, due at the same instant
(bench/cycles.sh).

The template is made through the API (so that every column is as the service writes it) for a
customer on a test clock set in the past; here its customer leaves the clock and it is copied in
one INSERT … SELECT per table, with ids of the same shape as the service's (the template's prefix
and 32 hex digits). Its first invoice is copied too (paid, with its line and its charge, numbered
after the template's): the tables the cycle reads hold what a deployment's would, a period of history
per subscription, and the planner sees their real size (`ANALYZE` afterwards), not empty tables.

PostgreSQL goes through psql (generate_series), SQLite through Python's sqlite3 (a recursive
CTE); the statements are otherwise the same.
"""
import argparse
import subprocess
import sqlite3


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=["postgres", "sqlite"], required=True)
    p.add_argument("--url", required=True, help="postgres://… or the SQLite file's path")
    p.add_argument("--subscription", required=True, help="the template")
    p.add_argument("--count", type=int, required=True, help="subscriptions in all, the template included")
    args = p.parse_args()
    clones = args.count - 1

    if args.backend == "postgres":
        def query(sql):
            out = subprocess.run(["psql", "-qtAX", "-v", "ON_ERROR_STOP=1", args.url, "-c", sql],
                                 check=True, capture_output=True, text=True).stdout
            return [line for line in out.split("\n") if line]

        def cols(table):
            return query(f"SELECT column_name FROM information_schema.columns WHERE table_name = '{table}' "
                         "AND table_schema = current_schema() ORDER BY ordinal_position")

        def execute(script):
            subprocess.run(["psql", "-qX", "-v", "ON_ERROR_STOP=1", args.url], input=script, check=True, text=True,
                           capture_output=True)

        series = f"generate_series(1, {clones}) AS g(k)"
        hex_id = lambda prefix: f"'{prefix}_' || lpad(to_hex(k), 32, '0')"  # noqa: E731
    else:
        db = sqlite3.connect(args.url)

        def cols(table):
            return [r[1] for r in db.execute(f"PRAGMA table_info({table})")]

        def execute(script):
            db.executescript(script)
            db.commit()

        series = f"(WITH RECURSIVE g(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM g WHERE k < {clones}) SELECT k FROM g) AS g"
        hex_id = lambda prefix: f"printf('{prefix}_%032x', k)"  # noqa: E731

    sub = args.subscription.replace("'", "")
    if args.backend == "postgres":
        def scalar(sql):
            return query(sql)[0]
    else:
        def scalar(sql):
            return db.execute(sql).fetchone()[0]
    invoice = scalar(f"SELECT id FROM invoices WHERE subscription_id = '{sub}'")
    line = scalar(f"SELECT id FROM invoice_lines WHERE invoice_id = '{invoice}'")
    charge = scalar(f"SELECT id FROM subscription_charges WHERE subscription_id = '{sub}'")
    tenant = scalar(f"SELECT tenant_id FROM subscriptions WHERE id = '{sub}'")
    number = scalar(f"SELECT number_seq FROM invoices WHERE id = '{invoice}'")
    prefix = lambda i: i.split("_")[0]  # noqa: E731
    seq = f"({number} + k)"
    number_text = (f"t.number || '-' || {seq}" if args.backend == "sqlite" else f"t.number || '-' || {seq}::text")

    def clone(table, where, replace):
        names = cols(table)
        select = [replace.get(c, f"t.{c}") for c in names]
        return (f"INSERT INTO {table} ({', '.join(names)}) SELECT {', '.join(select)} "
                f"FROM {table} t, {series} WHERE {where};\n")

    script = "BEGIN;\n"
    script += (f"UPDATE customers SET test_clock_id = NULL WHERE id = "
               f"(SELECT customer_id FROM subscriptions WHERE id = '{sub}');\n")
    script += clone("customers", f"t.id = (SELECT customer_id FROM subscriptions WHERE id = '{sub}')",
                    {"id": hex_id("cus")})
    script += clone("subscriptions", f"t.id = '{sub}'", {"id": hex_id("sub"), "customer_id": hex_id("cus")})
    script += clone("subscription_items", f"t.subscription_id = '{sub}'",
                    {"id": hex_id("si"), "subscription_id": hex_id("sub")})
    script += clone("invoices", f"t.id = '{invoice}'",
                    {"id": hex_id(prefix(invoice)), "customer_id": hex_id("cus"), "subscription_id": hex_id("sub"),
                     "number": number_text, "number_seq": seq,
                     # Paid, as a subscription in good standing has it.
                     "status": "'paid'", "amount_paid": "t.total", "paid_at": "t.finalized_at"})
    script += clone("invoice_lines", f"t.id = '{line}'",
                    {"id": hex_id(prefix(line)), "invoice_id": hex_id(prefix(invoice))})
    script += clone("subscription_charges", f"t.id = '{charge}'",
                    {"id": hex_id(prefix(charge)), "subscription_id": hex_id("sub"),
                     "invoice_id": hex_id(prefix(invoice))})
    script += (f"UPDATE tenants SET next_invoice_number = {number} + {clones} + 1 WHERE id = '{tenant}';\n")
    script += "COMMIT;\n"
    if args.backend == "sqlite":
        script += "ANALYZE;\n"  # PostgreSQL's is bench/cycles.sh's VACUUM ANALYZE
    execute(script)
    print(f"{clones} clones of {sub}")


if __name__ == "__main__":
    main()
