#!/usr/bin/env bash
# Ablations of the frozen Beauty pipeline (conf/beauty.yaml), each through the production stages and
# the same `evaluate` code. Run after `genrec run pipeline --conf conf/beauty.yaml run_date=$RUN_DATE`.
#
#   bash benchmarks/beauty_ablations.sh notrie|dedup|dedup-notrie|t2s|s2t [RUN_DATE]
#
# notrie: the frozen model, decoded without the trie (lists hold only decoded catalog SIDs, no fill)
#         -> model `genrec-notrie` in ./lakehouse/beauty
# dedup-notrie: the dedup model decoded without the trie (after `dedup`) -> model `genrec-dedup-notrie`
# dedup:  TIGER SIDs (3 RQ-VAE levels + a dedup digit) instead of hybrid -> ./lakehouse/beauty-dedup
# t2s:    + title-words -> SID alignment sequences (30% of the rec windows) -> ./lakehouse/beauty-t2s
# s2t:    + SID -> title-words sequences (30%)                            -> ./lakehouse/beauty-s2t
# An ablation that changes SIDs or the model gets its own lakehouse + artifacts root: catalog,
# interactions and embeddings are copied from the frozen run (same Delta tables, relative paths),
# so the frozen tables stay untouched. Metrics land in <root>/metrics under the ablation's model name.
set -euo pipefail
cd "$(dirname "$0")/.."
ABLATION=${1:?usage: beauty_ablations.sh notrie|dedup|t2s|s2t [RUN_DATE]}
RUN_DATE=${2:-2026-11-24}
GENREC=${GENREC:-.venv/bin/genrec}
BASE=./lakehouse/beauty
TEST_ONLY=(run_date="$RUN_DATE" "recommend.splits=[test]" "evaluate.splits=[test]")

fork() {  # fork NAME TABLE... : a lakehouse + artifacts root seeded with the frozen run's tables
  local root=./lakehouse/beauty-$1; shift
  mkdir -p "$root"
  for t in "$@"; do [ -d "$root/$t" ] || cp -r "$BASE/$t" "$root/$t"; done
}

model_chain() {  # model_chain NAME OVERRIDES... : train, export, recommend (test), evaluate
  local name=$1; shift
  local roots=(lakehouse.root=./lakehouse/beauty-$name artifacts.root=./artifacts/beauty-$name)
  for stage in train export; do
    "$GENREC" run $stage --conf conf/beauty.yaml "${roots[@]}" run_date="$RUN_DATE" "$@"
  done
  for stage in recommend evaluate; do
    "$GENREC" run $stage --conf conf/beauty.yaml "${roots[@]}" "${TEST_ONLY[@]}" recommend.model_name="genrec-$name" "$@"
  done
}

case "$ABLATION" in
  notrie)
    "$GENREC" run recommend --conf conf/beauty.yaml "${TEST_ONLY[@]}" recommend.model_name=genrec-notrie \
      recommend.constrained=false recommend.serving.fill_with_popular=false
    # evaluate replaces the date's metrics: score every model and split of the frozen run again
    "$GENREC" run evaluate --conf conf/beauty.yaml run_date="$RUN_DATE" ;;
  dedup)
    fork dedup catalog interactions item_embeddings
    "$GENREC" run sids --conf conf/beauty.yaml lakehouse.root=./lakehouse/beauty-dedup \
      artifacts.root=./artifacts/beauty-dedup run_date="$RUN_DATE" sids.scheme=dedup sids.prefix_levels=null
    model_chain dedup sids.scheme=dedup sids.prefix_levels=null ;;
  dedup-notrie)
    DEDUP=(lakehouse.root=./lakehouse/beauty-dedup artifacts.root=./artifacts/beauty-dedup sids.scheme=dedup
           sids.prefix_levels=null)
    "$GENREC" run recommend --conf conf/beauty.yaml "${DEDUP[@]}" "${TEST_ONLY[@]}" \
      recommend.model_name=genrec-dedup-notrie recommend.constrained=false recommend.serving.fill_with_popular=false
    "$GENREC" run evaluate --conf conf/beauty.yaml "${DEDUP[@]}" "${TEST_ONLY[@]}" ;;
  t2s|s2t)
    fork "$ABLATION" catalog interactions item_embeddings item_sids
    mkdir -p "./artifacts/beauty-$ABLATION"
    [ -d "./artifacts/beauty-$ABLATION/codebooks" ] || cp -r ./artifacts/beauty/codebooks "./artifacts/beauty-$ABLATION/"
    # 30% more sequences per epoch: the wall-clock cap is raised so all 16 epochs run on a busy machine
    model_chain "$ABLATION" "train.data.${ABLATION}_ratio=0.3" train.trainer.max_minutes=45 ;;
  *) echo "unknown ablation $ABLATION" >&2; exit 2 ;;
esac
