#!/bin/bash
# The flip's share of the ensemble gain (issue 25): the same seed pairs without flip (2 views).
cd /work/main
. /work/venv/bin/activate
R=/work/campaign/runs
for recipe in fluid_multitask base; do for f in 0 1; do
  out=/work/ens/${recipe}_fold${f}_noflip
  [ -f $out/metrics.json ] && continue
  rm -rf $out
  nice -n 10 python scripts/eval_ensemble.py --no_flip --output=$out $R/$recipe/fold${f}_seed0 $R/$recipe/fold${f}_seed1 > /work/ens/${recipe}_fold${f}_noflip.log 2>&1
done; done
