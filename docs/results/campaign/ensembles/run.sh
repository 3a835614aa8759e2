#!/bin/bash
# Seed-ensemble gain (issue 25): seeds 0+1 of one fold, with flip, scored on that fold's validation subjects.
cd /work/main
. /work/venv/bin/activate
R=/work/campaign/runs
for recipe in fluid_multitask base; do for f in 0 1; do
  out=/work/ens/${recipe}_fold${f}
  [ -f $out/metrics.json ] && continue
  rm -rf $out
  nice -n 10 python scripts/eval_ensemble.py --output=$out $R/$recipe/fold${f}_seed0 $R/$recipe/fold${f}_seed1 > /work/ens/${recipe}_fold${f}.log 2>&1
done; done
