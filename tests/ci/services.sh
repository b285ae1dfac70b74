#!/usr/bin/env bash
# Services the test suite talks to, started from Debian's packages when none answers:
# PostgreSQL on 127.0.0.1:${PG_PORT:-5432} (the store tests on both engines, tests/pg.py;
# role `postgres`, trust authentication, in a scratch cluster) and Redis on
# 127.0.0.1:${REDIS_PORT:-6379} (shared rate limits). A machine that already runs them is
# used as is. Called by .ci/run; safe to run twice.
set -euo pipefail
PG_PORT=${PG_PORT:-5432}
REDIS_PORT=${REDIS_PORT:-6379}

answers() { python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 2)" "$1" 2>/dev/null; }

if answers "$PG_PORT"; then
    echo "PostgreSQL answers on 127.0.0.1:$PG_PORT: used as is"
else
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        apt-get update -q && apt-get install -y -q --no-install-recommends postgresql
    fi
    bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
    dir=$(mktemp -d /tmp/slimgate-pg.XXXXXX)
    chown postgres: "$dir"
    su postgres -s /bin/sh -c "$bin/initdb -D $dir/data -A trust -U postgres >/dev/null"
    su postgres -s /bin/sh -c "$bin/pg_ctl -D $dir/data -l $dir/log -w start \
        -o '-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$dir'"
    echo "PostgreSQL started on 127.0.0.1:$PG_PORT ($dir)"
fi

if answers "$REDIS_PORT"; then
    echo "Redis answers on 127.0.0.1:$REDIS_PORT: used as is"
else
    command -v redis-server >/dev/null 2>&1 \
        || { apt-get update -q && apt-get install -y -q --no-install-recommends redis-server; }
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --daemonize yes
    for _ in $(seq 50); do answers "$REDIS_PORT" && break; sleep 0.1; done
    echo "Redis started on 127.0.0.1:$REDIS_PORT"
fi
