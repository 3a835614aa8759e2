"""The numbers in README.md, docs/results.md and pretrained/README.md, generated from the raw
outputs committed in docs/results/ and pretrained/, so that a published number cannot drift
from its file.

Each generated block sits between `<!-- generated:NAME -->` and `<!-- /generated:NAME -->`
and is the output of TABLES[NAME]. Numbers in prose outside the blocks are listed in PROSE
with the file and key they come from. The check also refuses a table row with a decimal number
outside every block.

  python scripts/doc_tables.py           # check: one line per difference, exit status 1
  python scripts/doc_tables.py --write   # rewrite the blocks from the raw outputs
"""

import argparse
import csv
import json
import os
import re
import sys
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from octseg_jax.anatomy import BOUNDARY_NAMES, LAYER_NAMES, PAPER, PAPER_IOU  # noqa: E402
from octseg_jax.models.flops import model_train_step_conv_flops  # noqa: E402
from octseg_jax.outputs.report import fmt, table  # noqa: E402
from scripts.summarise_results import mean_sd  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ("README.md", "docs/results.md", "pretrained/README.md")
GPU, CPU = "docs/results/gpu_h200", "docs/results/cpu_2core"
SD = "population sd over 4 folds"
BLOCK = re.compile(r"<!-- generated:(?P<name>[\w-]+) -->\n(?P<body>.*?)\n"
                   r"<!-- /generated:(?P=name) -->", re.S)


class Sources:
  """Reads raw outputs under a checkout root (cached)."""

  def __init__(self, root: str = ROOT):
    self.root, self._cache = root, {}

  def path(self, rel: str) -> str:
    return os.path.join(self.root, rel)

  def json(self, rel: str):
    if rel not in self._cache:
      with open(self.path(rel)) as f:
        self._cache[rel] = json.load(f)
    return self._cache[rel]

  def log(self, rel: str) -> List[Dict[str, str]]:
    if rel not in self._cache:
      with open(self.path(rel)) as f:
        self._cache[rel] = list(csv.DictReader(f))
    return self._cache[rel]

  def run(self, folder: str, name: str, key: str) -> Dict:
    return self.json(f"{folder}/results.json")[name][key]

  def cv(self, name: str = "duke_gpu") -> List[Dict]:
    """The scored folds of a GPU configuration, in fold order."""
    runs = self.json(f"{GPU}/results.json").get(name, {})
    return [v for k, v in sorted(runs.items()) if "native" in v]


# ---------------------------------------------------------------- helpers


def mean_mae(run: Dict, topology: bool = False) -> float:
  n = run["native"]["topology"] if topology else run["native"]
  return float(np.nanmean(np.asarray(n["boundary_mae_um"], float)))


def epoch_seconds(log: List[Dict[str, str]]) -> float:
  return sum(float(r["seconds"]) for r in log)


def layer_list(values, digits: int = 3) -> str:
  return ", ".join(f"{LAYER_NAMES[k + 1]} {v:.{digits}f}" for k, v in enumerate(values))


def tflops(flops_per_step: float, step_s: float) -> str:
  return f"{flops_per_step / step_s / 1e12:.0f} TFLOP/s"


# ---------------------------------------------------------------- paper protocol


def paper_rows(src: Sources, with_bf16: bool) -> List[List[str]]:
  rows = []
  runs = [("paper_protocol", "float32")] + ([("paper_protocol_bf16", "bfloat16")] * with_bf16)
  for name, dtype in runs:
    run = src.run(GPU, name, "random_split")
    n, m = run["native"], run["model_resolution_val"]
    label = f"ours, {dtype}, " if with_bf16 else "ours, "
    extra = [f"{run['best_epoch']}/{run['epochs']}", f"{run['train_s']:.0f} s"] * with_bf16
    rows.append([label + ("native resolution" if with_bf16 else
                          "scored at native resolution (496 x W)"),
                 fmt(n["accuracy"]), fmt(n["global_dice_soft"]), fmt(n["global_iou_soft"])] + extra)
    d = m["global_dice_soft"]
    rows.append([label + ("256 x 256 model input" if with_bf16 else
                          "scored on the 256 x 256 model input"),
                 fmt(m["accuracy"]), fmt(d), fmt(d / (2 - d))] + ["", ""] * with_bf16)
  rows.append(["paper (Table 1)" if with_bf16 else "paper, Table 1", PAPER["accuracy"],
               PAPER["dice"], PAPER["iou"]] + ["100", ""] * with_bf16)
  return rows


def readme_paper(src: Sources) -> str:
  return table(["", "pixel accuracy", "global Dice", "global IoU"], paper_rows(src, False))


def results_paper(src: Sources) -> str:
  return table(["run", "pixel accuracy", "global Dice", "global IoU", "best/last epoch",
                "wall time"], paper_rows(src, True))


def readme_class_iou(src: Sources) -> str:
  iou = src.run(GPU, "paper_protocol", "random_split")["native"]["class_iou"]
  return ("Class IoU at native resolution, background to OS-RPE: " +
          ", ".join(f"{v:.2f}" for v in iou) + " (paper: " +
          ", ".join(f"{v:.2f}" for v in PAPER_IOU) + ").")


def results_paper_classes(src: Sources) -> str:
  n = src.run(GPU, "paper_protocol", "random_split")["native"]
  rows = [[k, LAYER_NAMES[k], fmt(n["class_iou"][k]), fmt(n["class_accuracy"][k]),
           f"{PAPER_IOU[k]:.2f}"] for k in range(8)]
  return table(["class", "region", "IoU (ours)", "accuracy (ours)", "IoU (paper)"], rows)


# ---------------------------------------------------------------- cross-validation


def cv_summary(src: Sources) -> str:
  """The headline of the 4-fold cross-validation, as a sentence fragment."""
  runs = src.cv()
  dice = np.array([r["native"]["layer_dice"] for r in runs], float)
  mean = [r["native"]["mean_layer_dice"] for r in runs]
  return (f"mean layer Dice **{mean_sd(mean, 3)}** ({SD}; folds "
          + ", ".join(f"{v:.3f}" for v in mean) + f"); {layer_list(dice.mean(axis=0))}; "
          f"mean boundary error {mean_sd([mean_mae(r) for r in runs], 1)} um, "
          f"{mean_sd([mean_mae(r, True) for r in runs], 1)} um with the topology fix")


def readme_cv(src: Sources) -> str:
  return ("Literature protocol (`configs/duke_gpu.py`, 4-fold subject-wise cross-validation, "
          "per-layer Dice from hard predictions, background excluded, native resolution): "
          + cv_summary(src) + ".")


def results_cv_layers(src: Sources) -> str:
  runs = src.cv()
  dice = np.array([r["native"]["layer_dice"] for r in runs], float)
  rows = [[LAYER_NAMES[k + 1], mean_sd(dice[:, k])] for k in range(7)]
  rows.append(["**mean of 7 layers**",
               f"**{mean_sd([r['native']['mean_layer_dice'] for r in runs])}**"])
  return table(["layer", f"Dice, mean ± {SD}"], rows)


def results_cv_folds(src: Sources) -> str:
  runs = src.cv()
  wall = [r["train_s"] for r in runs]
  return ("Per fold: " + ", ".join(fmt(r["native"]["mean_layer_dice"]) for r in runs) +
          f"; wall time of training (all of `train_and_evaluate`) {min(wall):.0f}-"
          f"{max(wall):.0f} s per fold on the H200; best epochs "
          + ", ".join(str(r["best_epoch"]) for r in runs) + ".")


def results_cv_boundaries(src: Sources) -> str:
  mae = np.array([r["native"]["boundary_mae_um"] for r in src.cv()], float)
  rows = [[BOUNDARY_NAMES[b], mean_sd(mae[:, b], 2)] for b in range(8)]
  return table(["boundary", f"MAE (um), mean ± {SD}"], rows)


def results_gpu_ablations(src: Sources) -> str:
  results = src.json(f"{GPU}/results.json")
  rows = []
  for name, label in (("duke_gpu", "ours (index unpooling, no skip, CE + Dice, native)"),
                      ("transpose_upsampling", "transposed-conv upsampling"),
                      ("skip_concat", "skip concatenation"), ("ce_only", "CE alone (no Dice term)"),
                      ("resize_256", "256 x 256 resize instead of native")):
    run = results.get(name, {}).get("fold0", {})
    if "native" in run:
      rows.append([label, "fold 0", fmt(run["native"]["mean_layer_dice"]),
                   fmt(mean_mae(run), 2)])
    else:
      rows.append([label, "not run on the GPU", "", ""])
  return table(["configuration", "folds run", "mean layer Dice", "boundary MAE (um)"], rows)


def results_topology(src: Sources) -> str:
  rows = []
  for k, r in enumerate(src.cv()):
    t = r["native"]["topology"]
    rows.append([k, f"{t['columns_fixed']} / {t['columns_total']}",
                 f"{fmt(r['native']['mean_layer_dice'])} → {fmt(t['mean_layer_dice'])}",
                 f"{mean_mae(r):.2f} → {mean_mae(r, True):.2f}"])
  return table(["fold", "columns fixed", "mean layer Dice before → after",
                "boundary MAE (um) before → after"], rows)


def results_topology_effect(src: Sources) -> str:
  runs = src.cv()
  gain = np.mean([r["native"]["topology"]["mean_layer_dice"] - r["native"]["mean_layer_dice"]
                  for r in runs])
  mae = [mean_mae(r, True) - mean_mae(r) for r in runs]
  return (f"It always makes every column anatomically valid, changes the mean layer Dice by "
          f"{gain:+.4f} on average and the mean boundary error by {np.mean(mae):+.2f} um "
          f"(lower on {sum(d < 0 for d in mae)} folds of {len(mae)}), since a stray island of "
          "a layer no longer moves that layer's first row.")


# ---------------------------------------------------------------- explanations


def results_cam(src: Sources) -> str:
  s = src.json(f"{GPU}/explain_paper/cam_stats.json")["mean"]["dec0_conv1"]
  cols = (("alpha_mean", 4), ("max_raw", 2), ("mean_norm_intensity", 3), ("mass_in_region", 3),
          ("area_share", 3), ("deletion_area", 3), ("random_deletion_area", 3))
  rows = [[LAYER_NAMES[k]] + [f"{s[key][k]:.{d}f}" for key, d in cols] for k in range(8)]
  return table(["class", "alpha (mean, dec0_conv1)", "max raw", "mean intensity",
                "mass in region", "area share", "deletion AUC", "random AUC"], rows)


# ---------------------------------------------------------------- CPU runs


CPU_RUNS = (("duke_cpu", "ours, seed 0", "duke_cpu, seed 0"),
            ("duke_cpu_seed1", "ours, seed 1", "duke_cpu, seed 1"),
            ("duke_cpu_resize_256", "256 x 256 resize instead of native",
             "256 x 256 resize (216-row band)"),
            ("duke_cpu_transpose_upsampling", "transposed-conv upsampling",
             "transposed-conv upsampling"),
            ("duke_cpu_skip_concat", "skip concatenation", "skip concatenation"),
            ("duke_cpu_ce_only", "CE alone", "CE alone"))


def cpu_wall(src: Sources, name: str) -> Tuple[float, Optional[float]]:
  """(sum of epoch seconds from log.csv, wall time of the run or None where not recorded).
  The first CPU run's results.json entry holds its epoch-time sum in train_s (legacy)."""
  run = src.run(CPU, name, "fold0")
  epochs = epoch_seconds(src.log(f"{CPU}/{name}_fold0_log.csv"))
  return epochs, None if abs(run["train_s"] - epochs) < 0.01 else run["train_s"]


def results_cpu_fold0(src: Sources) -> str:
  n = src.run(CPU, "duke_cpu", "fold0")["native"]
  t = n["topology"]
  rows = [["pixel accuracy", fmt(n["accuracy"]), fmt(t["accuracy"])],
          ["global Dice / IoU (soft)", f"{fmt(n['global_dice_soft'])} / "
           f"{fmt(n['global_iou_soft'])}", ""],
          ["mean layer Dice (7 layers)", fmt(n["mean_layer_dice"]), fmt(t["mean_layer_dice"])],
          ["mean boundary MAE (um)", f"{mean_mae({'native': n}):.2f}",
           f"{mean_mae({'native': n}, True):.2f}"]]
  return (table(["", "raw argmax", "topology-fixed"], rows) + "\n\nPer layer Dice: " +
          layer_list(n["layer_dice"]) + ".")


def results_cpu_ablations(src: Sources) -> str:
  results = src.json(f"{CPU}/results.json")
  base = results["duke_cpu"]["fold0"]["native"]["mean_layer_dice"]
  rows = []
  for name, label, _ in CPU_RUNS:
    run = results.get(name, {}).get("fold0", {})
    if "native" not in run:
      rows.append([label, "not run (session time)"] + [""] * 6)
      continue
    epochs, wall = cpu_wall(src, name)
    n = run["native"]
    delta = "" if name == "duke_cpu" else f"{n['mean_layer_dice'] - base:+.4f}"
    rows.append([label, fmt(n["mean_layer_dice"]), fmt(n["topology"]["mean_layer_dice"]),
                 f"{mean_mae(run):.2f}", f"{mean_mae(run, True):.2f}", delta, f"{epochs:.0f}",
                 "not recorded" if wall is None else f"{wall:.0f}"])
  return table(["configuration (fold 0, `configs/duke_cpu.py`)", "mean layer Dice",
                "with topology fix", "boundary MAE (um)", "with topology fix", "vs seed 0",
                "sum of epoch times (s)", "wall time (s)"], rows)


def results_cpu_ablation_layers(src: Sources) -> str:
  results = src.json(f"{CPU}/results.json")
  rows = [[label] + [f"{v:.3f}" for v in results[name]["fold0"]["native"]["layer_dice"]]
          for name, _, label in CPU_RUNS if "native" in results.get(name, {}).get("fold0", {})]
  return table(["configuration"] + list(LAYER_NAMES[1:]), rows)


# ---------------------------------------------------------------- speed


def conv_flops_of(bench: Dict) -> int:
  """Analytic convolution FLOPs of one training step of a stored benchmark (flops.py)."""
  return model_train_step_conv_flops(bench["model"], bench["batch"], bench["input_shape"])


def readme_gpu_speed(src: Sources) -> str:
  fp32 = src.json(f"{GPU}/benchmark_paper_fp32.json")
  bf16 = src.json(f"{GPU}/benchmark_paper_bf16.json")
  torch = src.json(f"{GPU}/torch_paper.json")
  flops = conv_flops_of(fp32)
  rows = []
  for label, b in (("octseg_jax float32", fp32), ("octseg_jax bfloat16", bf16)):
    step = b["train_step"]["median_s"]
    rows.append([label, f"{step * 1e3:.1f} ms", f"{b['images_per_s']:.0f}", tflops(flops, step),
                 f"{b['explain_ratio_to_forward_backward']:.2f}x"])
  rows.append([f"PyTorch {torch['torch'].split('+')[0]} float32, same architecture",
               f"{torch['train_step_s'] * 1e3:.1f} ms", f"{torch['images_per_s']:.0f}",
               tflops(flops, torch["train_step_s"]), ""])
  return (table(["", "train step", "images/s", "convolution FLOP/s",
                 "explain (8 classes, 2 layers) / fwd+bwd"], rows) +
          f"\n\nConvolution FLOPs per training step: {flops / 1e12:.2f} TFLOP (analytic count, "
          "forward + 2 x backward, `octseg_jax/models/flops.py`; other operations not counted). "
          f"Compile: {fp32['compile_s']:.0f} s (float32), {bf16['compile_s']:.0f} s (bfloat16). "
          f"Peak GPU memory of the float32 benchmark: {fp32['peak_memory_bytes'] / 2**30:.1f} GiB. "
          f"Train step, PyTorch time / ours (float32): "
          f"{torch['train_step_s'] / fp32['train_step']['median_s']:.2f}.")


def readme_cpu_speed(src: Sources) -> str:
  j16 = src.json(f"{CPU}/jax_widths16_batch8.json")
  d16 = src.json(f"{CPU}/jax_widths16_batch8_xla_defaults.json")
  t16 = src.json(f"{CPU}/torch_widths16_batch8.json")
  j64 = src.json(f"{CPU}/jax_widths64_batch4.json")
  t64 = src.json(f"{CPU}/torch_widths64_batch4.json")
  rows = [["16..128, batch 8", f"{d16['train_step']['median_s']:.2f} s",
           f"{j16['train_step']['median_s']:.2f} s", f"{t16['train_step_s']:.2f} s",
           f"{t16['train_step_s'] / j16['train_step']['median_s']:.2f}"],
          ["64..512, batch 4", "", f"{j64['train_step']['median_s']:.1f} s",
           f"{t64['train_step_s']:.1f} s",
           f"{t64['train_step_s'] / j64['train_step']['median_s']:.2f}"]]
  return (table(["widths, batch", "octseg_jax, XLA defaults", "octseg_jax, our CPU flags (default)",
                 "PyTorch", "PyTorch time / ours"], rows) +
          "\n\nForward pass per image at the paper widths: octseg_jax "
          f"{j64['forward_per_image_s']:.2f} s, "
          f"PyTorch {t64['forward_per_image_s']:.2f} s. Share of fed step time spent waiting for "
          f"data (small widths): {100 * j16['data_wait_share']:.1f}% with our flags, "
          f"{100 * d16['data_wait_share']:.1f}% with XLA's defaults.")


CPU_COMPARE_ROWS = (          # benchmarks/compare_torch_rows.sh: the five rows of issue 17
    ("paper widths 64..512, index unpooling (the default), batch 4, 256 x 256",
     "compare_paper_unpool_b4", 1.2),
    ("widths 16..128, index unpooling, batch 8, 256 x 256", "compare_w16_unpool_b8", 1.1),
    ("configs/duke_cpu.py (16..128), batch 8, 224 x 512", "compare_duke_cpu_b8", 1.1),
    ("paper widths, skip + transposed conv, batch 4, 256 x 256",
     "compare_paper_skip_transpose_b4", 1.1),
    ("widths 16..128, skip + transposed conv, batch 8, 256 x 256",
     "compare_w16_skip_transpose_b8", 1.1))


def readme_cpu_compare(src: Sources) -> str:
  """benchmarks/compare_torch.py runs: the round with the median ratio (step times, the ratio),
  every round's ratio, and issue 17's target."""
  rows = []
  for label, stem, target in CPU_COMPARE_ROWS:
    got = src.json(f"{CPU}/{stem}.json")
    ratio = got["pytorch_over_ours"]
    loads = [got["load_average"]["before"][0], got["load_average"]["after"][0]]
    ours = got["octseg_jax"]
    rows.append([label, f"{ours['train_step']['median_s']:.3g} s",
                 f"{ours['achieved_conv_flops_per_s'] / 1e9:.0f}",
                 f"{got['pytorch']['train_step_s']:.3g} s", f"{ratio:.3f}",
                 " ".join(f"{r['pytorch_over_ours']:.2f}" for r in got["rounds"]),
                 f">= {target} ({'met' if ratio >= target else 'not met'})",
                 f"{min(loads):.0f}-{max(loads):.0f}"])
  return table(["row", "octseg_jax step", "octseg_jax conv GFLOP/s", "PyTorch step",
                "PyTorch time / ours (median round)", "every round", "target",
                "load (1 min)"], rows)


EXPLAIN = f"{CPU}/explain_pretrained"
LAYER_CLASSES = ("NFL", "GCL+IPL", "INL", "OPL", "ONL+ISM", "ISE", "OS-RPE")


def _cam_rows(compare: Dict) -> List[List[str]]:
  """scripts/compare_cams.py output -> rows per method and layer (ROAD areas, sanity)."""
  rows = []
  for method, result in compare["methods"].items():
    for layer, r in result["layers"].items():
      sim = r.get("randomisation_similarity")
      rows.append([method, layer, f"{r['faithful_classes']} of 7",
                   "n/a" if sim is None else f"{sim:.3f}",
                   " ".join(f"{v:.2f}" for v in r["morf_mean"][1:]),
                   " ".join(f"{v:.2f}" for v in r["random_mean"][1:])])
  return rows


CAM_HEADER = ["method", "layer", "layer classes with MoRF < random", "randomisation similarity",
              "MoRF area (NFL, GCL+IPL, INL, OPL, ONL+ISM, ISE, OS-RPE)", "random area"]


def results_cam_compare_gradcam(src: Sources) -> str:
  return table(CAM_HEADER, _cam_rows(src.json(f"{EXPLAIN}/compare_cams_gradcam.json")))


def results_cam_compare_others(src: Sources) -> str:
  return table(CAM_HEADER, _cam_rows(src.json(f"{EXPLAIN}/compare_cams_others.json")))


def results_cam_compare_subject01(src: Sources) -> str:
  return table(CAM_HEADER, _cam_rows(src.json(f"{EXPLAIN}/compare_subject01/compare_cams.json")))


def results_cam_pretrained(src: Sources) -> str:
  """Per class: ROAD areas averaged over the explained scans and the sanity correlations."""
  stats = src.json(f"{EXPLAIN}/cam_stats.json")
  layer = next(iter(stats["summary"]))
  m, sanity = stats["mean"][layer], stats["sanity"][layer]
  rows = []
  for c, name in enumerate(("background",) + LAYER_CLASSES):
    beats = m["road_morf_area"][c] < m["road_random_area"][c]
    rows.append([f"{c} {name}", f"{m['road_morf_area'][c]:.3f}", f"{m['road_lerf_area'][c]:.3f}",
                 f"{m['road_random_area'][c]:.3f}", "yes" if beats else "**no**",
                 f"{float(np.mean([s[c] for s in sanity['cascade']])):.3f}",
                 f"{float(np.mean([s[c] for s in sanity['independent']])):.3f}"])
  return table(["class", "ROAD MoRF", "ROAD LeRF", "ROAD random", "MoRF < random",
                "cascade Spearman (mean)", "independent (mean)"], rows)


def readme_predict_throughput(src: Sources) -> str:
  """Predict cost per B-scan and memory growth (benchmarks/predict_throughput.py runs), with
  the network alone per scan (timed in the benchmark's own process)."""
  rows = []
  for name, label in (("predict_throughput_baseline", "before streaming (commit 01896d8)"),
                      ("predict_throughput_batch16",
                       "current, `--config.train.eval_batch_size=16`"),
                      ("predict_throughput", "current, predict's own CPU batch")):
    bench = src.json(f"{CPU}/{name}.json")
    network = bench.get("network_alone", {}).get("by_batch", {})
    for figures, run in bench["runs"].items():
      small, large = run[str(min(bench["sizes"]))], run[str(max(bench["sizes"]))]
      loads = [small["load_average_before"][0], large["load_average_after"][0]]
      batch = large.get("batch_size")
      alone = network.get(str(batch), {}).get("s_per_scan")
      rows.append([label, {"legacy": "every scan"}.get(figures, f"`{figures}`"),
                   "-" if batch is None else str(batch),
                   f"{bench['summary'][figures]['marginal_s_per_bscan_wall']:.3f}",
                   "-" if alone is None else f"{alone:.3f}",
                   f"{small['peak_rss_mb'] / 1e3:.2f} -> {large['peak_rss_mb'] / 1e3:.2f} GB "
                   f"(+{bench['summary'][figures]['peak_rss_growth_mb']:.0f} MB)",
                   f"{min(loads):.0f}-{max(loads):.0f}"])
  return table(["code", "figures", "scans per network call", "s per B-scan (marginal, wall)",
                "network alone, s per B-scan", "peak RSS N=10 -> N=100", "load (1 min)"], rows)


# ---------------------------------------------------------------- pretrained model


def pretrained_checkpoint(src: Sources) -> str:
  config, log = src.json("pretrained/config.json"), src.log("pretrained/log.csv")
  best = src.path("pretrained/best")
  files = [os.path.join(d, f) for d, _, names in os.walk(best) for f in names]
  size = sum(os.path.getsize(f) for f in files)
  lrs = sorted({float(r["lr"]) for r in log})
  t = config["train"]
  return (f"Schedule of this model: {len(log)} epochs (`train.num_epochs={t['num_epochs']}`), "
          f"Adam {t['learning_rate']:g}, plateau and early-stopping patience "
          f"{t['plateau_patience']} and {t['early_stopping_patience']}, i.e. both off (there is "
          "no held-out subject to watch), so the learning rate stayed at "
          + " / ".join(f"{v:g}" for v in lrs) + " for all epochs. Checkpoint: "
          f"`best/{sorted(os.listdir(best))[-1]}` holds parameters and BatchNorm statistics "
          f"only: {size:,} bytes in {len(files)} files ({size / 1e6:.2f} MB).")


def bf16_vs_fp32(src: Sources) -> str:
  fp32 = src.run(GPU, "paper_protocol", "random_split")["native"]
  bf16 = src.run(GPU, "paper_protocol_bf16", "random_split")["native"]
  return ("bfloat16 is an option (`train.compute_dtype`), not the default: in the one paired "
          "paper-protocol run it did not meet the 0.005 global Dice target: "
          f"validation global Dice (native) {fmt(bf16['global_dice_soft'])} vs "
          f"{fmt(fp32['global_dice_soft'])} "
          f"({bf16['global_dice_soft'] - fp32['global_dice_soft']:+.4f}) and mean layer Dice "
          f"{fmt(bf16['mean_layer_dice'])} vs {fmt(fp32['mean_layer_dice'])} "
          f"({bf16['mean_layer_dice'] - fp32['mean_layer_dice']:+.3f}), one run each. The two runs "
          "also stopped at different epochs, so part of the gap may be run-to-run noise.")


def pretrained_cv(src: Sources) -> str:
  runs = src.cv()
  lrs = [sorted({float(r["lr"]) for r in src.log(f"{GPU}/runs/duke_gpu_fold{k}/log.csv")})
         for k in range(len(runs))]
  t = src.json(f"{GPU}/runs/duke_gpu_fold0/config.json")["train"]
  return ("Expected accuracy on new eyes, from 4-fold subject-wise cross-validation of "
          "`configs/duke_gpu.py` (train on 6 subjects, validate on the other 2; literature "
          "protocol: per-layer Dice from hard predictions at native resolution, background "
          "excluded): " + cv_summary(src) + ". The folds ran with plateau patience "
          f"{t['plateau_patience']} and early-stopping patience {t['early_stopping_patience']} "
          "(`configs/duke_gpu.py`); their learning rate was halved "
          + ", ".join(str(len(v) - 1) for v in lrs) + " times and they stopped at epochs "
          + ", ".join(str(r["epochs"]) for r in runs) + " (best epochs "
          + ", ".join(str(r["best_epoch"]) for r in runs) + ").")


TABLES: Dict[str, Callable[[Sources], str]] = {
    f.__name__: f for f in (
        readme_paper, readme_class_iou, readme_cv, readme_gpu_speed, readme_cpu_speed,
        readme_predict_throughput, readme_cpu_compare, results_cam_compare_gradcam,
        results_cam_compare_others, results_cam_compare_subject01, results_cam_pretrained,
        results_paper, results_paper_classes, results_cv_layers, results_cv_folds,
        results_cv_boundaries, results_gpu_ablations, results_topology, results_topology_effect,
        results_cam, results_cpu_fold0, results_cpu_ablations, results_cpu_ablation_layers,
        pretrained_checkpoint, pretrained_cv, bf16_vs_fp32)}


# ---------------------------------------------------------------- prose allow-list


def key_value(src: Sources, source: str, key):
  """Value at a dotted key of a JSON file ('a.b.0' indexes lists), a log.csv reduction
  ('rows', 'seconds_sum', 'seconds_median', 'seconds_min', 'seconds_max'), or key(src) for a
  value derived from several files."""
  if callable(key):
    return key(src)
  if source.endswith(".csv"):
    seconds = [float(r["seconds"]) for r in src.log(source)]
    return {"rows": len(seconds), "seconds_sum": sum(seconds),
            "seconds_median": float(np.median(seconds)), "seconds_min": min(seconds),
            "seconds_max": max(seconds)}[key]
  value = src.json(source)
  for part in key.split("."):
    value = value[int(part)] if isinstance(value, list) else value[part]
  return value


def _seed_gap(src: Sources) -> float:
  """Mean layer Dice of the CPU seed-0 run minus that of its seed-1 repeat."""
  dice = [src.run(CPU, n, "fold0")["native"]["mean_layer_dice"]
          for n in ("duke_cpu", "duke_cpu_seed1")]
  return dice[0] - dice[1]


def _nfl_gcl_mae(name: str) -> Callable[[Sources], float]:
  def value(src: Sources) -> float:
    return src.run(CPU, name, "fold0")["native"]["boundary_mae_um"][1]
  value.__name__ = f"{name}.fold0.native.boundary_mae_um.1"
  return value


def _demo_wall_minutes(src: Sources) -> float:
  """Wall time of the README's demo commands from the `wall_s` line of its run log."""
  with open(src.path(f"{CPU}/demo/run.log")) as f:
    lines = [line.split() for line in f if line.startswith("wall_s ")]
  return float(lines[-1][1]) / 60


def _median_best_epoch(src: Sources) -> float:
  return float(np.median([r["best_epoch"] for r in src.cv()]))


def _iou_gap(pick: Callable) -> Callable[[Sources], float]:
  """pick (min or max) of paper IoU - ours over the 7 layers (paper protocol, native)."""
  def value(src: Sources) -> float:
    ours = src.run(GPU, "paper_protocol", "random_split")["native"]["class_iou"]
    return pick(PAPER_IOU[k] - ours[k] for k in range(1, 8))
  value.__name__ = f"{pick.__name__} of paper IoU - paper_protocol.native.class_iou[1:]"
  return value


def _cam_layers(pick: Callable, ratio: bool) -> Callable[[Sources], float]:
  """pick of the layers' mass in region (or of mass / area share), classes 1-7."""
  def value(src: Sources) -> float:
    s = src.json(f"{GPU}/explain_paper/cam_stats.json")["mean"]["dec0_conv1"]
    return pick(s["mass_in_region"][k] / (s["area_share"][k] if ratio else 0.01)
                for k in range(1, 8))
  value.__name__ = f"{pick.__name__} of mass_in_region{' / area_share' if ratio else ' (%)'}"
  return value


def _fold0_delta(folder: str, base: str, name: str) -> Callable[[Sources], float]:
  """|mean layer Dice of name - base| on fold 0."""
  def value(src: Sources) -> float:
    dice = [src.run(folder, n, "fold0")["native"]["mean_layer_dice"] for n in (name, base)]
    return abs(dice[0] - dice[1])
  value.__name__ = f"|{name} - {base}| fold0 mean_layer_dice"
  return value


def _nfl_resize_cost(src: Sources) -> float:
  dice = [src.run(CPU, n, "fold0")["native"]["layer_dice"][0]
          for n in ("duke_cpu", "duke_cpu_resize_256")]
  return dice[0] - dice[1]


_TU = f"{CPU}/duke_cpu_transpose_upsampling_fold0_log.csv"
_CAM = f"{GPU}/explain_paper/cam_stats.json"
_GLIBC = f"{CPU}/allocator/compare_paper_unpool_b4_glibc_{{}}.json"
# (document, text as it must appear, source file, key); the text is a format string of the
# value; line breaks in the document do not matter.
PROSE: List[Tuple[str, str, str, object]] = [
    ("README.md", "plain / rewritten step time {:.2f} at the paper widths",
     f"{CPU}/ab_conv_channel_sum_paper_b4.json", "plain_over_fast"),
    ("README.md", "and {:.2f} at 16..128 (batch 8)", f"{CPU}/ab_conv_channel_sum_w16_b8.json",
     "plain_over_fast"),
    ("README.md", "at the paper widths, {:.2f} for the sums", f"{CPU}/ab_channel_sum_paper_b4.json",
     "plain_over_fast"),
    ("README.md", "and {:.2f} for the convolutions", f"{CPU}/ab_conv_paper_b4.json",
     "plain_over_fast"),
    ("README.md", "PyTorch's step fell from {:.2f}", _GLIBC.format("default"),
     "pytorch.train_step_s"),
    ("README.md", "to {:.2f} s and ours", _GLIBC.format("keep_freed"), "pytorch.train_step_s"),
    ("README.md", "and ours from {:.2f}", _GLIBC.format("default"),
     "octseg_jax.train_step.median_s"),
    ("README.md", "to {:.2f} s (both pay", _GLIBC.format("keep_freed"),
     "octseg_jax.train_step.median_s"),
    ("README.md", "went from {:.0f} to", f"{CPU}/profile_paper_unpool_b4_before.json",
     "op_ms_per_step"),
    ("README.md", "to {:.0f} ms of summed", f"{CPU}/profile_paper_unpool_b4_after.json",
     "op_ms_per_step"),
    ("README.md", "took {:.1f} s to compile in a fresh process", f"{CPU}/compile_cache.json",
     "uncached_compile_s"),
    ("README.md", "empty cache and {:.1f} s in the next", f"{CPU}/compile_cache.json",
     "cached_compile_s"),
    ("README.md", "`flops_per_step` ({:.1e} and", f"{GPU}/benchmark_paper_fp32.json",
     "flops_per_step"),
    ("README.md", "and {:.1e}) is XLA's count", f"{GPU}/benchmark_paper_bf16.json",
     "flops_per_step"),
    ("README.md", "the install took {:.1f} minutes", f"{CPU}/demo/run.log", _demo_wall_minutes),
    ("README.md", "mean layer Dice {:.3f} in the stored run", f"{CPU}/demo/metrics.json",
     "raw.literature.mean_layer_dice"),
    ("README.md", "two seeds of the same CPU configuration differ by {:.3f}", f"{CPU}/results.json",
     _seed_gap),
    ("README.md", "the resize costing the NFL about {:.2f} Dice", f"{CPU}/results.json",
     _nfl_resize_cost),
    ("docs/results.md", "dilution, are {:.2f}-", f"{GPU}/results.json", _iou_gap(min)),
    ("docs/results.md", "-{:.2f} below the paper's on every layer", f"{GPU}/results.json",
     _iou_gap(max)),
    ("docs/results.md", "section 5): there two seeds of the same configuration differ by {:.3f}",
     f"{CPU}/results.json", _seed_gap),
    ("docs/results.md", "each layer's map puts {:.0f}-", _CAM, _cam_layers(min, False)),
    ("docs/results.md", "-{:.0f}% of its mass", _CAM, _cam_layers(max, False)),
    ("docs/results.md", "true region, {:.0f}-", _CAM, _cam_layers(min, True)),
    ("docs/results.md", "-{:.0f} times the region's share", _CAM, _cam_layers(max, True)),
    ("docs/results.md", "`faithful_classes` **{:.0f}** of 7",
     f"{CPU}/explain_pretrained/cam_stats.json", "summary.dec0_conv1.faithful_classes"),
    ("docs/results.md", "`randomisation_similarity` **{:.3f}**",
     f"{CPU}/explain_pretrained/cam_stats.json", "summary.dec0_conv1.randomisation_similarity"),
    ("docs/results.md", "Transposed conv was {:.3f} below index unpooling here",
     f"{CPU}/results.json",
     _fold0_delta(CPU, "duke_cpu", "duke_cpu_transpose_upsampling")),
    ("docs/results.md", "index unpooling here and {:.3f} below on the GPU", f"{GPU}/results.json",
     _fold0_delta(GPU, "duke_gpu", "transpose_upsampling")),
    ("docs/results.md", "skip concatenation {:.3f} and", f"{CPU}/results.json",
     _fold0_delta(CPU, "duke_cpu", "duke_cpu_skip_concat")),
    ("docs/results.md", "and {:.3f} above. The same sign", f"{GPU}/results.json",
     _fold0_delta(GPU, "duke_gpu", "skip_concat")),
    ("README.md", "SegNet 64..512, batch 32, up to 100 epochs; {:.0f} s wall time",
     f"{GPU}/results.json", "paper_protocol.random_split.train_s"),
    ("README.md", "early stopping at epoch {} of 100", f"{GPU}/results.json",
     "paper_protocol.random_split.epochs"),
    ("README.md", "validation every epoch, checkpoints): {:.0f} s wall time",
     f"{GPU}/results.json", "paper_protocol.random_split.train_s"),
    ("docs/results.md", "which moved the mean layer Dice by {:.3f}", f"{CPU}/results.json",
     _seed_gap),
    ("docs/results.md", "(jax 0.10.2, our XLA CPU flags): {} epochs",
     f"{CPU}/duke_cpu_fold0_log.csv", "rows"),
    ("docs/results.md", "{:.0f} s of epoch time", f"{CPU}/duke_cpu_fold0_log.csv", "seconds_sum"),
    ("docs/results.md", "with the wider `configs/duke_gpu.py` on the H200: {:.4f}",
     f"{GPU}/results.json", "duke_gpu.fold0.native.mean_layer_dice"),
    ("docs/results.md", "seed 1 scores {:.4f} below seed 0", f"{CPU}/results.json", _seed_gap),
    ("docs/results.md", "boundary error rising from {:.1f} um", f"{CPU}/results.json",
     _nfl_gcl_mae("duke_cpu")),
    ("docs/results.md", "um ({:.1f}) to", f"{CPU}/results.json", _nfl_gcl_mae("duke_cpu_seed1")),
    ("docs/results.md", "to {:.1f} um. Resizing", f"{CPU}/results.json",
     _nfl_gcl_mae("duke_cpu_resize_256")),
    ("docs/results.md", "natively: median {:.0f} s per epoch",
     f"{CPU}/duke_cpu_resize_256_fold0_log.csv", "seconds_median"),
    ("docs/results.md", "per epoch against {:.0f} s (seed-1 run)",
     f"{CPU}/duke_cpu_seed1_fold0_log.csv", "seconds_median"),
    ("docs/results.md", "Transposed-conv upsampling: median {:.0f} s per epoch", _TU,
     "seconds_median"),
    ("docs/results.md", "per epoch ({:.0f}-", _TU, "seconds_min"),
    ("docs/results.md", "-{:.0f} s; part of that run", _TU, "seconds_max"),
    ("docs/results.md", "Skip concatenation: median {:.0f} s per epoch",
     f"{CPU}/duke_cpu_skip_concat_fold0_log.csv", "seconds_median"),
    ("pretrained/README.md", "on one NVIDIA H200 in {:.0f} s wall time", f"{GPU}/results.json",
     "pretrained_all_subjects.all.train_s"),
    ("pretrained/README.md", "cross-validation folds ({:.1f}, truncated", f"{GPU}/results.json",
     _median_best_epoch),
    ("pretrained/README.md", "`train.num_epochs={}`, `train.plateau_patience=1000`",
     "pretrained/config.json", "train.num_epochs"),
    ("pretrained/README.md", "`train.plateau_patience={}` and", "pretrained/config.json",
     "train.plateau_patience"),
    ("pretrained/README.md", "`train.early_stopping_patience={}`", "pretrained/config.json",
     "train.early_stopping_patience"),
]


def prose_problems(src: Sources, texts: Dict[str, str]) -> List[str]:
  problems = []
  for doc, template, source, key in PROSE:
    expected = template.format(key_value(src, source, key))
    if " ".join(expected.split()) not in " ".join(texts[doc].split()):   # line breaks vary
      where = key if isinstance(key, str) else key.__name__
      problems.append(f"{doc}: prose number from {source} [{where}]: expected "
                      f"{expected!r} (not found)")
  return problems


# ---------------------------------------------------------------- render and check


def render(text: str, src: Sources) -> str:
  """text with every generated block rewritten from the raw outputs."""
  def body(match):
    name = match.group("name")
    if name not in TABLES:
      raise KeyError(f"unknown generated block {name!r}; known: {sorted(TABLES)}")
    return f"<!-- generated:{name} -->\n{TABLES[name](src)}\n<!-- /generated:{name} -->"
  return BLOCK.sub(body, text)


def stray_table_rows(text: str) -> List[str]:
  """Table rows holding a decimal number outside every generated block."""
  outside = BLOCK.sub("", text)
  return [line for line in outside.splitlines()
          if line.lstrip().startswith("|") and re.search(r"\d\.\d", line)]


def check(root: str = ROOT, texts: Optional[Dict[str, str]] = None) -> List[str]:
  """Every difference between the documents (or `texts`, {document: text}) and what the raw
  outputs under root generate, one line each; [] when all agree."""
  src = Sources(root)
  overrides, texts = texts or {}, {}
  for doc in DOCS:
    if doc in overrides:
      texts[doc] = overrides[doc]
    else:
      with open(os.path.join(root, doc)) as f:
        texts[doc] = f.read()
  problems = []
  for doc, text in texts.items():
    fresh = dict((m.group("name"), m.group("body")) for m in BLOCK.finditer(render(text, src)))
    for m in BLOCK.finditer(text):
      if m.group("body") != fresh[m.group("name")]:
        problems.append(f"{doc}: block {m.group('name')} differs from what "
                        "scripts/doc_tables.py generates from the raw outputs")
    problems += [f"{doc}: table row with numbers outside a generated block: {row[:80]}"
                 for row in stray_table_rows(text)]
  return problems + prose_problems(src, texts)


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--write", action="store_true", help="rewrite the generated blocks")
  parser.add_argument("--root", default=ROOT)
  args = parser.parse_args()
  if args.write:
    from octseg_jax.outputs.atomic import write_text
    src = Sources(args.root)
    for doc in DOCS:
      path = os.path.join(args.root, doc)
      with open(path) as f:
        text = f.read()
      new = render(text, src)
      if new != text:
        write_text(path, new)
        print(f"rewrote {doc}")
  problems = check(args.root)
  for p in problems:
    print(p)
  return 1 if problems else 0


if __name__ == "__main__":
  sys.exit(main())
