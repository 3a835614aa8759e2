#!/bin/bash
# The seed-1 models of plateau_80_fluid_skip_wh_ema folds 0 and 1, retrained for the seed
# ensembles of run.sh: their campaign training (docs/results/campaign/plateau_80_fluid_skip_wh_ema/
# foldF_seed1, run.json) left its checkpoints on an earlier machine. Trained exactly as the
# campaign runner did (run.json's train_command) at the recipe's pinned commit 69125b4, then
# scored by eval as the runner does; the raw outputs are copied to seed1_retrained/foldF.
# Usage: retrain_seed1.sh FOLD (resumable: the same workdir; 2-core CPU, nice 10). The
# workdirs stay on this machine (/work/campaign/rerun), as the campaign's do.
set -e
f=${1:?usage: retrain_seed1.sh FOLD}
HERE=$(cd "$(dirname "$0")" && pwd)
. /work/venv/bin/activate
wt=/work/campaign/worktrees/69125b4561e4
[ -d $wt ] || git -C "$HERE" worktree add -q --detach $wt 69125b4
wd=/work/campaign/rerun/plateau_80_fluid_skip_wh_ema/fold${f}_seed1
cd $wt
nice -n 10 python main.py --config=configs/duke_cpu.py --workdir=$wd --config.seed=1 \
  --config.data.split=subject --config.data.fold=$f \
  --config.data.duke_dir=/work/shared/data/duke_dme_chiu2015 --config.model.fluid_head=True \
  --config.train.num_epochs=80 --config.model.skip=True --config.loss.name=weighted_hybrid \
  --config.train.ema_decay=0.98
nice -n 10 python main.py --mode=eval --workdir=$wd --output=${wd}_eval
mkdir -p $HERE/seed1_retrained/fold$f
cp $wd/config.json $wd/log.csv $wd/provenance.json $wd/split.json $HERE/seed1_retrained/fold$f/
cp ${wd}_eval/metrics.json ${wd}_eval/metrics.md ${wd}_eval/eval_provenance.json \
  $HERE/seed1_retrained/fold$f/
