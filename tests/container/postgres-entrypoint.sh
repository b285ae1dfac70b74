#!/bin/sh
# LOCAL TEST ONLY (see postgres.Dockerfile): the official image's first-start set-up, in short.
set -eu
: "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}" >"$pwfile"
    initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    # a socket-only server while the database is created, then the real one
    pg_ctl -w -o "-c listen_addresses=''" start >/dev/null
    [ "$POSTGRES_DB" = postgres ] || createdb --username="$POSTGRES_USER" "$POSTGRES_DB"
    pg_ctl -w -m fast stop >/dev/null
fi
[ "$1" = postgres ] && set -- "$@" -c "listen_addresses=${POSTGRES_LISTEN:-*}"
exec "$@"
