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
