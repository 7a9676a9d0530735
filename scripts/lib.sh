# Helpers shared by CI and benchmark scripts: free ports, waiting for HTTP, a throwaway PostgreSQL.
# shellcheck shell=bash

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_http() { # url
  for _ in $(seq 1 300); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "not answering: $1" >&2
  return 1
}

# Starts PostgreSQL in $1 (a fresh directory) on port $2 as the postgres user when root; sets PG_URL.
# PG_CPU (an array, e.g. (taskset -c 1)) pins the server; PG_OPTIONS adds server settings.
start_postgres() {
  local dir=$1 port=$2 bindir
  bindir=$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  local as=()
  if [ "$(id -u)" = 0 ]; then as=(runuser -u postgres --); chown postgres "$dir"; fi
  "${as[@]}" "$bindir/initdb" -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 --locale=C >/dev/null
  # Durable commits by default, as production runs; PG_SYNCHRONOUS_COMMIT=off makes the run CPU-bound.
  ${PG_CPU[@]+"${PG_CPU[@]}"} "${as[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/pg.log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=256MB -c synchronous_commit=${PG_SYNCHRONOUS_COMMIT:-on} ${PG_OPTIONS:-}" start >/dev/null
  PG_CTL=("${as[@]}" "$bindir/pg_ctl" -D "$dir/data")
  PGBENCH="$bindir/pgbench"
  PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

stop_postgres() {
  [ -n "${PG_CTL:-}" ] && "${PG_CTL[@]}" stop -m fast >/dev/null 2>&1 || true
}

