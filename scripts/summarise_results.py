"""Markdown tables and figures from a run_experiments.py output folder.

  python scripts/summarise_results.py --results=runs/experiments --figures=docs/figures > tables.md
"""

import argparse
import csv
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs.ablations import ABLATIONS  # noqa: E402
from octseg_jax import plots  # noqa: E402
from octseg_jax.data.scans import BOUNDARY_NAMES, LAYER_NAMES  # noqa: E402
from octseg_jax.report import PAPER_IOU, fmt, table  # noqa: E402

PAPER = {"accuracy": 0.9577, "dice": 0.9446, "iou": 0.8951}


def folds_of(results, name):
  """{fold key: run} of the runs of `name` that were scored (not skipped or failed), sorted."""
  return {k: v for k, v in sorted(results.get(name, {}).items()) if "native" in v}


def mean_sd(values):
  v = np.array(values, float)
  return f"{np.nanmean(v):.4f} ± {np.nanstd(v):.4f}" if len(v) > 1 else fmt(float(v[0]))


def paper_table(results):
  rows = []
  for name, label in (("paper_protocol", "ours, float32"), ("paper_protocol_bf16", "ours, bfloat16")):
    for run in folds_of(results, name).values():
      n, m = run["native"], run["model_resolution_val"]
      rows.append([label + " (native resolution)", fmt(n["accuracy"]), fmt(n["global_dice_soft"]),
                   fmt(n["global_iou_soft"]), f"{run['best_epoch']}/{run['epochs']}",
                   f"{run['train_s']:.0f}"])
      rows.append([label + " (256x256 model input)", fmt(m["accuracy"]), fmt(m["global_dice_soft"]),
                   fmt(m["global_dice_soft"] / (2 - m["global_dice_soft"])), "", ""])
  rows.append(["paper (Table 1)", PAPER["accuracy"], PAPER["dice"], PAPER["iou"], "100", ""])
  return table(["run", "pixel accuracy", "global Dice", "global IoU", "best/last epoch",
                "train s"], rows)


def paper_class_table(results):
  run = next(iter(folds_of(results, "paper_protocol").values()))["native"]
  rows = [[k, LAYER_NAMES[k], fmt(run["class_iou"][k]), fmt(run["class_accuracy"][k]), PAPER_IOU[k]]
          for k in range(8)]
  return table(["class", "region", "IoU (ours)", "accuracy (ours)", "IoU (paper)"], rows)


def cv_table(results, baseline, names):
  """One row per configuration; its "vs baseline" column compares it with the baseline on
  the folds both ran (ablations may have fewer folds than the baseline)."""
  base = folds_of(results, baseline)
  rows = []
  for name in [baseline] + names:
    runs = folds_of(results, name)
    if not runs:
      continue
    rs = list(runs.values())
    ld = [r["native"]["mean_layer_dice"] for r in rs]
    topo = [r["native"]["topology"]["mean_layer_dice"] for r in rs]
    b = [np.nanmean(r["native"]["boundary_mae_um"]) for r in rs]
    bt = [np.nanmean(r["native"]["topology"]["boundary_mae_um"]) for r in rs]
    paired = [runs[k]["native"]["mean_layer_dice"] - base[k]["native"]["mean_layer_dice"]
              for k in runs if k in base]
    delta = f"{np.mean(paired):+.4f} ({len(paired)})" if name != baseline and paired else ""
    rows.append([name, ", ".join(runs), mean_sd(ld), mean_sd(topo), mean_sd(b), mean_sd(bt),
                 delta, f"{np.mean([r['train_s'] for r in rs]):.0f}"])
  return table(["configuration", "folds", "mean layer Dice", "with topology fix",
                "boundary MAE (um)", "with topology fix", "Dice vs baseline (paired folds)",
                "train s/fold"], rows)


def per_layer_table(results, name):
  runs = list(folds_of(results, name).values())
  dice = np.array([r["native"]["layer_dice"] for r in runs], float)
  mae = np.array([r["native"]["boundary_mae_um"] for r in runs], float)
  rows = [[LAYER_NAMES[k + 1], mean_sd(dice[:, k])] for k in range(7)]
  rows.append(["mean", mean_sd(np.nanmean(dice, axis=1))])
  brows = [[BOUNDARY_NAMES[b], mean_sd(mae[:, b])] for b in range(8)]
  return table(["layer", "Dice (mean ± sd over folds)"], rows), \
      table(["boundary", "MAE um (mean ± sd over folds)"], brows)


def topology_counts(results, name):
  rows = []
  for key, r in folds_of(results, name).items():
    t = r["native"]["topology"]
    rows.append([key, f"{t['columns_fixed']} / {t['columns_total']}",
                 fmt(r["native"]["mean_layer_dice"]), fmt(t["mean_layer_dice"]),
                 fmt(np.nanmean(r["native"]["boundary_mae_um"]), 2),
                 fmt(np.nanmean(t["boundary_mae_um"]), 2)])
  return table(["fold", "columns fixed", "layer Dice before", "after", "boundary MAE um before",
                "after"], rows)


def read_log(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--results", required=True)
  p.add_argument("--figures", default="")
  a = p.parse_args()
  with open(os.path.join(a.results, "results.json")) as f:
    results = json.load(f)
  if "paper_protocol" in results:
    print("## Paper protocol\n\n" + paper_table(results) + "\n\n" + paper_class_table(results))
  for baseline, prefix in (("duke_gpu", ""), ("duke_cpu", "duke_cpu_")):
    if baseline not in results:
      continue
    names = [prefix + a for a in ABLATIONS] + [prefix + "seed1"]
    print(f"\n## Literature protocol and ablations ({baseline})\n\n" +
          cv_table(results, baseline, names))
    dice, mae = per_layer_table(results, baseline)
    print(f"\n### {baseline} per layer\n\n" + dice + "\n\n" + mae)
    print(f"\n### Topology fix, {baseline} folds\n\n" + topology_counts(results, baseline))
  if a.figures:
    os.makedirs(a.figures, exist_ok=True)
    paper_dir = os.path.join(a.results, "runs", "paper_protocol", "random_split")
    if os.path.exists(os.path.join(paper_dir, "metrics.json")):
      plots.training_curves(os.path.join(a.figures, "paper_training_curves.png"),
                            read_log(os.path.join(paper_dir, "log.csv")))
      with open(os.path.join(paper_dir, "metrics.json")) as f:
        plots.class_bars(os.path.join(a.figures, "paper_class_iou.png"), json.load(f)["raw"])
    fold0 = os.path.join(a.results, "runs", "duke_gpu", "fold0", "log.csv")
    if os.path.exists(fold0):
      plots.training_curves(os.path.join(a.figures, "duke_gpu_fold0_training_curves.png"),
                            read_log(fold0))


if __name__ == "__main__":
  main()
