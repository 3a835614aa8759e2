#!/bin/bash
# The flip's share of the ensemble gain, and the seed-ensemble gain of the shipped recipe (issue 25):
# seeds 0+1 of one fold without flip (2 views), scored on that fold's validation subjects. An
# ensemble whose results are committed here is skipped; a new one is copied here (without its figure).
cd /work/main
. /work/venv/bin/activate
R=/work/campaign/runs
HERE=docs/results/campaign/ensembles
mkdir -p /work/ens
for recipe in plateau_80_fluid_skip_wh_ema plateau_80_fluid fluid_multitask base; do for f in 0 1; do
  name=${recipe}_fold${f}_noflip
  out=/work/ens/$name
  [ -f $HERE/$name/metrics.json ] && continue
  rm -rf $out
  nice -n 10 python scripts/eval_ensemble.py --no_flip --output=$out $R/$recipe/fold${f}_seed0 $R/$recipe/fold${f}_seed1 > /work/ens/$name.log 2>&1 || exit 1
  mkdir -p $HERE/$name
  cp $out/ensemble.json $out/eval_provenance.json $out/manifest.json $out/metrics.json $out/metrics.md $HERE/$name/
  cp /work/ens/$name.log $HERE/$name/eval.log
done; done
