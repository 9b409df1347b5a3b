#!/usr/bin/env bash
# Create the PostgreSQL role and database of a Spimeforge hub and print the hub's --database URL.
# Usage: bash ops/postgres-setup.sh [ROLE [DATABASE]]      (defaults: spime spimeforge; safe to run again)
#   As root on the database machine it runs psql as the postgres user over the local socket, and the
#   URL uses peer authentication (the hub's system user must then be named ROLE, as the units do).
#   With PGHOST/PGPORT/PGUSER set it talks to that server instead. SPIME_DB_PASSWORD=... gives the
#   role a password and puts host, port and password in the URL (for a hub on another machine).
# The hub creates its tables itself (migrations run at start, or `spime-hub migrate --database URL`).
set -euo pipefail
role=${1:-spime}
db=${2:-spimeforge}
name='^[a-z_][a-z0-9_]{0,62}$'
if ! [[ $role =~ $name && $db =~ $name ]]; then
  echo "postgres-setup.sh: role and database names: lowercase letters, digits, '_' (at most 63)" >&2
  exit 2
fi
if [ -z "${PGHOST:-}" ] && [ "$(id -u)" = 0 ]; then
  psql=(runuser -u postgres -- psql)
else
  psql=(psql)
fi
run() { "${psql[@]}" -v ON_ERROR_STOP=1 -qtA -d postgres "$@"; }

if [ "$(run -c "SELECT 1 FROM pg_roles WHERE rolname = '$role'")" != 1 ]; then
  run -c "CREATE ROLE \"$role\" LOGIN"
  echo "created role $role" >&2
fi
if [ -n "${SPIME_DB_PASSWORD:-}" ]; then
  # psql's :'var' quoting keeps the password out of the SQL text's syntax.
  printf '%s\n' "ALTER ROLE \"$role\" PASSWORD :'pw'" | run -v pw="$SPIME_DB_PASSWORD" -f -
fi
if [ "$(run -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
  run -c "CREATE DATABASE \"$db\" OWNER \"$role\" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
  echo "created database $db" >&2
fi
run -c "REVOKE ALL ON DATABASE \"$db\" FROM PUBLIC"

if [ -n "${SPIME_DB_PASSWORD:-}" ]; then
  pw=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$SPIME_DB_PASSWORD")
  echo "postgresql://$role:$pw@${PGHOST:-localhost}:${PGPORT:-5432}/$db"
elif [ -n "${PGHOST:-}" ]; then
  echo "postgresql://$role@$PGHOST:${PGPORT:-5432}/$db"
else
  echo "postgresql://$role@/$db"
fi
