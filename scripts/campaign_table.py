"""The accuracy campaign's lever table, generated from its committed raw outputs.

  python scripts/campaign_table.py        # writes docs/results/campaign/levers.json and .md
  python scripts/campaign_table.py --plan=configs/campaign_h200.json   # the H200 screen's, likewise
  python scripts/campaign_table.py --plan=MY_PLAN.json --dry_run       # print only, write nothing

Every number comes from docs/results/campaign/RECIPE/foldF_seedS/{metrics.json, run.json}
(written by scripts/run_experiments.py --campaign): mean layer Dice and boundary MAE at native
resolution with the anatomical-order fix (literature protocol, validation subjects of the
fold), paired gains of each recipe over the base on the same (fold, seed), the seed noise of
the base (mean over folds of |seed 0 - seed 1|), network GFLOP per B-scan of the recipe's
model at the Duke input size, and training time per run on the machine that ran it.
A recipe is adopted when it has every screen pair of the base (both seeds of the folds where
the base has both) and its mean paired gain exceeds the seed noise. The plan's `comparisons`
pair a candidate with another recipe instead of the base (the recipe it would replace in
pretrained/): paired gains on the (fold, seed) runs both have, decided once both have run every
fold that the plan gives the other recipe with seed 0, by the same seed-noise rule.
"""

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import campaign  # noqa: E402
from octseg_jax import layout  # noqa: E402
from octseg_jax.outputs import training_log  # noqa: E402
from octseg_jax.outputs.atomic import write_text  # noqa: E402

BASE = "base"
LEVER = "lever"            # the default recipe kind: a candidate, adopted by the seed-noise rule
CURVE = "learning_curve"   # a reading of the data: never adopted, never a replacement
VALIDATION_FREE = "validation_free"   # trained without a validation pair: never adopted nor a
                                      # replacement; its comparison is read by section 11's rule
READINGS = (CURVE, VALIDATION_FREE)
READING_VERDICT = {CURVE: "a learning curve, no verdict",
                   VALIDATION_FREE: "read by the rule of docs/results.md section 11"}
FINAL = "final"            # trained on every subject (fold campaign.ALL) for pretrained/, with
                           # no held-out score, so no row of the table and no run read


def run_numbers(plan, run, repo=campaign.REPO):
  """The numbers of one committed run, or None."""
  if not campaign.committed(plan, run, repo):
    return None
  folder = campaign.result_dir(plan, run, repo)
  m = campaign.read_json(os.path.join(folder, campaign.METRICS))
  record = campaign.read_json(os.path.join(folder, campaign.RUN_RECORD))
  fix = m["topology"]
  out = {"mean_layer_dice": fix["literature"]["mean_layer_dice"],
         "layer_dice": fix["literature"]["layer_dice"],
         "boundary_mae_um": statistics.mean(fix["geometry"]["mae_um"]),
         "boundary_mae_um_each": fix["geometry"]["mae_um"],
         "boundary_signed_um_each": fix["geometry"]["signed_um"],
         "train_s": record["train_s_logged"], "epochs": record["epochs"],
         "commit": record["commit"]}
  out.update(selection(os.path.join(folder, layout.LOG_FILE), m["checkpoint_epoch"]))
  if "by_fluid_columns" in fix:      # eval from 9c8c308 on: the columns with and without fluid
    out["by_fluid_columns"] = fix["by_fluid_columns"]
  heads = m.get("heads", {})
  if "boundary_head" in heads:
    geometry = heads["boundary_head"]["geometry"]
    out["boundary_head_mae_um"] = statistics.mean(geometry["mae_um"])
    out["boundary_head_mae_um_each"] = geometry["mae_um"]
    out["boundary_head_signed_um_each"] = geometry["signed_um"]
  if "fluid" in heads:
    out["fluid_dice"] = heads["fluid"]["dice"]
  return out


def selection(log_path: str, epoch: int):
  """What choosing the checkpoint on the validation subjects bought: the logged validation mean
  layer Dice (model resolution) at the kept epoch minus at the last epoch, and the epochs."""
  rows = training_log.read_rows(log_path, missing_ok=False)
  dice = {int(r["epoch"]): float(r["val_mean_layer_dice"]) for r in rows}
  if len(dice) != len(rows) or epoch not in dice:
    raise SystemExit(f"{log_path}: epochs repeat, or kept epoch {epoch} is not logged")
  last = max(dice)
  return {"selected_epoch": epoch, "last_epoch": last,
          "selection_gain": dice[epoch] - dice[last]}


def gflop_per_bscan(recipe) -> float:
  """Network convolution GFLOP of one forward pass at the Duke input size (octseg_jax.models.flops)."""
  import importlib.util
  from octseg_jax.data import duke
  from octseg_jax.models import flops
  from octseg_jax.config.paths import apply_overrides
  path = os.path.join(campaign.REPO, recipe["config"])
  spec = importlib.util.spec_from_file_location("recipe_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = apply_overrides(module.get_config(), recipe.get("overrides", {}))
  return sum(flops.conv_flops(c, 1) for c in flops.model_convs(config.model, duke.MODEL_INPUT)) / 1e9


def seeded_folds(runs) -> list:
  """The folds of `runs` ({(fold, seed): numbers}) that have both seeds 0 and 1, in order."""
  return sorted({f for f, s in runs if (f, 0) in runs and (f, 1) in runs})


def seed_gaps(runs) -> list:
  """|seed 0 - seed 1| of the mean layer Dice on each of seeded_folds(runs)."""
  return [abs(runs[(f, 0)]["mean_layer_dice"] - runs[(f, 1)]["mean_layer_dice"])
          for f in seeded_folds(runs)]


def lever_table(plan, repo=campaign.REPO):
  """{'seed_noise', 'seed_gaps', 'recipes': {name: numbers}} from the committed runs."""
  runs = {}
  for run in (r for r in plan["queue"] if kind(plan, r["recipe"]) != FINAL):
    numbers = run_numbers(plan, run, repo)
    if numbers:
      runs.setdefault(run["recipe"], {})[(run["fold"], run["seed"])] = numbers
  base = runs.get(BASE, {})
  folds = seeded_folds(base)
  gaps = seed_gaps(base)
  noise = statistics.mean(gaps) if gaps else None
  table = {"seed_noise": noise, "seed_gaps": gaps, "recipes": {}}
  for name, recipe in plan["recipes"].items():
    if kind(plan, name) == FINAL:
      continue
    mine = runs.get(name, {})
    pairs = {f"fold{f}_seed{s}": mine[(f, s)]["mean_layer_dice"] - base[(f, s)]["mean_layer_dice"]
             for (f, s) in sorted(mine) if (f, s) in base}
    gain = statistics.mean(pairs.values()) if pairs else None
    table["recipes"][name] = {
        "overrides": recipe.get("overrides", {}),
        "override_args": [campaign.override_arg(k, v) for k, v in recipe.get("overrides", {}).items()],
        "kind": kind(plan, name),
        "fold_override_args": {f: [campaign.override_arg(k, v) for k, v in o.items()]
                               for f, o in recipe.get("fold_overrides", {}).items()},
        "runs": len(mine),
        "mean_layer_dice": statistics.mean(r["mean_layer_dice"] for r in mine.values()) if mine else None,
        "boundary_mae_um": statistics.mean(r["boundary_mae_um"] for r in mine.values()) if mine else None,
        "paired_gains": pairs, "mean_gain": gain, "seed_gaps": seed_gaps(mine),
        "adopted": bool(name != BASE and noise is not None and kind(plan, name) == LEVER
                        and all(f"fold{f}_seed{s}" in pairs for f in folds for s in (0, 1))
                        and gain > noise),
        "gflop_per_bscan": round(gflop_per_bscan(recipe), 2),
        "train_s_per_run": statistics.mean(r["train_s"] for r in mine.values()) if mine else None,
        "runs_detail": {f"fold{f}_seed{s}": r for (f, s), r in sorted(mine.items())}}
  planned = {}                                  # recipe -> its seed-0 folds in the plan
  for run in plan["queue"]:
    if run["seed"] == 0 and kind(plan, run["recipe"]) != FINAL:
      planned.setdefault(run["recipe"], set()).add(run["fold"])
  table["comparisons"] = [comparison(runs, spec, noise, sorted(planned.get(spec["against"], ())),
                                    kind(plan, spec["recipe"]))
                          for spec in plan.get("comparisons", [])]
  return table


def kind(plan, recipe: str) -> str:
  """A recipe's kind (LEVER unless the plan says otherwise)."""
  return plan["recipes"][recipe].get("kind", LEVER)


def comparison(runs, spec, noise, folds, recipe_kind: str = LEVER):
  """spec['recipe'] against spec['against'] on the (fold, seed) pairs both ran: the gains, their
  mean, whether both have run every fold of `folds` (the other recipe's seed-0 folds in the plan,
  run or still queued) with seed 0, and whether the mean gain then exceeds the seed noise (the
  candidate replaces the other recipe; never for a recipe of a READINGS kind)."""
  mine, other = runs.get(spec["recipe"], {}), runs.get(spec["against"], {})
  pairs = {f"fold{f}_seed{s}": mine[(f, s)]["mean_layer_dice"] - other[(f, s)]["mean_layer_dice"]
           for (f, s) in sorted(mine) if (f, s) in other}
  gain = statistics.mean(pairs.values()) if pairs else None
  complete = bool(folds) and all((f, 0) in mine and (f, 0) in other for f in folds)
  return {"recipe": spec["recipe"], "against": spec["against"], "why": spec.get("why", ""),
          "paired_gains": pairs, "mean_gain": gain, "folds_needed": folds, "complete": complete,
          "kind": recipe_kind, "replaces": bool(recipe_kind not in READINGS and complete
                                                and noise is not None and gain > noise)}


def fmt(v, digits=4):
  return "n/a" if v is None else f"{v:.{digits}f}"


def markdown(table) -> str:
  lines = ["| recipe | runs | mean layer Dice | paired gains vs base | mean gain | boundary MAE (um) "
           "| GFLOP / B-scan | train min / run | adopted |", "|---|---|---|---|---|---|---|---|---|"]
  for name, r in table["recipes"].items():
    gains = ", ".join(f"{k}: {v:+.4f}" for k, v in r["paired_gains"].items()) or "n/a"
    minutes = None if r["train_s_per_run"] is None else r["train_s_per_run"] / 60
    lines.append(f"| {name} | {r['runs']} | {fmt(r['mean_layer_dice'])} | {gains} | "
                 f"{fmt(r['mean_gain'])} | {fmt(r['boundary_mae_um'], 2)} | "
                 f"{r['gflop_per_bscan']:.2f} | {fmt(minutes, 1)} | "
                 f"{'yes' if r['adopted'] else 'no'} |")
  lines.append("")
  lines.append(f"Seed noise of the base (mean over folds of |seed 0 - seed 1|): "
               f"{fmt(table['seed_noise'])} (gaps {', '.join(fmt(g) for g in table['seed_gaps'])}).")
  for c in table.get("comparisons", []):
    gains = ", ".join(f"{k}: {v:+.4f}" for k, v in c["paired_gains"].items()) or "n/a"
    verdict = (READING_VERDICT[c["kind"]] if c["kind"] in READINGS and c["complete"]
               else "replaces it" if c["replaces"] else "does not replace it" if c["complete"]
               else "undecided (folds " + ", ".join(map(str, c["folds_needed"])) + " of both needed)"
               if c["folds_needed"] else f"undecided ({c['against']} has no seed-0 run in the plan)")
    mean = "n/a" if c["mean_gain"] is None else format(c["mean_gain"], "+.4f")
    lines.append(f"\n{c['recipe']} against {c['against']}: {gains}; mean {mean}; {verdict}.")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  p = argparse.ArgumentParser(
      description="The campaign's lever table from its committed runs: printed, and written to "
                  "levers.json and levers.md in the plan's results_dir (which "
                  "scripts/doc_tables.py --write then copies into the documents).")
  p.add_argument("--plan", default=campaign.PLAN, help="plan file (default configs/campaign.json)")
  p.add_argument("--dry_run", action="store_true",
                 help="print the table only, writing nothing (to preview a plan being edited)")
  args = p.parse_args(argv)
  plan = campaign.load_plan(args.plan)
  table = lever_table(plan)
  if not args.dry_run:
    out = os.path.join(campaign.REPO, plan["results_dir"])
    os.makedirs(out, exist_ok=True)
    write_text(os.path.join(out, "levers.json"), json.dumps(table, indent=1))
    write_text(os.path.join(out, "levers.md"), markdown(table))
  print(markdown(table))
  return 0


if __name__ == "__main__":
  sys.exit(main())
