#!/bin/bash
# Is CPU training deterministic on this machine? The first epoch of
# plateau_80_fluid_skip_wh_ema fold 0 seed 1 (its run.json train_command with
# --config.train.num_epochs=1), trained twice at the recipe's pinned commit 69125b4 (run_a,
# run_b: log.csv, provenance.json), to set beside the retrained run (../seed1_retrained/fold0)
# and the first training (docs/results/campaign/plateau_80_fluid_skip_wh_ema/fold0_seed1).
set -e
HERE=$(cd "$(dirname "$0")" && pwd)
. /work/venv/bin/activate
cd /work/campaign/worktrees/69125b4561e4
for r in a b; do
  rm -rf /tmp/det_$r
  nice -n 15 python main.py --config=configs/duke_cpu.py --workdir=/tmp/det_$r --config.seed=1 \
    --config.data.split=subject --config.data.fold=0 \
    --config.data.duke_dir=/work/shared/data/duke_dme_chiu2015 --config.model.fluid_head=True \
    --config.train.num_epochs=1 --config.model.skip=True --config.loss.name=weighted_hybrid \
    --config.train.ema_decay=0.98 > /dev/null
  mkdir -p $HERE/run_$r
  cp /tmp/det_$r/log.csv /tmp/det_$r/provenance.json $HERE/run_$r/
done
