#!/usr/bin/env bash
# The test command of the README and CI. Warms numba's cache once, then runs pytest;
# pytest's exit code 5 ("no tests collected") is not a failure of the code base.
set -uo pipefail
PY=${1:-python3}
"$PY" -m splat4d.render.warmup || exit $?
"$PY" -m pytest -q -ra "${@:2}"
rc=$?
if [ $rc -eq 5 ]; then echo "no tests collected"; exit 0; fi
exit $rc
