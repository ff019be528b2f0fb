#!/usr/bin/env bash
# Runs CMD with CHRONICLE_TEST_PG_URL pointing at a throwaway PostgreSQL cluster:
#
#   scripts/with-postgres.sh cargo test
#   scripts/with-postgres.sh cargo test -p chronicle-postgres
#
# The cluster lives in a fresh temporary directory, listens on 127.0.0.1 at a free port
# (and on a socket in that directory), runs as an unprivileged user when invoked as root
# (PostgreSQL refuses to run as root: `nobody` by default, CHRONICLE_PG_USER to change),
# and is stopped and removed when CMD ends, whatever its outcome (also on Ctrl-C).
# The exit status is CMD's. Needs initdb and pg_ctl (PostgreSQL 13 or later) on the PATH;
# psql or createdb, if present, create a database of its own (else `postgres` is used).
#
# The PostgreSQL tests of crates/chronicle-postgres are `#[ignore]`d unless
# CHRONICLE_TEST_PG_URL is set when they are compiled (its build script turns the variable
# into a cfg), so plain `cargo test` reports them as ignored and this script runs them.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 CMD [ARGS...]" >&2
    exit 2
fi
for tool in initdb pg_ctl; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "with-postgres: $tool is not on the PATH (install PostgreSQL server binaries)" >&2
        exit 2
    fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/chronicle-pg.XXXXXX")
data="$work/data"
log="$work/server.log"
as_user=()
if [ "$(id -u)" -eq 0 ]; then
    pg_user="${CHRONICLE_PG_USER:-nobody}"
    if ! id "$pg_user" >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin "$pg_user"
    fi
    chown "$pg_user" "$work"
    chmod 0755 "$work"
    as_user=(runuser -u "$pg_user" --)
fi

started=0
cleanup() {
    status=$?
    if [ "$started" -eq 1 ]; then
        "${as_user[@]}" pg_ctl -D "$data" -m immediate -t 30 stop >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"${as_user[@]}" initdb -D "$data" -U chronicle --auth=trust -E UTF8 --locale=C --no-sync >"$work/initdb.log" 2>&1 || {
    cat "$work/initdb.log" >&2
    exit 1
}

port_free() {
    # Nothing accepts a connection on the port (bash's /dev/tcp).
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

port=""
for _ in $(seq 1 20); do
    candidate=$((20000 + RANDOM % 40000))
    port_free "$candidate" || continue
    if "${as_user[@]}" pg_ctl -D "$data" -l "$log" -w -t 60 \
        -o "-p $candidate -k $work -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=128MB" \
        start >/dev/null 2>&1; then
        port=$candidate
        started=1
        break
    fi
done
if [ -z "$port" ]; then
    echo "with-postgres: the server did not start; its log:" >&2
    cat "$log" >&2 || true
    exit 1
fi

db=chronicle_test
if command -v createdb >/dev/null 2>&1; then
    createdb -h 127.0.0.1 -p "$port" -U chronicle "$db"
elif command -v psql >/dev/null 2>&1; then
    psql -h 127.0.0.1 -p "$port" -U chronicle -d postgres -qc "CREATE DATABASE $db"
else
    db=postgres
fi

export CHRONICLE_TEST_PG_URL="postgres://chronicle@127.0.0.1:$port/$db"
echo "with-postgres: PostgreSQL $(postgres --version | awk '{print $3}') at $CHRONICLE_TEST_PG_URL (cluster in $work)" >&2

set +e
"$@"
status=$?
set -e
exit "$status"
