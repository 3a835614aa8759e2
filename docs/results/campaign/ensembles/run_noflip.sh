#!/bin/bash
# The flip's share of the ensemble gain, and the seed-ensemble gain of the shipped recipe (issue 25):
# seeds 0+1 of one fold without flip (2 views), scored on that fold's validation subjects. An
# ensemble whose results are committed here is skipped, and so is one whose seed-1 run is not
# finished (no committed run.json) or has no workdir on this machine; a new one is copied here
# (without its figure). The shipped
# recipe's seed-0 fold models are pretrained/members/foldF_seed0 (copies of its campaign runs):
# where the campaign's own workdir is gone (a new machine), that copy stands in at its path.
cd /work/main
. /work/venv/bin/activate
R=/work/campaign/runs
HERE=docs/results/campaign/ensembles
SHIPPED=plateau_80_fluid_skip_wh_ema
mkdir -p /work/ens
for recipe in $SHIPPED plateau_80_fluid fluid_multitask base; do for f in 0 1 2 3; do
  name=${recipe}_fold${f}_noflip
  out=/work/ens/$name
  [ -f $HERE/$name/metrics.json ] && continue
  [ -f docs/results/campaign/$recipe/fold${f}_seed1/run.json ] && [ -d $R/$recipe/fold${f}_seed1/best ] || continue
  if [ $recipe = $SHIPPED ] && [ ! -d $R/$recipe/fold${f}_seed0/best ]; then
    rm -rf $R/$recipe/fold${f}_seed0 && cp -r pretrained/members/fold${f}_seed0 $R/$recipe/fold${f}_seed0
  fi
  rm -rf $out
  nice -n 10 python scripts/eval_ensemble.py --no_flip --output=$out $R/$recipe/fold${f}_seed0 $R/$recipe/fold${f}_seed1 > /work/ens/$name.log 2>&1 || exit 1
  mkdir -p $HERE/$name
  cp $out/ensemble.json $out/eval_provenance.json $out/manifest.json $out/metrics.json $out/metrics.md $HERE/$name/
  cp /work/ens/$name.log $HERE/$name/eval.log
done; done
