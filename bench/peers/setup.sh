#!/usr/bin/env bash
# Make bench/.venv-peers, the virtualenv the peer benchmarks (MLflow, DVC) run in, and install
# bench/peers/requirements.txt into it. Idempotent: a stamp file holding the requirements' hash
# makes a second run instant; a changed requirements file reinstalls.
#
#   bash bench/peers/setup.sh            # PYTHON=python3.11 bash bench/peers/setup.sh to choose
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$(dirname "$here")/.venv-peers"
reqs="$here/requirements.txt"
stamp="$venv/.peers-installed"
python="${PYTHON:-python3}"

fail() {
    echo "bench/peers/setup.sh: error: $*" >&2
    exit 1
}

[[ -f "$reqs" ]] || fail "missing $reqs"
want="$(sha256sum "$reqs" | cut -d' ' -f1)"

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
    command -v "$python" >/dev/null 2>&1 || fail "$python not found (set PYTHON=...)"
    "$python" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 10))' ||
        fail "$python is older than 3.10; MLflow 3 and DVC 3 need 3.10+"
    "$python" -m venv "$venv" || fail "could not create the virtualenv $venv"
fi

rm -f "$stamp"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
echo "bench/peers/setup.sh: installing $(paste -sd' ' "$reqs") into $venv ..." >&2
if ! "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$reqs" >"$log" 2>&1; then
    grep -v 'is ignored: it is neither a file nor a directory' "$log" | tail -n 20 >&2
    fail "pip install -r $reqs failed (output above)"
fi
"$venv/bin/python" -c 'import mlflow, dvc' >"$log" 2>&1 || {
    tail -n 5 "$log" >&2
    fail "mlflow or dvc does not import in $venv"
}
echo "$want" >"$stamp"
echo "bench/peers/setup.sh: ready: $venv" >&2
