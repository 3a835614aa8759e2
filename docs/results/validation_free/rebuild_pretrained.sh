#!/bin/bash
# pretrained/ rebuilt from the all-8 members (plateau_80_fluid_skip_wh_ema_all8, seeds 0-3), as
# the reading of docs/results.md section 11 decided, with every setting read from the evidence
# of the fold models that stand for them on held-out eyes (plateau_80_fluid_skip_wh_ema_noval,
# each scored on the pair it never trained on; doc_tables.held_out_models):
#   predict.smooth_sd_columns       smoothing_cv.json (run.sh)
#   predict.uncertain_um,           the ensemble's flag by docs/results.md section 11's rule
#   predict.uncertain_position_sd_um (doc_tables.ensemble_flag_choice on seed_ensembles_cv.json,
#                                   seed_ensembles.sh): the members' spread at its chosen
#                                   threshold, the single member then at flag_threshold_cv.json's
#                                   (run.sh); or the position sd (uncertain_um 0) at the seed
#                                   ensembles' choice, for the single member too
#   explain.method, explain.layers  the first candidate by issue 30's rule on
#                                   ../cpu_2core/explain_heldout_noval_6scans (doc_tables), whose
#                                   evidence becomes cam_evidence.json (scripts/cam_evidence.py)
# The members are packaged (scripts/eval_ensemble.py --package, no flip) into pretrained.new,
# their training scans fingerprinted (scripts/add_fingerprints.py: they trained before training
# recorded them), with pretrained/README.md, and swapped in (its hand-written prose, which
# describes the flag, is then to be rewritten for the flag the rule chose), and explain is timed
# against predict on it (benchmarks/explain_vs_predict.sh, PAIRS pairs, default 3; the documents
# quote that cost, so it runs here, and the script refuses while the campaign runner, a training
# or an eval runs, before it starts and again before the timing). If the timing fails, the
# documents cannot then be generated from it (scripts/doc_tables.py --write, which checks every
# setting against its evidence) or the script is interrupted, the old pretrained/ and documents
# are put back. Afterwards time predict's throughput on it
# (benchmarks/predict_throughput.py), rerun ../cpu_2core/explain_shipped/run.sh and rewrite the
# golden predictions (OCTSEG_WRITE_GOLDEN=1 python -m pytest tests/test_golden.py).
# Usage: rebuild_pretrained.sh [RUNS_FOLDER] (the all-8 runs' workdirs, default the models the
# campaign keeps with their results)
set -euo pipefail
cd "$(dirname "$0")/../../.."
RESULTS=docs/results/campaign/plateau_80_fluid_skip_wh_ema_all8
RUNS_DIR=${1:-$PWD/$RESULTS}
. /work/venv/bin/activate
idle() {                                   # no campaign runner, training or eval in flight
  if pgrep -f -- "run_experiments.py --campaign|--mode=train|--mode=eval" > /dev/null; then
    echo "the campaign runner, a training or an eval is in flight; stop it first (the script" \
         "times explain)" >&2
    return 1
  fi
}
idle || exit 2
if ! git diff --quiet -- README.md docs pretrained; then
  echo "README.md, docs or pretrained/ has uncommitted changes; commit them first" >&2
  exit 2
fi
members=()
for seed in 0 1 2 3; do
  [ -f $RESULTS/all_seed$seed/run.json ] || { echo "$RESULTS/all_seed$seed: not done" >&2; exit 2; }
  members+=("$RUNS_DIR/all_seed$seed")
done
read -r SD POS SPREAD METHOD LAYERS < <(python - <<'PY'
import sys
sys.path.insert(0, ".")
from scripts import doc_tables as d
src = d.Sources(".")
cv = src.json(d.CAMPAIGN_PLAN)["recipes"]["plateau_80_fluid_skip_wh_ema_all8"]["cross_validation"]
models = d.cross_validation_models(src, cv)               # the stand-ins, found as the docs do
smooth = d.evidence_set(src, d.SMOOTHING_EVIDENCE, models, d.smoothing_set_models)[1]
flag = d.evidence_set(src, d.FLAG_EVIDENCE, models, d.flag_set_models)[1]["flags"]["position_sd"]
spread, position = d.ensemble_flag_settings(src, flag["cv"]["chosen_um"])
runs = d.heldout_runs(src, d.CAM_EVIDENCE[1])
if sorted(r["workdir"] for r in runs.values()) != sorted(m["workdir"] for m in models):
  sys.exit(f"{d.CAM_EVIDENCE[1]}: not one run per stand-in")
(_, method, layers) = d.cam_ranking(d.heldout_evidence(runs))[0]
print(smooth["cv"]["chosen_sd"], position, spread, method, layers)
PY
)
echo "smoothing sd $SD, position sd flag $POS um, spread flag $SPREAD um" \
     "(0: the ensemble flags by the position sd), $METHOD at $LAYERS"
rm -rf pretrained.new pretrained.new.partial pretrained.old
python scripts/eval_ensemble.py --package --no_flip --output=pretrained.new "${members[@]}" \
    --config.predict.smooth_sd_columns="$SD" --config.predict.uncertain_position_sd_um="$POS" \
    --config.predict.uncertain_um="$SPREAD" --config.explain.method="$METHOD" \
    --config.explain.layers="$LAYERS"
python scripts/cam_evidence.py --heldout=docs/results/cpu_2core/explain_heldout_noval_6scans \
    --output=pretrained.new/cam_evidence.json
python scripts/add_fingerprints.py pretrained.new/members/*
cp pretrained/README.md pretrained.new/
COST=docs/results/cpu_2core/explain_cost/pretrained_all8_${METHOD}_${LAYERS//,/_}.txt
restore() {
  echo "explain could not be timed on the new pretrained/, the documents cannot be generated" \
       "from it, or the script was interrupted: it is put back" >&2
  rm -rf pretrained "$COST" "$COST.partial" && mv pretrained.old pretrained
  git checkout -- README.md docs pretrained
  exit 2
}
mv pretrained pretrained.old && mv pretrained.new pretrained
trap restore INT TERM
idle || restore
RUNS=${PAIRS:-3} benchmarks/explain_vs_predict.sh pretrained \
    ../shared/data/duke_dme_chiu2015/subject_05.npz "$COST" || restore
python scripts/doc_tables.py --write || restore           # every generated number, checked
trap - INT TERM
rm -rf pretrained.old
echo "pretrained/ rebuilt and the documents regenerated; review, then commit"
