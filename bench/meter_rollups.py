#!/usr/bin/env python3
"""The rollups ingestion makes of EVENTS meter events of one customer spread evenly over the
last full UTC month: one row per minute for the tenant's `count` meter, and one per minute and
`$.model` group (m0..m3) for its grouped `sum` meter, written with generate_series in one
statement each (generating and ingesting 100 million events would take this machine hours;
what invoice-time aggregation reads is these rows, and their number does not depend on the
events behind them).

Prints AGG_CUSTOMER, AGG_START, AGG_END and AGG_ROWS as shell assignments.

Usage: meter_rollups.py --url POSTGRES_URL --events N
"""
import argparse
import datetime
import subprocess


def psql(url, sql):
    out = subprocess.run(["psql", "-qtAX", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--events", type=int, required=True)
    args = p.parse_args()

    today = datetime.datetime.now(datetime.timezone.utc).date()
    first = today.replace(day=1)
    start_day = (first - datetime.timedelta(days=1)).replace(day=1)
    start = int(datetime.datetime(start_day.year, start_day.month, 1, tzinfo=datetime.timezone.utc).timestamp())
    end = int(datetime.datetime(first.year, first.month, 1, tzinfo=datetime.timezone.utc).timestamp())
    minutes = (end - start) // 60

    tenant = "bench"
    customer = "cus_" + "a" * 32
    psql(args.url, f"INSERT INTO customers (id, tenant_id, currency, metadata, created) "
                   f"VALUES ('{customer}', '{tenant}', 'usd', '{{}}', {start}) ON CONFLICT DO NOTHING")
    count_meter = psql(args.url, f"SELECT id FROM meters WHERE tenant_id = '{tenant}' AND aggregation = 'count'")
    sum_meter = psql(args.url, f"SELECT id FROM meters WHERE tenant_id = '{tenant}' AND aggregation = 'sum'")

    # Minute k holds base + 1 events when k < extra: the events add up to exactly --events.
    base, extra = divmod(args.events, minutes)
    per_minute = f"({base} + CASE WHEN k < {extra} THEN 1 ELSE 0 END)"
    psql(args.url, f"""
        INSERT INTO meter_rollups (tenant_id, meter_id, customer_id, minute, group_key, events, value_sum,
            value_max, latest_at, latest_id, latest_value)
        SELECT '{tenant}', '{count_meter}', '{customer}', {start} + 60 * k, '[]', {per_minute}, 0, 0,
            {start} + 60 * k + 59, 'e' || k, 0
        FROM generate_series(0, {minutes - 1}) AS k""")
    # The sum meter's groups share each minute's events (the first groups take the remainder).
    psql(args.url, f"""
        INSERT INTO meter_rollups (tenant_id, meter_id, customer_id, minute, group_key, events, value_sum,
            value_max, latest_at, latest_id, latest_value)
        SELECT '{tenant}', '{sum_meter}', '{customer}', {start} + 60 * k, '["m' || g || '"]',
            {per_minute} / 4 + CASE WHEN g < {per_minute} % 4 THEN 1 ELSE 0 END, 7 * {per_minute}, 999,
            {start} + 60 * k + 59, 'e' || k || '-' || g, 3
        FROM generate_series(0, {minutes - 1}) AS k, generate_series(0, 3) AS g""")
    psql(args.url, "VACUUM ANALYZE meter_rollups")
    rows = psql(args.url, f"SELECT count(*) FROM meter_rollups WHERE customer_id = '{customer}'")
    print(f"AGG_CUSTOMER={customer}\nAGG_START={start}\nAGG_END={end}\nAGG_ROWS={rows}")


if __name__ == "__main__":
    main()
