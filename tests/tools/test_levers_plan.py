"""The levers plan of scripts/run_experiments.py: overrides, the lever table, the budget pause."""

import time
import types

import pytest

from octseg_jax.config.paths import flatten as flat
from conftest import load_script


def test_each_lever_changes_exactly_its_fields_of_both_bases():
  from configs import duke_cpu_fast, duke_gpu
  from configs.levers import LEVERS
  from octseg_jax.config.paths import apply_overrides
  for module in (duke_cpu_fast, duke_gpu):
    base = flat(module.get_config())
    for name, overrides in LEVERS.items():
      changed = flat(apply_overrides(module.get_config(), overrides))
      assert {k for k in base if base[k] != changed[k]} == set(overrides), (module, name)


def test_cpu_recipe_differs_from_duke_cpu_only_in_crop_and_schedule():
  from configs import duke_cpu, duke_cpu_fast
  a, b = flat(duke_cpu.get_config()), flat(duke_cpu_fast.get_config())
  assert {k for k in a if a[k] != b[k]} == {
      "data.augment.crop_width", "train.num_epochs", "train.schedule", "train.warmup_epochs",
      "train.early_stopping_patience", "train.checkpoint_every", "train.image_summary_every"}


def run(dice, seconds=100.0):
  return {"native": {"mean_layer_dice": dice}, "train_s": seconds}


def test_lever_table_pairs_gains_with_the_base_and_compares_with_seed_noise(tmp_path):
  m = load_script("run_experiments")
  runner = m.Runner(str(tmp_path), 0)
  runner.results = {
      "lever_base": {"fold0_seed0": run(0.80), "fold0_seed1": run(0.82),
                     "fold1_seed0": run(0.70), "fold1_seed1": run(0.74, 300.0)},
      "lever_kernel_7x3": {"fold0_seed0": run(0.83), "fold0_seed1": run(0.85),
                           "fold1_seed0": run(0.74), "fold1_seed1": run(0.77)},
      "lever_adamw": {"fold0_seed0": run(0.81), "fold0_seed1": {"paused": "budget"},
                      "fold1_seed0": run(0.72), "fold1_seed1": run(0.80)},
  }
  t = m.lever_table(runner)
  assert t["seed_noise"] == pytest.approx((0.02 + 0.04) / 2)
  k = t["levers"]["kernel_7x3"]
  assert k["paired_gains"] == pytest.approx([0.03, 0.03, 0.04, 0.03])
  assert k["mean_gain"] == pytest.approx(0.0325) and k["winner"]       # 0.0325 > 0.03
  a = t["levers"]["adamw"]                  # 3 of 4 pairs: never a winner, however large
  assert a["screen_runs"] == 3 and not a["winner"]
  assert t["levers"]["base"]["seconds_per_fold"] == pytest.approx(150.0)
  assert t["levers"]["position_channel"]["screen_runs"] == 0


def test_pause_hook_stops_only_after_a_checkpointed_epoch_near_the_deadline():
  m = load_script("run_experiments")
  ctx = types.SimpleNamespace(config=types.SimpleNamespace(
      train=types.SimpleNamespace(checkpoint_every=2, num_epochs=24)))
  hook = m.PauseAtBudget(time.time() + m.PauseAtBudget.RESERVE_S + 100)
  hook.end_epoch(ctx, 3, {"seconds": 1000.0})       # no checkpoint at epoch 3: go on
  hook.end_epoch(ctx, 4, {"seconds": 10.0})         # 2 x 10 s fit in the 100 s left
  hook.end_epoch(ctx, 24, {"seconds": 1000.0})      # last epoch: the run ends anyway
  with pytest.raises(m.BudgetPause, match="after epoch 4"):
    hook.end_epoch(ctx, 4, {"seconds": 60.0})
