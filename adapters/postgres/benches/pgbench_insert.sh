#!/usr/bin/env bash
# PostgreSQL's own limit for what a command needs at least, one durable insert: pgbench
# (the C client) inserting one row per autocommit transaction into a minimal table,
# prepared, 10 s, from 1 client and from 8. Run it on the server the throughput bench
# used, just after it:
#   DATABASE_URL='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable' \
#     bash adapters/postgres/benches/pgbench_insert.sh
set -euo pipefail
url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"
schema="pgbench_insert_$$"
script="$(mktemp)"
trap 'PGOPTIONS="-c client_min_messages=warning" psql "$url" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null; rm -f "$script"' EXIT
psql "$url" -q -v ON_ERROR_STOP=1 <<SQL
CREATE SCHEMA $schema;
CREATE TABLE $schema.events (id bigserial PRIMARY KEY, stream_id text NOT NULL, version int8 NOT NULL,
                              payload json NOT NULL, UNIQUE (stream_id, version));
SQL
cat > "$script" <<SQL
\set n random(1, 1000000000)
INSERT INTO $schema.events (stream_id, version, payload) VALUES ('s-' || :n || '-' || :client_id, 1, '{"sku":"tea","qty":1}')
  ON CONFLICT DO NOTHING;
SQL
for clients in 1 8; do
  PGSSLMODE=disable pgbench -n -M prepared -T 10 -c "$clients" -j "$((clients < 2 ? clients : 2))" -f "$script" "$url" \
    | grep -E "^(number of clients|tps)" | sed "s/^/$clients client(s): /"
done
