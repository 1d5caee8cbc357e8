# Shared by scripts/test and scripts/demo: a project virtualenv and the PostgreSQL server binaries.
# Sourced, not executed.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RDSSSL_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

ensure_venv() {
    # Creates .venv when missing and (re)installs the project with its dev and binary extras
    # (binary: psycopg's bundled libpq) when pyproject.toml is newer than the last install, so
    # a fresh clone needs nothing else.
    if [ ! -x "$VENV/bin/python" ]; then
        echo "rdsssl: creating $VENV" >&2
        "$PY" -m venv "$VENV" || { echo "rdsssl: could not create a virtualenv with $PY (install python3-venv)" >&2; exit 1; }
    fi
    local stamp="$VENV/.rdsssl-installed"
    if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
        echo "rdsssl: installing the project and its dev tools into $VENV" >&2
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[dev,binary]" >&2 \
            || { echo "rdsssl: pip install failed (see above)" >&2; exit 1; }
        touch "$stamp"
    fi
}

find_pg_bin() {
    # Prints the directory holding initdb/pg_ctl: PATH first, then /usr/lib/postgresql/*/bin (newest).
    local d
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v initdb)")"; return 0
    fi
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
    done
    return 1
}

ensure_postgres() {
    # The tests and the demo run real PostgreSQL servers. Install the Debian package when we can.
    if find_pg_bin >/dev/null; then return 0; fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "rdsssl: PostgreSQL server binaries not found; installing the 'postgresql' package" >&2
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2 \
            || { echo "rdsssl: apt-get install postgresql failed" >&2; exit 1; }
        find_pg_bin >/dev/null && return 0
    fi
    echo "rdsssl: PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under" >&2
    echo "        /usr/lib/postgresql/*/bin. Install them, e.g. 'sudo apt-get install postgresql'," >&2
    echo "        then run this command again." >&2
    exit 1
}

ensure_openssl() {
    # The interop tests compare against the openssl command line of the manual procedure.
    if command -v openssl >/dev/null 2>&1; then return 0; fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl) >&2 && return 0
    fi
    echo "rdsssl: the openssl command is missing; install it (e.g. 'sudo apt-get install openssl')" >&2
    exit 1
}
