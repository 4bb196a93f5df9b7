# Sourced by scripts/demo, scripts/test and scripts/bench: make .venv and install the project into it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "error: chancy_lite needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
    exit 2
fi
if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv with $("$PY" --version)"
    "$PY" -m venv .venv
fi
STAMP=.venv/.chancy-lite-installed
WANT="$(cat pyproject.toml | sha256sum | cut -c1-16)${EXTRAS:-dev}"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "== installing chancy-lite[${EXTRAS:-dev}] into .venv"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${EXTRAS:-dev}]"
    echo "$WANT" > "$STAMP"
fi
# Real Chancy (for the export tests: its migrate() makes the Postgres schema and its workers run exported jobs),
# in a venv of its own. Skipped with CHANCY_LITE_NO_CHANCY=1; the tests then skip with the reason.
# Only for scripts/test: the demo and the benchmark need neither.
FOR_TESTS=0
[ "$(basename "$0")" = "test" ] && FOR_TESTS=1
CHANCY_REQ=tests/postgres/requirements-chancy.txt
if [ "$FOR_TESTS" = "1" ] && [ -f "$CHANCY_REQ" ] && [ "${CHANCY_LITE_NO_CHANCY:-0}" != "1" ]; then
    CWANT="$(sha256sum "$CHANCY_REQ" | cut -c1-16)"
    if [ ! -f .venv-chancy/.installed ] || [ "$(cat .venv-chancy/.installed)" != "$CWANT" ]; then
        echo "== installing real Chancy into .venv-chancy"
        "$PY" -m venv .venv-chancy
        if .venv-chancy/bin/python -m pip install --quiet --disable-pip-version-check -r "$CHANCY_REQ"; then
            echo "$CWANT" > .venv-chancy/.installed
        else
            echo "warning: could not install Chancy into .venv-chancy: the export tests will be skipped" >&2
        fi
    fi
fi
# PostgreSQL server binaries (Debian's package) for the export tests; they skip, saying why, without them.
if [ "$FOR_TESTS" = "1" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "== installing PostgreSQL (apt-get)"
    (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null 2>&1; }) \
        || echo "warning: could not install PostgreSQL: the export tests will be skipped" >&2
fi
