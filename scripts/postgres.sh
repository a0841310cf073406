# Sourced by scripts/test: a PostgreSQL for the metadata API tests.
#
# - IMGORIGIN_TEST_POSTGRES_URL already set: used as is (e.g. a CI service container).
# - Else a server on 127.0.0.1:5432 is used when one answers; otherwise the Debian
#   `postgresql` package is installed if needed and a cluster is started (or created).
# - A scratch database `imgorigin_test_<pid>` owned by a login role `imgorigin_test` is
#   created for this run and dropped on exit (see `drop_test_postgres`); each test makes
#   its own schema inside it.

_pg_sudo() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# psql as the `postgres` superuser: over TCP when that is allowed (trust), else through
# the local socket with peer authentication.
_pg_admin() {
  if psql -h 127.0.0.1 -p 5432 -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
    psql -h 127.0.0.1 -p 5432 -U postgres -d postgres -v ON_ERROR_STOP=1 -Atq "$@"
  elif [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- psql -p 5432 -d postgres -v ON_ERROR_STOP=1 -Atq "$@"
  else
    sudo -u postgres psql -p 5432 -d postgres -v ON_ERROR_STOP=1 -Atq "$@"
  fi
}

_pg_answers() {
  (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null
}

ensure_test_postgres() {
  if [ -n "${IMGORIGIN_TEST_POSTGRES_URL:-}" ]; then
    echo "metadata tests: PostgreSQL from IMGORIGIN_TEST_POSTGRES_URL" >&2
    return 0
  fi
  if ! command -v psql >/dev/null || ! command -v pg_ctlcluster >/dev/null; then
    echo "installing postgresql" >&2
    _pg_sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive _pg_sudo apt-get install -y -qq postgresql >/dev/null
  fi
  if ! _pg_answers; then
    local ver name
    if read -r ver name _ < <(pg_lsclusters -h 2>/dev/null | awk '$3 == 5432' | head -1) && [ -n "$ver" ]; then
      echo "starting PostgreSQL cluster $ver/$name" >&2
      _pg_sudo pg_ctlcluster "$ver" "$name" start
    else
      ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
      echo "creating PostgreSQL cluster $ver/imgorigin on port 5432" >&2
      _pg_sudo pg_createcluster "$ver" imgorigin -p 5432 --start >/dev/null
    fi
    for _ in $(seq 1 30); do _pg_answers && break; sleep 1; done
    _pg_answers || { echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2; return 1; }
  fi
  TEST_PG_DB="imgorigin_test_$$"
  _pg_admin -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'imgorigin_test') THEN CREATE ROLE imgorigin_test LOGIN PASSWORD 'imgorigin_test'; END IF; END \$\$;" >/dev/null
  _pg_admin -c "CREATE DATABASE $TEST_PG_DB OWNER imgorigin_test" >/dev/null
  export IMGORIGIN_TEST_POSTGRES_URL="postgres://imgorigin_test:imgorigin_test@127.0.0.1:5432/$TEST_PG_DB"
  echo "metadata tests: scratch database $TEST_PG_DB on 127.0.0.1:5432" >&2
}

drop_test_postgres() {
  if [ -n "${TEST_PG_DB:-}" ]; then
    _pg_admin -c "DROP DATABASE IF EXISTS $TEST_PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
  fi
}
