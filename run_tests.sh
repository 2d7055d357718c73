#!/usr/bin/env bash
# One command for the tests: set up ./.venv, then run the suite (slow and cluster tests excluded;
# pass e.g. -m slow to run those). Tests that need ../shared/data skip when it is absent.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup_env.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 PYSPARK_PYTHON="$PWD/.venv/bin/python"
if [ $# -eq 0 ]; then set -- -m "not slow and not cluster"; fi
python -m pytest "$@"
