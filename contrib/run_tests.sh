#!/usr/bin/env bash
# The whole check, as CI runs it: ruff, mypy --strict (config in pyproject.toml), then the
# tests (tests/unit, tests/integration against a real NFS-Ganesha, tests/fuse on a real
# mount).  Run as root after contrib/setup.sh.  Every step runs; the exit status is
# pytest's if it failed, else mypy's, else ruff's.  Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python3=${PYTHON:-python3}

echo "== ruff check"
"$python3" -m ruff check .
ruff_status=$?

# mypy refuses a configured directory that holds no .py file yet, so name only those
# of the configured packages that have some (the config in pyproject.toml still applies).
targets=()
for dir in fusenfs session recovery contrib tests; do
    if [ -n "$(find "$dir" -name '*.py' -print -quit 2>/dev/null)" ]; then
        targets+=("$dir")
    fi
done
echo "== mypy ${targets[*]}"
"$python3" -m mypy "${targets[@]}"
mypy_status=$?

if [ "$ruff_status" -ne 0 ] || [ "$mypy_status" -ne 0 ]; then
    echo "run_tests.sh: ruff status $ruff_status, mypy status $mypy_status; running the tests anyway" >&2
fi

echo "== pytest"
"$python3" -m pytest -q -ra "$@"
pytest_status=$?

if [ "$pytest_status" -ne 0 ]; then
    exit "$pytest_status"
elif [ "$mypy_status" -ne 0 ]; then
    exit "$mypy_status"
fi
exit "$ruff_status"
