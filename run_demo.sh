#!/usr/bin/env bash
# One command for a new machine: set up ./.venv, then run the whole pipeline on the embedded default
# (local Spark, Delta tables under ./lakehouse, MovieLens-100k). Extra args are config overrides.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup_env.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 PYSPARK_PYTHON="$PWD/.venv/bin/python"
genrec run pipeline --conf conf/local.yaml "$@"
