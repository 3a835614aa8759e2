"""The measured numbers of README.md, docs/results.md, docs/performance.md, pretrained/README.md
and docs/results/gpu_h200/pretrained_v1/README.md, generated from the raw outputs committed in
docs/results/ and pretrained/, so that a published number cannot drift from its file.

Measured numbers appear only inside generated blocks: each sits between
`<!-- generated:NAME -->` and `<!-- /generated:NAME -->` and is the output of TABLES[NAME] (a
table, a sentence or a short list). The check compares every block with what its generator
makes now, refuses a marker without its closing partner, and refuses a table row with a decimal
number outside every block.

  python scripts/doc_tables.py           # check: one line per difference, exit status 1
  python scripts/doc_tables.py --write   # rewrite the blocks from the raw outputs
"""

import argparse
import json
import math
import os
import re
import statistics
import sys
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from octseg_jax.anatomy import BOUNDARY_NAMES, LAYER_NAMES, PAPER, PAPER_IOU  # noqa: E402
from octseg_jax.config import schema  # noqa: E402
from octseg_jax.data import duke  # noqa: E402
from octseg_jax.learning import uncertainty  # noqa: E402
from octseg_jax.models.flops import model_train_step_conv_flops  # noqa: E402
from octseg_jax.cam.gradcam import LINEAR_METHODS, METHOD_NAMES  # noqa: E402
from octseg_jax.outputs.cam_report import (  # noqa: E402
    SANITY_PASS, SCAN_PIXELS, heldout_evidence)
from octseg_jax.outputs import training_log  # noqa: E402
from octseg_jax.outputs.report import count, fmt, table  # noqa: E402
from octseg_jax.serving.inference import stored_config  # noqa: E402
from scripts.campaign import (  # noqa: E402
    ALL, METRICS, RUN_RECORD, override_arg, run_of_workdir, run_parts)
from scripts.campaign_table import (  # noqa: E402
    CURVE, LEVER, READING_VERDICT, READINGS, VALIDATION_FREE)
from scripts.cam_evidence import HELDOUT  # noqa: E402     # compare_cams.py per fold model
from scripts.summarise_results import mean_sd  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ("README.md", "docs/results.md", "docs/performance.md", "pretrained/README.md",
        "docs/results/gpu_h200/pretrained_v1/README.md")
GPU, CPU = "docs/results/gpu_h200", "docs/results/cpu_2core"
CAMPAIGN_PLAN = "configs/campaign.json"
CAMPAIGN_RUNS = "docs/results/campaign"          # CAMPAIGN_PLAN's results_dir: RECIPE/foldF_seedS
CAMPAIGN = f"{CAMPAIGN_RUNS}/levers.json"        # scripts/campaign_table.py, from the runs
H200_PLAN = "configs/campaign_h200.json"
H200_RUNS = "docs/results/campaign_h200"         # H200_PLAN's results_dir
H200 = f"{H200_RUNS}/levers.json"                # the same, --plan=H200_PLAN
ENSEMBLES = f"{CAMPAIGN_RUNS}/ensembles"         # scripts/eval_ensemble.py on seed pairs
UNCERTAINTY_SMOOTHING = "docs/results/uncertainty_smoothing"   # its run.sh: eval before/after
SHIPPED_CALIBRATION = "docs/results/shipped_calibration"   # its run.sh: eval as shipped, band ECE
SMOOTHING = "docs/results/smoothing"             # scripts/smoothing_cv.py: cv.json, cv_pairs.json
FLUID_COLUMNS = "docs/results/fluid_columns"     # --mode=eval of fold models: RECIPE/foldF_seed0
VALIDATION_FREE_SETTINGS = "docs/results/validation_free"   # run.sh: smoothing, evals, flag;
                                                 # seed_ensembles.sh: the noval seed ensembles
# The fold models re-scored there: (folder, how they were trained, the runs scored at training).
FLUID_COLUMN_MODELS = (
    ("plateau_80_fluid_skip_wh_ema", "the members shipped until 2026-12-07 "
     "(plateau_80_fluid_skip_wh_ema, 16..128, skip connections, ReLayNet's weighted loss, "
     "weights averaged, this CPU)",
     CAMPAIGN_RUNS),
    ("plateau_80_fluid", "the members shipped until 2026-12-05 (plateau_80_fluid, 16..128, "
     "this CPU)",
     CAMPAIGN_RUNS),
    ("wide_80_fluid_skip_wh", "wide_80_fluid_skip_wh (32..256, trained on the H200)", H200_RUNS),
    ("plateau_80_fluid_skip_wh", "plateau_80_fluid_skip_wh (16..128, skip connections and "
     "ReLayNet's weighted loss, this CPU)", CAMPAIGN_RUNS))
# Issue 25's targets for the 4-fold cross-validation: mean layer Dice, every layer, boundary MAE.
TARGETS = {"mean layer Dice": (0.87, ">="), "lowest layer Dice": (0.78, ">="),
           "boundary MAE (um)": (5.0, "<=")}
SD = "population sd over 4 folds"
BLOCK = re.compile(r"<!-- generated:(?P<name>[\w-]+) -->\n(?P<body>.*?)\n?"
                   r"<!-- /generated:(?P=name) -->", re.S)
MARKER = re.compile(r"^<!-- (?P<end>/?)generated:(?P<name>[\w-]+) -->$", re.M)   # own line


class Sources:
  """Reads raw outputs under a checkout root (cached)."""

  def __init__(self, root: str = ROOT):
    self.root, self._cache = root, {}

  def path(self, rel: str) -> str:
    return os.path.join(self.root, rel)

  def exists(self, rel: str) -> bool:
    """Whether the raw output `rel` is there (read already, or a file under the root)."""
    return rel in self._cache or os.path.exists(self.path(rel))

  def json(self, rel: str):
    if rel not in self._cache:
      with open(self.path(rel)) as f:
        self._cache[rel] = json.load(f)
    return self._cache[rel]

  def log(self, rel: str) -> List[Dict[str, str]]:
    if rel not in self._cache:
      self._cache[rel] = training_log.read_rows(self.path(rel), missing_ok=False)
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


def results_paper(src: Sources) -> str:
  rows = []
  for name, dtype in (("paper_protocol", "float32"), ("paper_protocol_bf16", "bfloat16")):
    run = src.run(GPU, name, "random_split")
    n, m = run["native"], run["model_resolution_val"]
    rows.append([f"ours, {dtype}, native resolution", fmt(n["accuracy"]),
                 fmt(n["global_dice_soft"]), fmt(n["global_iou_soft"]),
                 f"{run['best_epoch']}/{run['epochs']}", f"{run['train_s']:.0f} s"])
    d = m["global_dice_soft"]
    rows.append([f"ours, {dtype}, 256 x 256 model input", fmt(m["accuracy"]), fmt(d),
                 fmt(d / (2 - d)), "", ""])
  rows.append(["paper (Table 1)", PAPER["accuracy"], PAPER["dice"], PAPER["iou"], "100", ""])
  return table(["run", "pixel accuracy", "global Dice", "global IoU", "best/last epoch",
                "wall time"], rows)


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
  fixed = [r["native"]["topology"]["mean_layer_dice"] for r in runs]
  return (f"mean layer Dice **{mean_sd(mean, 3)}** ({SD}; folds "
          + ", ".join(f"{v:.3f}" for v in mean) + f"); {layer_list(dice.mean(axis=0))}; "
          f"with the topology (order) fix {np.mean(fixed):.3f}; "
          f"mean boundary error {mean_sd([mean_mae(r) for r in runs], 1)} um, "
          f"{mean_sd([mean_mae(r, True) for r in runs], 1)} um with the topology fix")


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
          layer_list(n["layer_dice"]) + ". The same fold with the wider `configs/duke_gpu.py` on "
          f"the H200: {fmt(fold0_dice(src, GPU, 'duke_gpu'))}.")


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


def performance_gpu_speed(src: Sources) -> str:
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
          f"{torch['train_step_s'] / fp32['train_step']['median_s']:.2f}. The benchmark JSONs of "
          "that session predate the analytic count: their `flops_per_step` "
          f"({fp32['flops_per_step']:.1e} and {bf16['flops_per_step']:.1e}) is XLA's count of the "
          "lowered program, which on CUDA misses the convolutions.")


def performance_cpu_earlier_round(src: Sources) -> str:
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


def performance_cpu_compare(src: Sources) -> str:
  """benchmarks/compare_torch.py runs: the round with the median ratio (step times, the ratio),
  every round's ratio, and issue 17's target."""
  rows, spread = [], []
  for label, stem, target in CPU_COMPARE_ROWS:
    got = src.json(f"{CPU}/{stem}.json")
    spread.append(np.ptp([r["pytorch_over_ours"] for r in got["rounds"]]))
    ratio = got["pytorch_over_ours"]
    loads = [got["load_average"]["before"][0], got["load_average"]["after"][0]]
    ours = got["octseg_jax"]
    rows.append([label, f"{ours['train_step']['median_s']:.3g} s",
                 f"{ours['achieved_conv_flops_per_s'] / 1e9:.0f}",
                 f"{got['pytorch']['train_step_s']:.3g} s", f"{ratio:.3f}",
                 " ".join(f"{r['pytorch_over_ours']:.2f}" for r in got["rounds"]),
                 f">= {target} ({'met' if ratio >= target else 'not met'})",
                 f"{min(loads):.0f}-{max(loads):.0f}"])
  default = src.json(f"{CPU}/{CPU_COMPARE_ROWS[0][1]}.json")["octseg_jax"]
  return (table(["row", "octseg_jax step", "octseg_jax conv GFLOP/s", "PyTorch step",
                 "PyTorch time / ours (median round)", "every round", "target",
                 "load (1 min)"], rows) +
          f"\n\nA row's ratio moves by up to {max(spread):.2f} from one round to the next. The "
          f"default row's step is {default['conv_flops_per_step'] / 1e9:.0f} GFLOP of "
          "convolutions (analytic count).")


EXPLAIN = f"{CPU}/explain_pretrained"


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


def results_cam_cost_subject01(src: Sources) -> str:
  """The explain cost of subject 1's most faithful pair (HiResCAM at the bottleneck) against
  the default of then (benchmarks/time_explain.py runs), with both pairs' faithful counts."""
  compare = src.json(f"{EXPLAIN}/compare_subject01/compare_cams.json")["methods"]
  hires, default = (src.json(f"{EXPLAIN}/time_explain_subject01{tail}.json")
                    for tail in ("_hirescam_enc3_conv1", ""))
  best = compare["hirescam"]["layers"]["enc3_conv1"]
  ours = compare["gradcam"]["layers"]["dec0_conv1"]                  # the default then
  sim = best.get("randomisation_similarity")
  return (f"HiResCAM at `enc3_conv1` reaches {best['faithful_classes']} of 7 on this file "
          "(randomisation similarity " + ("not computed" if sim is None else f"{sim:.3f}")
          + f"), Grad-CAM at `dec0_conv1` {ours['faithful_classes']} of 7; HiResCAM there "
          f"took **{hires['ratio_wall']:.2f}x** the prediction time per scan (wall; "
          f"{hires['ratio_cpu']:.2f}x CPU), against **{default['ratio_wall']:.2f}x** "
          f"({default['ratio_cpu']:.2f}x CPU) for the default then, Grad-CAM at `dec0_conv1` "
          "(`benchmarks/time_explain.py`, "
          f"{hires['scans']} scans x {hires['rounds']} rounds, idle machine; "
          "`time_explain_subject01_hirescam_enc3_conv1.json`, `time_explain_subject01.json`).")


def results_cam_pretrained(src: Sources) -> str:
  """Per class: ROAD areas averaged over the explained scans and the sanity correlations."""
  stats = src.json(f"{EXPLAIN}/cam_stats.json")
  layer = next(iter(stats["summary"]))
  m, sanity = stats["mean"][layer], stats["sanity"][layer]
  rows = []
  for c, name in enumerate(LAYER_NAMES):
    beats = m["road_morf_area"][c] < m["road_random_area"][c]
    rows.append([f"{c} {name}", f"{m['road_morf_area'][c]:.3f}", f"{m['road_lerf_area'][c]:.3f}",
                 f"{m['road_random_area'][c]:.3f}", "yes" if beats else "**no**",
                 f"{float(np.mean([s[c] for s in sanity['cascade']])):.3f}",
                 f"{float(np.mean([s[c] for s in sanity['independent']])):.3f}"])
  return table(["class", "ROAD MoRF", "ROAD LeRF", "ROAD random", "MoRF < random",
                "cascade Spearman (mean)", "independent (mean)"], rows)


def performance_predict_throughput(src: Sources) -> str:
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


PREVIOUS = f"{GPU}/pretrained_v1"    # the model shipped in pretrained/ until the ensemble


def previous_schedule(src: Sources) -> str:
  config, log = src.json(f"{PREVIOUS}/config.json"), src.log(f"{PREVIOUS}/log.csv")
  lrs = sorted({float(r["lr"]) for r in log})
  t = config["train"]
  return (f"Schedule of this model: {len(log)} epochs (`train.num_epochs={t['num_epochs']}`), "
          f"Adam {t['learning_rate']:g}, plateau and early-stopping patience "
          f"{t['plateau_patience']} and {t['early_stopping_patience']}, i.e. both off (there is "
          "no held-out subject to watch), so the learning rate stayed at "
          + " / ".join(f"{v:g}" for v in lrs) + " for all epochs.")


def performance_bf16_vs_fp32(src: Sources) -> str:
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


def previous_cv(src: Sources) -> str:
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


# ---------------------------------------------------------------- values shared by several blocks


def fold0_dice(src: Sources, folder: str, name: str) -> Optional[float]:
  """Mean layer Dice of a run's fold 0 at native resolution (None where it did not run)."""
  run = src.json(f"{folder}/results.json").get(name, {}).get("fold0", {})
  return run["native"]["mean_layer_dice"] if "native" in run else None


def seed_gap(src: Sources) -> float:
  """Mean layer Dice of the CPU seed-0 run minus that of its seed-1 repeat (fold 0)."""
  return fold0_dice(src, CPU, "duke_cpu") - fold0_dice(src, CPU, "duke_cpu_seed1")


# (base run, its one-change ablations) of the fold-0 comparisons in each results folder
ABLATIONS = {CPU: ("duke_cpu", ("duke_cpu_resize_256", "duke_cpu_transpose_upsampling",
                                "duke_cpu_skip_concat", "duke_cpu_ce_only")),
             GPU: ("duke_gpu", ("transpose_upsampling", "skip_concat", "ce_only", "resize_256"))}


def ablation_deltas(src: Sources, folder: str) -> Dict[str, float]:
  """{ablation: its fold-0 mean layer Dice minus the base's}, for the ablations that ran."""
  base, names = ABLATIONS[folder]
  dice = {n: fold0_dice(src, folder, n) for n in (base,) + names}
  return {n: dice[n] - dice[base] for n in names if dice[n] is not None}


def layer_changes_beyond_seeds(src: Sources) -> Tuple[float, str, List[Tuple[str, str, float]]]:
  """(largest per-layer Dice difference between the two CPU seeds, its layer, and every
  (ablation label, layer, change) on the CPU whose per-layer change exceeds it)."""
  layers = lambda n: np.asarray(src.run(CPU, n, "fold0")["native"]["layer_dice"], float)
  base, seed = layers("duke_cpu"), np.abs(layers("duke_cpu") - layers("duke_cpu_seed1"))
  beyond = []
  for name, _, label in CPU_RUNS:
    if name in ABLATIONS[CPU][1] and fold0_dice(src, CPU, name) is not None:
      change = layers(name) - base
      beyond += [(label, LAYER_NAMES[k + 1], change[k]) for k in range(7)
                 if abs(change[k]) > seed.max()]
  return float(seed.max()), LAYER_NAMES[int(seed.argmax()) + 1], beyond


def seed_noise_verdict(src: Sources, deltas: List[float], scope: str) -> str:
  """'more than any ablation difference in SCOPE (largest X)' or the opposite, measured."""
  largest = max(abs(d) for d in deltas)
  word = "more than" if seed_gap(src) > largest else "no more than"
  return f"{word} any ablation difference {scope} (largest {largest:.3f})"


def wall_clock_s(log_path: str) -> Tuple[float, float, Optional[int]]:
  """(elapsed wall seconds, user + system CPU seconds, scans explained) from the log of an
  explain run timed with `/usr/bin/time -v`."""
  wall = cpu = scans = None
  with open(log_path) as f:
    for line in f:
      key, _, value = line.strip().rpartition(": ")
      if key.startswith("Elapsed (wall clock) time"):
        parts = [float(p) for p in value.split(":")]
        wall = sum(p * 60 ** (len(parts) - 1 - i) for i, p in enumerate(parts))
      elif key in ("User time (seconds)", "System time (seconds)"):
        cpu = (cpu or 0.0) + float(value)
      elif line.startswith("explained "):
        scans = int(line.split()[1])
  return wall, cpu, scans


def seeds_per_fold(counts: List[int]) -> str:
  """'2', or '5 or 6' where the folds' seed counts differ."""
  return " or ".join(str(c) for c in sorted(set(counts)))


def and_list(items: List[str]) -> str:
  items = list(items)
  return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def span(values, digits: int = 0) -> str:
  """'lo-hi' of values (one value when they round alike; 'lo to hi' when one is negative, so
  that a minus sign is not read as the dash)."""
  lo, hi = f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"
  return lo if lo == hi else f"{lo}{' to ' if '-' in lo + hi else '-'}{hi}"


def minutes(seconds: float) -> str:
  whole = int(round(seconds))
  return f"{whole // 60} min {whole % 60} s"


ROAD_VS_DELETION = f"{EXPLAIN}/subject07_b11_all_layers/cam_stats.json"   # v1, one scan


def results_road_vs_deletion(src: Sources) -> str:
  """Per layer class at dec0_conv1: removal areas with ROAD and with mean-fill deletion, each
  against its own random order (docs/results.md 3.2)."""
  m = src.json(ROAD_VS_DELETION)["mean"]["dec0_conv1"]
  rows = []
  for c, name in list(enumerate(LAYER_NAMES))[1:]:
    road, dele = m["road_morf_area"][c], m["deletion_area"][c]
    rows.append([name, f"{road:.3f}", f"{m['road_random_area'][c]:.3f}",
                 "yes" if road < m["road_random_area"][c] else "**no**", f"{dele:.3f}",
                 f"{m['random_deletion_area'][c]:.3f}",
                 "yes" if dele < m["random_deletion_area"][c] else "**no**"])
  return table(["layer", "ROAD MoRF", "ROAD random", "ROAD MoRF < random", "deletion (map order)",
                "deletion random", "deletion < random"], rows)


def faithful(src: Sources, rel: str, layer: str = "dec0_conv1") -> int:
  """faithful_classes of a layer in an explain run's cam_stats.json or a compare_cams.py output."""
  got = src.json(rel)
  if "summary" in got:
    return got["summary"][layer]["faithful_classes"]
  return got["methods"]["gradcam"]["layers"][layer]["faithful_classes"]


ROAD_SANITY = f"{CPU}/explain_pretrained/run_road_sanity_subject01.log"
OTHER_SCANS = (f"{CPU}/explain_pretrained/subject07_b11_all_layers/cam_stats.json",
               f"{CPU}/explain_pretrained/compare_cams_gradcam.json")


# ---------------------------------------------------------------- README.md


def readme_results(src: Sources) -> str:
  """The README's results headline: both protocols, the shipped ensemble and the campaign."""
  run = src.run(GPU, "paper_protocol", "random_split")
  n, m = run["native"], run["model_resolution_val"]
  d = m["global_dice_soft"]
  limit = src.json(f"{GPU}/runs/paper_protocol_random_split/config.json")["train"]["num_epochs"]
  return "\n".join([
      "* Paper protocol (`configs/segnet.py`, random 80/20 split of the 88 B-scans, trained in "
      f"{run['train_s']:.0f} s, early stopping at epoch {run['epochs']} of {limit}): pixel "
      f"accuracy {fmt(n['accuracy'])}, global Dice {fmt(n['global_dice_soft'])}, global IoU "
      f"{fmt(n['global_iou_soft'])} at native resolution; {fmt(m['accuracy'])} / {fmt(d)} / "
      f"{fmt(d / (2 - d))} on the 256 x 256 model input; the paper's Table 1: "
      f"{PAPER['accuracy']} / {PAPER['dice']} / {PAPER['iou']}.",
      "* Literature protocol (`configs/duke_gpu.py`, 4-fold subject-wise cross-validation, "
      "per-layer Dice from hard predictions, background excluded, native resolution): "
      + cv_summary(src) + ". Not on the same test scans as published results such as "
      "ReLayNet's (trained on subjects 1-5, tested on 6-10, both graders, fluid a class of its "
      "own; here subjects 1-8 only, grader 1, and a fluid pixel takes the layer around it or is "
      "not scored): docs/results.md section 2.",
      shipped_headline(src),
      campaign_headline(src)])


def seed0_fold_runs(t: Dict) -> Dict[str, List[Dict]]:
  """{recipe: the numbers of its 4 seed-0 fold runs} of a lever table's recipes that have all 4."""
  out = {}
  for name, r in t["recipes"].items():
    runs = [r["runs_detail"].get(f"fold{f}_seed0") for f in range(4)]
    if all(runs):
      out[name] = runs
  return out


def campaign_headline(src: Sources) -> str:
  """The README's line on the accuracy campaign: the best recipe over its 4 seed-0 fold models
  (either screen), its thin layers and boundary error, and the levers adopted."""
  machines = {CAMPAIGN: "this 2-core CPU", H200: "the H200"}
  dice, name, machine, runs, levers = max(
      ((np.mean([x["mean_layer_dice"] for x in runs]), name, machine, runs, levers)
       for levers, machine in machines.items()
       for name, runs in seed0_fold_runs(src.json(levers)).items()
       if src.json(levers)["recipes"][name]["kind"] != CURVE), key=lambda c: c[0])
  layer = {k: np.mean([x["layer_dice"][LAYER_NAMES.index(k) - 1] for x in runs])
           for k in ("INL", "OPL")}
  adopted = [f"`{n}` on {machine} ({r['mean_gain']:+.4f})" for levers, machine in machines.items()
             for n, r in src.json(levers)["recipes"].items() if r["adopted"]]
  return (f"* Accuracy campaign (4-fold cross-validation as above, order fix on; docs/results.md "
          f"sections 7-9): the best recipe so far over its 4 seed-0 fold models is `{name}` on "
          f"{machine}: mean layer Dice **{dice:.3f}**, "
          f"INL {layer['INL']:.3f}, OPL {layer['OPL']:.3f}, boundary error "
          f"{np.mean([x['boundary_mae_um'] for x in runs]):.1f} um"
          f"{fluid_column_clause(src, name, levers, runs)}. "
          f"Levers adopted (paired gain over the base above the seed noise): "
          f"{', '.join(adopted) or 'none'}.{not_shipped_clause(src, name)}{curve_clause(src)}"
          f"{validation_free_clause(src)}")


def not_shipped_clause(src: Sources, best: str) -> str:
  """Why the campaign's best recipe `best` is not pretrained/'s, where it is the H200 recipe
  that h200_ship_verdict does not ship; '' otherwise."""
  v = h200_ship_verdict(src)
  if v is None or v["best"] != best or v["ships"]:
    return ""
  return (f" `{best}` is not what pretrained/ ships: as a {len(v['n']['members'])}-member "
          f"ensemble it would cost {v['cost']:.1f} GFLOP per B-scan "
          f"({v['cost'] / v['previous']:.1f}x the first shipped model's) for "
          f"{v['gain']:+.4f} mean layer Dice over the shipped recipe's fold models on the same "
          "folds (different machines), and the issue allows more than 2x only for a gain above "
          "0.01 (section 8).")


def curve_clause(src: Sources) -> str:
  """' Learning curve (...): ...' for the campaign's complete learning curves, as section 11
  reads them (curve_step), or ''."""
  t, out = src.json(CAMPAIGN), ""
  for c in (c for c in t.get("comparisons", []) if c["kind"] == CURVE and c["complete"]):
    done, gaps, counts = curve_folds(src, t, c)
    step = curve_step(t, c, gaps, counts)
    out += (f" Learning curve (docs/results.md section 11): trained on {counts[0]} instead of "
            f"{counts[1]} subjects per fold, `{c['against']}` loses "
            f"{statistics.mean(gaps):.4f} mean layer Dice over {len(done)} folds, " + (
                "within its seed noise." if step is None else
                f"beyond its seed noise; read forward, {CURVE_TO} subjects would add about "
                f"{step:+.4f} (an extrapolation, not a measurement)."))
  return out


def validation_free_clause(src: Sources) -> str:
  """' Trained without a validation pair (...): ...' for the campaign's complete comparisons of
  kind validation_free, as section 11 reads them (validation_free_verdict), or ''."""
  t, out, all8 = src.json(CAMPAIGN), "", stand_ins(shipped_members(src))
  for c in (c for c in t.get("comparisons", []) if c["kind"] == VALIDATION_FREE and c["complete"]):
    done = paired_seed0(t, c)[2]
    diff, noise, _, passed = validation_free_verdict(src, t, c,
                                                     [c["paired_gains"][r] for r in done])
    if noise is None:
      continue
    if all8 and not passed:
      raise ValueError(f"pretrained/ holds members trained on every subject, but section 11's "
                       f"reading of `{c['recipe']}` keeps the fold models")
    out += (f" Trained without a validation pair, as a model of all {CURVE_TO} subjects must "
            f"be, `{c['against']}` changes by {diff:+.4f} mean layer Dice on the same held-out "
            f"pairs ({len(done)} folds; tolerance -{noise:.4f}), so " + (
                f"pretrained/'s members are {'' if all8 else 'to be '}trained on all "
                f"{CURVE_TO} subjects" if passed else "pretrained/ keeps its fold models")
            + " (section 11).")
  return out


def fluid_column_clause(src: Sources, recipe: str, levers: str, runs: List[Dict]) -> str:
  """'; scored apart, X in the columns without fluid and Y in the Z% with fluid' for a recipe
  of the lever table `levers` whose 4 seed-0 fold runs (`runs`) carry eval's split, or whose
  fold models section 9 re-scored on the 2-core CPU (FLUID_COLUMN_MODELS); else ''."""
  runs_dir = {CAMPAIGN: CAMPAIGN_RUNS, H200: H200_RUNS}[levers]
  where = ""
  if all("by_fluid_columns" in r for r in runs):
    splits = [r["by_fluid_columns"] for r in runs]
  elif (recipe, runs_dir) in [(folder, d) for folder, _, d in FLUID_COLUMN_MODELS]:
    splits = fluid_column_splits(src, recipe)
    where = " (its fold models re-scored on the 2-core CPU)" if runs_dir == H200_RUNS else ""
  else:
    return ""
  wet, dry = (fluid_column_means(splits, g) for g in ("with_fluid", "without_fluid"))
  share = 100 * wet["columns"] / (wet["columns"] + dry["columns"])
  most = [BOUNDARY_NAMES[b] for b, s in enumerate(wet_error_shares(splits)[0]) if s > 0.5]
  return (f"; scored apart{where}, {dry['dice']:.3f} in the B-scan columns without "
          "grader-marked fluid "
          f"and {wet['dice']:.3f} in the {share:.0f}% with fluid"
          + (f", where most of its {and_list(most)} error lies" if most else ""))


def shipped_headline(src: Sources) -> str:
  """The README's line on the shipped ensemble: the held-out models' CV (its members', or the
  stand-ins' for members trained on every subject), the ensemble gain, fluid."""
  n = shipped_numbers(src)
  members, dice, fluid, gains = n["members"], n["dice"], n["fluid"], n["gains"]
  added = (([f"the cross-validated ensemble gain ({np.mean(gains):+.3f})"] if gains else [])
           + ([f"boundary smoothing ({n['smoothing']['ensemble_gain']:+.3f})"]
              if n["smoothing"] else []))
  if n["stand_ins"]:
    seeds = and_list([str(run_parts(m["run"])[2]) for m in members])
    who = (f"{len(members)} CPU models of the campaign's `{n['recipe']}` recipe, trained on all "
           f"{CURVE_TO} subjects, seeds {seeds}): the same recipe's fold models, trained without "
           f"a validation pair (`{n['cv_recipe']}`), score")
  else:
    who = (f"{len(members)} CPU fold models of the campaign's `{n['recipe']}` recipe): its "
           "members score")
  return (f"* Shipped ensemble (`pretrained/`, {who} mean layer Dice "
          f"{mean_sd(dice, 3)} on the subjects they never saw"
          + (f", fluid Dice {np.mean(fluid):.3f}" if fluid else "")
          + (f"; with {and_list(added)} about **{n['expected']:.3f}** expected" if added else "")
          + ("" if gains else " (its seed ensembles' averaging gain not yet measured)")
          + (" (the step to all 8 subjects is not counted: section 11)" if n["stand_ins"]
             else "") + ".")


def readme_predict_time(src: Sources) -> str:
  bench = src.json(f"{CPU}/predict_throughput_ensemble.json")
  runs, sizes = bench["runs"]["first"], sorted(bench["sizes"])
  loads = [runs[str(s)][k][0] for s in sizes for k in ("load_average_before",
                                                        "load_average_after")]
  members = len(src.json("pretrained/ensemble.json")["members"])
  cpu = bench["device"].get("processor")
  return (f"Shipped ensemble (`{bench['workdir']}/`, {members} members), 496 x 512 phantom "
          "B-scans, default figures, "
          f"2-core CPU{f' ({cpu})' if cpu else ''}, a fresh process per file: "
          + " and ".join(f"{s} B-scans {runs[str(s)]['wall_s']:.1f} s" for s in sizes)
          + f" in all, so {bench['summary']['first']['marginal_s_per_bscan_wall']:.2f} s per "
          f"further B-scan (load average {span(loads)}).")


def explain_cost_runs(src: Sources) -> List[Dict]:
  """Each benchmarks/explain_vs_predict.sh report in EXPLAIN_COST: its date, flags, what it
  explained ((method, layers) from the run's own cam_stats.json, or None in older reports), the
  CPU model and pairs farm-bench timed, its medians and the load averages before and after."""
  runs = []
  for name in sorted(os.listdir(src.path(EXPLAIN_COST))):
    if not name.endswith(".txt"):
      continue
    text = open(src.path(f"{EXPLAIN_COST}/{name}")).read()
    explained = re.search(r"^explained: (\S+) at (\S+)$", text, re.M)
    head = re.search(r"^farm-bench \d+ \| ([\d-]+), (\d+)c/[^|]*\| ([^|]*?) \|", text, re.M)
    runs.append({"date": head.group(1), "cpu": f"{head.group(3)} ({head.group(2)} cores)",
                 "pairs": int(re.search(r"^runs counted: A (\d+)", text, re.M).group(1)),
                 "flags": re.search(r"explain flags: ([^;]*);", text).group(1),
                 "explained": explained.groups() if explained else None,
                 "medians": farm_bench_medians(text),
                 "loads": re.findall(r"load average (?:before|after): ([\d.]+)", text)})
  return runs


def explain_cost_run(src: Sources, method: str, layers: str) -> Optional[Dict]:
  """The latest explain_vs_predict run (explain_cost_runs) that explained METHOD at LAYERS (its
  cam_stats.json says so, or its flags named both): on the members shipped that day."""
  for run in sorted(explain_cost_runs(src), key=lambda r: r["date"], reverse=True):
    if (run["explained"] == (method, layers) or
        run["flags"] == f"--cam_method={method} --cam_layers={layers}"):
      return run
  return None


def explain_cost_of(src: Sources, method: str, layers: str) -> Optional[Dict[str, float]]:
  """farm-bench medians of explain_cost_run."""
  run = explain_cost_run(src, method, layers)
  return run and run["medians"]


def readme_explain(src: Sources) -> str:
  """pretrained/'s CAM method and layer, the held-out evidence of its own members that chose
  it (cam_choice, where it must rank first by cam_ranking's rule), its cost, and the schema's
  default for a newly trained model."""
  method, layers = shipped_cam(src)
  folder = cam_choice(src)
  runs = heldout_runs(src, folder)
  evidence = heldout_evidence(runs)
  ranked = cam_ranking(evidence)
  key = ranked[0][0]
  if place_of(ranked, (method, layers)) != 1:
    raise ValueError(f"{folder}: pretrained/ explains with {method} at {layers}, not the "
                     f"first by the rule of docs/results.md §3.5 ({ranked[0][1]} at "
                     f"{ranked[0][2]})")
  found = evidence[method][layers]
  failing = [LAYER_NAMES[k] for k in range(1, 8) if not found["passed"][k]]
  cost = explain_cost_of(src, method, layers)
  if cost is None or cost["A/B wall"] > CAM_COST_BUDGET:
    raise ValueError(f"{EXPLAIN_COST}: no benchmarks/explain_vs_predict.sh run of {method} at "
                     f"{layers}" if cost is None else f"{method} at {layers} costs "
                     f"{cost['A/B wall']:.2f}x predict, over the budget of {CAM_COST_BUDGET}x")
  scans = len(next(iter(runs.values()))["scans"])
  new = default_cam()
  return (f"`pretrained/` explains with {METHOD_NAMES[method]} at `{layers}` (`explain.method`, "
          f"`explain.layers`, set in its `ensemble.json`), chosen on eyes "
          + (f"never seen by the fold models that stand for its members: each of the {len(runs)} "
             f"fold models of the members' recipe (each trained on the other subjects; "
             f"`{run_parts(held_out_models(src)[0]['run'])[0]}`) explained"
             if stand_ins(shipped_members(src)) else
             f"its members never saw: each of its {len(runs)} members explained")
          + f" {scans} B-scans of the 2 subjects it never trained on, and there it ranks first "
          f"of the {len(ranked)} candidates by the rule of docs/results.md §3.5 (most layer "
          f"classes whose map beats random removal, randomisation similarity at most "
          f"{SANITY_PASS}, at most {CAM_COST_BUDGET:g}x predict's time), beating random removal "
          f"(ROAD) for {key[0]} "
          f"of 7 layer classes with the areas pooled over the folds "
          f"({', '.join(str(c) for c in found['per_fold_faithful'])} of 7 per fold"
          + (f"; not {and_list(failing)}" if failing else "")
          + f"), randomisation similarity {found['similarity']:.3f}. On the shipped ensemble it "
          f"costs {cost['A/B wall']:.2f}x predict on 4 Duke B-scans (whole commands, 2-core "
          "CPU, `benchmarks/explain_vs_predict.sh`). "
          + ("A model you train explains with the same by default. " if new == (method, layers)
             else f"A model you train explains by default with {METHOD_NAMES[new[0]]} at "
             f"`{new[1]}`, the choice on fold models of `configs/duke_cpu.py` (no skip "
             "connections; same section). ")
          + f"`pretrained/cam_evidence.json` carries {evidence_of(src)}, and `cam_stats.md` "
          "says per class whether the map passed on it.")


def shipped_cam(src: Sources) -> Tuple[str, str]:
  """The CAM (method, layers joined by commas) pretrained/ explains with, read as explain
  reads it (serving.inference.stored_config: its settings over its first member's config)."""
  explain = stored_config(src.path("pretrained")).explain
  return explain.method, ",".join(explain.layers)


PADDING_RULE = ("the rule that class scores, maps and removal count the scan's pixels only, not "
                "the network's padding")


def counts_padding(runs: Dict[str, Dict]) -> bool:
  """Whether any held-out CAM run (heldout_runs) predates scoring the scan's pixels only."""
  return any(run.get("pixels") != SCAN_PIXELS for run in runs.values())


def evidence_of(src: Sources) -> str:
  """Whose held-out evidence pretrained/cam_evidence.json holds (its `source` folders)."""
  folders = {os.path.dirname(os.path.dirname(p))
             for p in src.json("pretrained/cam_evidence.json")["source"]}
  return ("its own members' evidence" if folders == {CAM_CHOICE} else
          "the evidence of the fold models that stand for its members"
          if folders == {CAM_EVIDENCE[1]} else
          "the base fold models' evidence" if folders == {HELDOUT} else
          "the evidence of " + ", ".join(sorted(folders)))


# ---------------------------------------------------------------- docs/results.md sentences


def results_seed_noise(src: Sources) -> str:
  gap = seed_gap(src)
  cpu, gpu, n = src.json(CAMPAIGN), src.json(H200), shipped_numbers(src)
  parts = [f"{t['seed_noise']:.4f} for its {where} base over {count(len(t['seed_gaps']), 'fold')}"
           for t, where in ((cpu, "CPU"), (gpu, "H200")) if t["seed_gaps"]]
  gaps, seeds = n["seed_gaps"]
  if gaps:
    parts.append(f"{np.mean(gaps):.4f} for "
                 + (f"`{n['cv_recipe']}`, the shipped members' stand-ins," if n["stand_ins"] else
                    f"the shipped recipe `{n['recipe']}`")
                 + f" over {count(len(gaps), 'fold')}"
                 + ("" if set(seeds) == {2} else
                    f" (every pair of its {seeds_per_fold(seeds)} seeds per fold)"))
  return ("Sections 1-5: one run per configuration and fold (seed 0), except one repeat with "
          f"seed 1 on the CPU (section 5), which moved the mean layer Dice by {gap:.3f}: "
          f"differences below about {gap:.2f} Dice are within run-to-run noise there."
          + (" The accuracy campaign (sections 7-8) measured its own seed noise, the mean "
             "|difference| of two seeds' mean layer Dice (seeds 0 and 1 unless said): "
             f"{and_list(parts)}." if parts else ""))


def results_paper_iou_gap(src: Sources) -> str:
  ours = src.run(GPU, "paper_protocol", "random_split")["native"]["class_iou"]
  gaps = [PAPER_IOU[k] - ours[k] for k in range(1, 8)]
  where = "below the paper's on every layer" if min(gaps) > 0 else "from the paper's"
  return (f"The layer IoUs, which do not have that dilution, are {min(gaps):.2f}-"
          f"{max(gaps):.2f} {where}.")


def results_gpu_ablations_noise(src: Sources) -> str:
  verdict = seed_noise_verdict(src, list(ablation_deltas(src, GPU).values()), "in this table")
  return (f"On that fold two seeds of the CPU configuration differ by {seed_gap(src):.3f} mean "
          f"layer Dice, {verdict}, so none of these fold-0 differences is evidence either way.")


def results_cam_localisation(src: Sources) -> str:
  s = src.json(f"{GPU}/explain_paper/cam_stats.json")["mean"]["dec0_conv1"]
  mass = [100 * s["mass_in_region"][k] for k in range(1, 8)]
  ratio = [s["mass_in_region"][k] / s["area_share"][k] for k in range(1, 8)]
  return (f"Localisation: each layer's map puts {span(mass)}% of its mass "
          f"inside that layer's true region, {span(ratio)} times the "
          "region's share of the image.")


def results_cam_pretrained_summary(src: Sources) -> str:
  stats = src.json(f"{EXPLAIN}/cam_stats.json")
  layer = next(iter(stats["summary"]))
  summary, m = stats["summary"][layer], stats["mean"][layer]
  cascade = np.mean(np.asarray(stats["sanity"][layer]["cascade"], float), axis=0)[1:]
  failing = [k for k in range(1, 8) if not m["road_morf_area"][k] < m["road_random_area"][k]]
  gap = [abs(m["road_morf_area"][k] - m["road_random_area"][k]) for k in failing]
  counts = [summary["faithful_classes"]] + [faithful(src, f, layer) for f in OTHER_SCANS]
  sane = summary["randomisation_similarity"] <= 0.5
  met = summary["faithful_classes"] >= 6
  return (f"`summary`: `faithful_classes` **{summary['faithful_classes']}** of 7 ("
          + and_list([LAYER_NAMES[k] for k in failing]) + " do not beat random here), "
          f"`randomisation_similarity` **{summary['randomisation_similarity']:.3f}** (the mean "
          f"cascade correlations of the 7 layer classes are {cascade.min():.2f} to "
          f"{cascade.max():.2f}). The sanity target (<= 0.5) is {'met' if sane else '**not** met'}; "
          f"the faithfulness target (6 of 7) is {'met' if met else '**not** met'} on these "
          f"{len(stats['per_scan'])} scans, while the same layer reached {counts[1]} of 7 on "
          f"subject_07_b11 (3.2) and {counts[2]} of 7 on subject_08_b28 (3.3): with one to four "
          f"scans per estimate the count moves by {max(counts) - min(counts)} classes between "
          "scans" + (f", and the ROAD areas of the failing classes sit within {min(gap):.2f}-"
                     f"{max(gap):.2f} of random." if failing else "."))


def results_explain_time(src: Sources) -> str:
  t = src.json(f"{EXPLAIN}/time_explain_subject01.json")
  wall, cpu, scans = wall_clock_s(src.path(ROAD_SANITY))
  return (f"Time, idle 2-core machine (load average {t['load_average'][0]:.1f}): the default "
          f"(maps and statistics only) costs {t['explain_wall_s']:.3f} s per scan against "
          f"{t['predict_wall_s']:.3f} s for the prediction forward pass, a ratio of "
          f"**{t['ratio_wall']:.2f}** in wall time ({t['ratio_cpu']:.2f} in CPU time), median of "
          f"{t['rounds'] * t['scans']} alternated runs in one process "
          "(`time_explain_subject01.json`). With `--cam_faithfulness=road --cam_sanity` the "
          f"{scans} scans took **{minutes(wall)} of wall time** including start-up and "
          f"compilation ({minutes(cpu)} of CPU time; `run_road_sanity_subject01.log`, with "
          "`/usr/bin/time`).")


CROP = f"{CPU}/levers"     # the first lever plan's crop recipe (configs/duke_cpu_fast.py)


def crop_scores(src: Sources, run: str) -> Dict:
  """Mean layer Dice (raw, topology-fixed), per-layer Dice and ILM/BM error of a crop-recipe
  run, from the plan's results.json (its --mode=eval scores, `native`) or eval's metrics.json."""
  name, _, key = run.partition("_fold")
  scored = src.json(f"{CROP}/results.json").get(f"lever_{name}", {}).get(f"fold{key}")
  if scored is not None:
    return native_scores(scored["native"])
  m = src.json(f"{CROP}/{run}_metrics.json")
  return {"mean": m["raw"]["literature"]["mean_layer_dice"],
          "fixed": m["topology"]["literature"]["mean_layer_dice"],
          "layers": m["raw"]["literature"]["layer_dice"], "mae": m["raw"]["geometry"]["mae_um"]}


def native_scores(n: Dict) -> Dict:
  """crop_scores' keys from a results.json entry's `native` scores."""
  return {"mean": n["mean_layer_dice"], "fixed": n["topology"]["mean_layer_dice"],
          "layers": n["layer_dice"], "mae": n["boundary_mae_um"]}


def crop_row(what: str, scores: Dict, log: List[Dict[str, str]]) -> List[str]:
  """A row of results_crop_recipe: the run, its epoch seconds (sum, range) and crop_scores."""
  secs = [float(r["seconds"]) for r in log]
  return [what, f"{sum(secs):.0f} ({min(secs):.0f}-{max(secs):.0f})", fmt(scores["mean"], 3),
          fmt(scores["fixed"], 3), " ".join(f"{v:.3f}" for v in scores["layers"]),
          f"{scores['mae'][0]:.1f} / {scores['mae'][-1]:.1f}"]


def results_crop_recipe(src: Sources) -> str:
  """The crop recipe's runs beside the full-width 40-epoch run, its speed and the flip check."""
  rows = [crop_row(what, crop_scores(src, run), src.log(f"{CROP}/{log}_log.csv"))
          for run, log, what in (
              ("base_fold0_seed0", "lever_base_fold0_seed0", "24 epochs, crops, fold 0"),
              ("base_fold1_seed0", "lever_base_fold1_seed0", "24 epochs, crops, fold 1"),
              ("fast40_fold0_seed0", "fast40_fold0_seed0", "40 epochs, crops, fold 0"))]
  rows.append(crop_row("40 epochs, full width (`configs/duke_cpu.py`), fold 0",
                       native_scores(src.run(CPU, "duke_cpu", "fold0")["native"]),
                       src.log(f"{CPU}/duke_cpu_fold0_log.csv")))
  speed, flip = src.json(f"{CPU}/crop_speed.json"), src.json(
      f"{CROP}/lever_base_fold0_seed0_flip_ensemble_metrics.json")
  med, load = speed["median_s"], speed["loadavg_before"] + speed["loadavg_after"]
  u = flip["uncertainty"]
  within = [b["rho"] for b in u["vs_boundary_error"]["per_boundary"]]
  return "\n".join([
      table(["run (seed 0)", "epoch s, sum (range)", "mean layer Dice", "topology-fixed",
             "layers (" + ", ".join(LAYER_NAMES[1:]) + ")", "ILM / BM MAE (um)"], rows), "",
      f"* Speed (`crop_speed.json`, {speed['rounds']} interleaved rounds, load average "
      f"{min(load):.0f}-{max(load):.0f}): a training step (batch {speed['batch_size']}) "
      f"{med['full_width']:.1f} s at full width ({speed['input_shape'][0]} x "
      f"{speed['input_shape'][1]}) against {med['crop_256']:.1f} s on the crop (ratio "
      f"{speed['crop_over_full_step_ratio']:.2f}); an evaluation batch of "
      f"{speed['eval_batch_size']} full-width scans {med['eval_batch_full_width']:.1f} s.",
      f"* The 24-epoch fold-0 model with flip averaging (`scripts/eval_ensemble.py`, one member, "
      f"two views): mean layer Dice {flip['raw']['literature']['mean_layer_dice']:.3f}, expected "
      f"calibration error {flip['calibration']['ece']:.3f} ({len(flip['calibration']['count'])} "
      f"bins of top-class confidence over all labelled pixels), {u['flagged_columns']} of "
      f"{u['columns']} columns flagged at over {u['threshold_um']} um of boundary sd between the "
      f"views; Spearman's rho of that sd with the boundary error "
      f"{u['vs_boundary_error']['pooled']['rho']:.2f} pooled over the 8 boundaries, "
      f"{span(within, 2)} within each."])


def results_cpu_run(src: Sources) -> str:
  epochs, wall = cpu_wall(src, "duke_cpu")
  rows = len(src.log(f"{CPU}/duke_cpu_fold0_log.csv"))
  return (f"{rows} epochs, {epochs:.0f} s of epoch time (sum of the `seconds` column of its log"
          + ("; its wall time was not recorded" if wall is None else f"; {wall:.0f} s wall time")
          + "; the machine was shared with other jobs for most of it).")


def results_cpu_reading(src: Sources) -> str:
  """The reading of section 5's tables, from the CPU runs (and the GPU fold 0)."""
  cpu, gpu, gap = ablation_deltas(src, CPU), ablation_deltas(src, GPU), seed_gap(src)
  seed_max, seed_layer, beyond = layer_changes_beyond_seeds(src)
  smaller = all(abs(d) < gap for d in list(cpu.values()) + list(gpu.values()))
  nfl = {n: src.run(CPU, n, "fold0")["native"]["layer_dice"][0]
         for n in ("duke_cpu", "duke_cpu_seed1", "duke_cpu_resize_256")}
  mae = {n: src.run(CPU, n, "fold0")["native"]["boundary_mae_um"][1] for n in nfl}
  side = lambda d: f"{abs(d):.3f} {'below' if d < 0 else 'above'}"
  signs = []
  for label, name in (("Transposed conv", "transpose_upsampling"),
                      ("skip concatenation", "skip_concat")):
    c, g = cpu[f"duke_cpu_{name}"], gpu[name]
    signs.append((label, side(c), side(g), np.sign(c) == np.sign(g), max(abs(c), abs(g)) < gap))
  same, inside = all(s[3] for s in signs), all(s[4] for s in signs)
  median = {n: float(np.median([float(r["seconds"])
                                for r in src.log(f"{CPU}/{n}_fold0_log.csv")]))
            for n, _, _ in CPU_RUNS if fold0_dice(src, CPU, n) is not None}
  tu = [float(r["seconds"]) for r in src.log(f"{CPU}/duke_cpu_transpose_upsampling_fold0_log.csv")]
  slowest = max(median, key=median.get) == "duke_cpu_transpose_upsampling"
  return "\n".join([
      f"* Seed noise: seed 1 scores {gap:.4f} below seed 0 on the same fold and data (per layer "
      f"up to {seed_max:.3f}, {seed_layer}). Every mean-Dice difference from an ablation on one "
      "fold, here and on the GPU (section 2), is "
      + ("smaller than that, so none of them ranks the variants." if smaller else
         "not smaller than that everywhere: see the tables."),
      "* Per layer, the changes larger than any difference between the seeds: "
      + ("; ".join(f"{label}, {layer} {change:+.3f}" for label, layer, change in beyond) or "none")
      + f". The NFL scores {nfl['duke_cpu']:.3f} ({nfl['duke_cpu_seed1']:.3f} with seed 1) at "
      f"native resolution against {nfl['duke_cpu_resize_256']:.3f} after the 256 x 256 resize, "
      f"with the NFL/GCL boundary error rising from {mae['duke_cpu']:.1f} um "
      f"({mae['duke_cpu_seed1']:.1f}) to {mae['duke_cpu_resize_256']:.1f} um. Resizing halves the "
      "horizontal sampling (500-548 columns to 256) and stretches 216 rows to 256. One fold, so "
      "a pointer, not a result.",
      f"* {signs[0][0]} was {signs[0][1]} index unpooling here and {signs[0][2]} on the GPU at "
      f"the wider configuration; {signs[1][0]} {signs[1][1]} and {signs[1][2]}. "
      + ("The same sign at both configurations" if same else "Different signs")
      + (", each within the seed spread: worth the other folds, not a conclusion."
         if inside else ", not all within the seed spread."),
      "* Training time on the 2 cores: the resized input has 256 x 256 pixels against 224 x 560 "
      f"(the widest scan, padded) natively: median {median['duke_cpu_resize_256']:.0f} s per "
      f"epoch against {median['duke_cpu_seed1']:.0f} s (seed-1 run). Transposed-conv "
      f"upsampling: median {median['duke_cpu_transpose_upsampling']:.0f} s per epoch "
      f"({min(tu):.0f}-{max(tu):.0f} s; part of that run shared the cores with a test-suite "
      "run)" + (", the slowest variant on this CPU backend; not profiled further."
                if slowest else ".")
      + f" Skip concatenation: median {median['duke_cpu_skip_concat']:.0f} s per epoch."])


# ---------------------------------------------------------------- docs/performance.md


def performance_geometry_position_sd(src: Sources) -> str:
  """The cost of the position sd in predict's geometry (benchmarks/geometry_cost_ratio.py)."""
  r = src.json(f"{CPU}/geometry_cost_position_sd.json")
  return (f"Since 2026-12-06 predict's geometry also gives each boundary's position sd "
          f"(`boundary_position_sd_um`): {r['new_s_per_scan']:.4f} s against "
          f"{r['old_s_per_scan']:.4f} s per scan of 496 x 512 before it ({r['new_over_old']:.3f}x; "
          f"commit {r['new_commit']} against {r['old_commit']}, smoothing sd "
          f"{r['smooth_sd_columns']:g} columns, medians of {r['repeats']} in turn in one process, "
          f"{r['cpus']}-core CPU, load {r['load_average'][0]:.2f}; "
          "`benchmarks/geometry_cost_ratio.py`, outputs asserted equal).")


def performance_predict_targets(src: Sources) -> str:
  """What predict_throughput means against issue 20's targets (0.2 s per B-scan with the
  default figures, 0.15 s without, +300 MB for 90 more scans)."""
  cur = src.json(f"{CPU}/predict_throughput.json")
  old = src.json(f"{CPU}/predict_throughput_baseline.json")["summary"]["legacy"]
  s, alone = cur["summary"], cur["network_alone"]
  one = alone["by_batch"]["1"]
  torch = src.json(f"{CPU}/torch_forward_w32_224x512.json")["runs"][0]
  growth = max(v["peak_rss_growth_mb"] for v in s.values())
  more = max(cur["sizes"]) - min(cur["sizes"])
  first, none = s["first"]["marginal_s_per_bscan_wall"], s["none"]["marginal_s_per_bscan_wall"]
  return (f"Peak memory grows by at most {growth:.0f} MB for {more} more scans (the issue's "
          f"bound: +300 MB; the old code: +{old['peak_rss_growth_mb']:.0f} MB). With the default "
          f"figures a B-scan costs {first:.3f} s, {'under' if first < 0.2 else 'over'} the 0.2 s "
          f"target. With `--figures=none` ({none:.3f} s) the 0.15 s target is "
          f"{'met' if none <= 0.15 else '**not met**'}: the network alone takes "
          f"{one['s_per_scan']:.3f} s per B-scan on these 2 cores ({alone['conv_gflop_per_scan']:.1f}"
          f" GFLOP of convolutions per B-scan, {one['conv_gflop_per_s']:.0f} GFLOP/s), and PyTorch "
          f"{torch['torch'].split('+')[0]}'s forward pass of the same network on the same input "
          f"took {torch['forward_per_image_s']:.3f} s per B-scan "
          "(`docs/results/cpu_2core/torch_forward_w32_224x512.json`)"
          + (f": the network alone uses {one['s_per_scan'] / 0.15:.0%} of the target, so it needs a "
             "smaller model or a faster device, not less host work." if none > 0.15 else "."))


def performance_gpu_paper_training(src: Sources) -> str:
  run = src.run(GPU, "paper_protocol", "random_split")
  limit = src.json(f"{GPU}/runs/paper_protocol_random_split/config.json")["train"]["num_epochs"]
  return ("Full paper training on the Duke data (`configs/segnet.py`, 70 training scans, early "
          f"stopping at epoch {run['epochs']} of {limit}, validation every epoch, checkpoints): "
          f"{run['train_s']:.0f} s wall time.")


def performance_compile_cache(src: Sources) -> str:
  c = src.json(f"{CPU}/compile_cache.json")
  widths = c["overrides"]["model.widths"]
  load = c["load_average"]
  return (f"On the 2-core machine the small-width CPU model's train step ({widths[0]}.."
          f"{max(widths)}, batch {c['batch']}) took {c['uncached_compile_s']:.1f} s to compile in "
          f"a fresh process with an empty cache and {c['cached_compile_s']:.1f} s in the next "
          "fresh process (`benchmarks/measure_compile_cache.py`, "
          "`docs/results/cpu_2core/compile_cache.json`, measured while other jobs ran: load "
          f"average {min(load):.0f}-{max(load):.0f}).")


def performance_cpu_layer_rewrites(src: Sources) -> str:
  ab = {k: src.json(f"{CPU}/ab_{k}.json") for k in ("conv_channel_sum_paper_b4",
                                                      "conv_channel_sum_w16_b8",
                                                      "channel_sum_paper_b4", "conv_paper_b4")}
  both = ab["conv_channel_sum_paper_b4"]
  return ("Together, timed alternately in one process against the same step with both undone "
          f"(`benchmarks/ab_layers.py --plain=conv,channel_sum`, {both['rounds']} rounds, idle): "
          f"plain / rewritten step time {both['plain_over_fast']:.2f} at the paper widths "
          f"(batch {both['batch']}) and {ab['conv_channel_sum_w16_b8']['plain_over_fast']:.2f} at "
          f"16..128 (batch {ab['conv_channel_sum_w16_b8']['batch']}) "
          "(`docs/results/cpu_2core/ab_conv_channel_sum_*.json`); undone one at a time at the "
          f"paper widths, {ab['channel_sum_paper_b4']['plain_over_fast']:.2f} for the sums and "
          f"{ab['conv_paper_b4']['plain_over_fast']:.2f} for the convolutions "
          "(`ab_channel_sum_paper_b4.json`, `ab_conv_paper_b4.json`).")


def performance_cpu_profile(src: Sources) -> str:
  before, after = (src.json(f"{CPU}/profile_paper_unpool_b4_{k}.json") for k in ("before", "after"))
  share = lambda family: (f"from {100 * before['families'][family]:.0f}% to "
                          f"{100 * after['families'][family]:.0f}%")
  return ("XLA's per-operation profile of the default row's step (`benchmarks/profile_step.py`, "
          f"paper widths, batch {before['batch']}; the trace does not see the convolutions "
          f"themselves) went from {before['op_ms_per_step']:.0f} to {after['op_ms_per_step']:.0f} "
          "ms of summed non-convolution time per step "
          "(`docs/results/cpu_2core/profile_paper_unpool_b4_{before,after}.json`): reductions "
          f"{share('reduce')} of it, transposes {share('transpose/copy')}.")


def performance_conv_grads(src: Sources) -> str:
  got = src.json(f"{CPU}/conv_grads.json")
  passes = ("forward", "input_grad", "weight_grad")
  rows, slower = [], {p: 0 for p in passes}
  for r in got["rows"]:
    n, h, w, c_in, c_out = r["shape_nhwc_in_out"]
    for p in passes:
      slower[p] += r["octseg_jax_s"][p] > r["pytorch_s"][p]
    rate = lambda times: [f"{r['gflop_per_pass'] / times[p]:.0f}" for p in passes]
    rows.append([f"{n} x {h} x {w}, {c_in} -> {c_out} channels", f"{r['gflop_per_pass']:.1f}"]
                + rate(r["octseg_jax_s"]) + rate(r["pytorch_s"]))
  header = ["3x3 convolution (batch x height x width)", "GFLOP per pass", "octseg_jax forward",
            "octseg_jax input gradient", "octseg_jax weight gradient",
            f"PyTorch {got['torch'].split('+')[0]} forward", "PyTorch input gradient",
            "PyTorch weight gradient"]
  names = ("forward", "input gradient", "weight gradient")
  return (table(header, rows) + "\n\nGFLOP/s, best of repeats per pass. octseg_jax's pass is "
          "slower than PyTorch's: " + "; ".join(f"{label} at {slower[p]} of {len(rows)} shapes"
                                                for p, label in zip(passes, names)) + ".")


def performance_cpu_allocator(src: Sources) -> str:
  runs = {k: src.json(f"{CPU}/allocator/compare_paper_unpool_b4_glibc_{k}.json")
          for k in ("default", "keep_freed")}
  torch = [runs[k]["pytorch"]["train_step_s"] for k in ("default", "keep_freed")]
  ours = [runs[k]["octseg_jax"]["train_step"]["median_s"] for k in ("default", "keep_freed")]
  return (f"PyTorch's step fell from {torch[0]:.2f} to {torch[1]:.2f} s and ours from "
          f"{ours[0]:.2f} to {ours[1]:.2f} s (both pay page faults for their large per-step "
          "buffers; PyTorch " + ("far more" if torch[0] - torch[1] > ours[0] - ours[1] else "less")
          + "): under that setting PyTorch would " + ("lead" if torch[1] < ours[1] else "trail")
          + " the default row.")


# ---------------------------------------------------------------- pretrained/README.md


def previous_training(src: Sources) -> str:
  run = src.run(GPU, "pretrained_all_subjects", "all")
  epochs = src.json(f"{PREVIOUS}/config.json")["train"]["num_epochs"]
  median = float(np.median([r["best_epoch"] for r in src.cv()]))
  how = ("is the median best epoch of the 4 cross-validation folds "
         f"({median:.1f}, truncated to an integer)" if int(median) == epochs else
         f"differs from the median best epoch of the 4 cross-validation folds ({median:.1f})")
  return (f"Training: {epochs} epochs, which {how}, on one NVIDIA H200 in {run['train_s']:.0f} s "
          "wall time.")


# ---------------------------------------------------------------- the shipped ensemble


def shipped_members(src: Sources) -> List[Dict]:
  """Per member of pretrained/: its folder (`workdir`), campaign run (recipe/foldF_seedS, from
  the ensemble's `sources`), split, training log, best epoch and run record (run.json)."""
  spec = src.json("pretrained/ensemble.json")
  out = []
  for member, source in zip(spec["members"], spec["sources"]):
    run, folder = run_of_workdir(source), f"pretrained/{member}"
    out.append({"member": member, "run": run, "workdir": folder,
                "split": src.json(f"{folder}/split.json"),
                "epochs": len(src.log(f"{folder}/log.csv")),
                "best": max(int(e) for e in os.listdir(src.path(f"{folder}/best"))),
                "record": src.json(f"{CAMPAIGN_RUNS}/{run}/{RUN_RECORD}")})
  return out


def stand_ins(members: List[Dict]) -> bool:
  """Whether pretrained/'s members (shipped_members) trained on every subject (fold ALL), so that
  other fold models stand for them on held-out eyes (held_out_models)."""
  return any(run_parts(m["run"])[1] == ALL for m in members)


def held_out_models(src: Sources) -> List[Dict]:
  """The fold models whose scores on eyes they never saw stand for pretrained/'s: its members
  themselves where each holds a fold out, or, where they trained on every subject (fold ALL),
  the seed-0 fold models of the recipe CAMPAIGN_PLAN names as theirs to cross-validate
  (`cross_validation`: trained as they were, on each fold's other subjects). Each is a
  shipped_members record (`workdir` as the evidence names the model: pretrained/MEMBER, or
  where a stand-in trained) with `metrics` (its run's eval) and `scored_on` (its subjects)."""
  members = shipped_members(src)
  if not stand_ins(members):
    return [m | held_out_scores(src, m["run"]) for m in members]
  recipe = run_parts(members[0]["run"])[0]
  cv = src.json(CAMPAIGN_PLAN)["recipes"][recipe].get("cross_validation")
  if {run_parts(m["run"])[1] for m in members} != {ALL} or cv is None:
    raise ValueError(f"pretrained/ensemble.json: members of `{recipe}` trained on every subject "
                     f"need a `cross_validation` recipe in {CAMPAIGN_PLAN}, and no fold members "
                     "beside them")
  return cross_validation_models(src, cv)


def cross_validation_models(src: Sources, cv: str) -> List[Dict]:
  """held_out_models' records of the seed-0 fold runs of recipe `cv` (member None)."""
  out = []
  for name in sorted(os.listdir(src.path(f"{CAMPAIGN_RUNS}/{cv}"))):
    if name.startswith("fold") and name.endswith("_seed0"):
      run = f"{cv}/{name}"
      scores = held_out_scores(src, run)
      out.append({"member": None, "run": run, "workdir": scores["metrics"]["workdir"],
                  "split": src.json(f"{CAMPAIGN_RUNS}/{run}/split.json"),
                  "epochs": len(src.log(f"{CAMPAIGN_RUNS}/{run}/log.csv")),
                  "best": scores["metrics"]["checkpoint_epoch"],
                  "record": src.json(f"{CAMPAIGN_RUNS}/{run}/{RUN_RECORD}")} | scores)
  return out


def held_out_scores(src: Sources, run: str) -> Dict:
  """A fold run's held-out eval (`metrics`) and the subjects it scored (`scored_on`)."""
  metrics = src.json(f"{CAMPAIGN_RUNS}/{run}/{METRICS}")
  return {"metrics": metrics, "scored_on": scored_subjects(metrics)}


def scored_subjects(metrics: Dict) -> List[int]:
  """The subjects an eval's metrics.json scored (its per-subject scores), in order."""
  return sorted(int(s) for s in metrics["per_subject_mean_layer_dice"])


def model_name(workdir) -> str:
  """One name per model: a campaign run's (RECIPE/foldF_seedS) wherever its model was read from,
  the runner's workdir (STATE/runs/RECIPE/RUN) or the results folder that keeps it
  (CAMPAIGN_RUNS/RECIPE/RUN); any other folder's normalised path."""
  path = os.path.normpath(str(workdir))
  parts = path.split(os.sep)
  campaign_folder = ("/".join(parts[-5:-2]) == CAMPAIGN_RUNS or parts[-3:-2] == ["runs"]) and (
      re.fullmatch(r"(fold\d+|all)_seed\d+", parts[-1]) is not None)
  return run_of_workdir(path) if campaign_folder else path


def model_set(workdirs) -> List[str]:
  """Workdir paths as one comparable set of models (model_name), sorted."""
  return sorted(model_name(w) for w in workdirs)


def seed_ensembles(src: Sources) -> List[Dict]:
  """Every scored ensemble of ENSEMBLES: its folder name, ensemble.json, member runs
  (recipe/foldF_seedS), the members' and its own metrics, the members' and its mean layer Dice
  and the gain (its Dice minus the members' mean)."""
  out = []
  for d in sorted(os.listdir(src.path(ENSEMBLES))):
    if not os.path.exists(src.path(f"{ENSEMBLES}/{d}/metrics.json")):
      continue
    spec = src.json(f"{ENSEMBLES}/{d}/ensemble.json")
    runs = [run_of_workdir(m) for m in spec["members"]]
    members = [src.json(f"{CAMPAIGN_RUNS}/{r}/{METRICS}") for r in runs]
    ens = src.json(f"{ENSEMBLES}/{d}/metrics.json")
    single = [m["topology"]["literature"]["mean_layer_dice"] for m in members]
    dice = ens["topology"]["literature"]["mean_layer_dice"]
    out.append({"name": d, "spec": spec, "runs": runs, "members": members, "ensemble": ens,
                "single": single, "dice": dice, "gain": dice - float(np.mean(single))})
  return out


def seed_ensemble_folder(size: int) -> str:
  """Where seed_ensembles.sh writes the stand-ins' seed ensembles of `size` seeds."""
  return VALIDATION_FREE_SETTINGS + ("" if size == 2 else f"/members{size}")


def stand_in_seed_ensembles(src: Sources, models: List[Dict], sd: float,
                            size: int = 2) -> List[Dict]:
  """The stand-ins' seed ensembles of `size` members (seed_ensemble_folder, seed_ensembles.sh),
  verified: for each held-out model of fold F with an ensemble_foldF eval, ensembles/foldF holds
  `size` seeds of the model's recipe and fold (for 2: seeds 0 and 1 on fold 0; 1 and 2 on folds
  whose seed-0 model was lost before models were kept: configs/campaign.json), without flip, and
  ensemble_foldF and each member's seedS_foldF scored them on the model's held-out subjects,
  each smoothed with `sd` (the shipped setting), at one commit. Each: fold, ensemble and
  members' metrics (`ensemble`, `members`) and the members' `seeds`."""
  folder, out = seed_ensemble_folder(size), []
  for m in models:
    fold = run_parts(m["run"])[1]
    if not src.exists(f"{folder}/ensemble_fold{fold}/metrics.json"):
      continue
    spec = src.json(f"{folder}/ensembles/fold{fold}/ensemble.json")
    members = [model_name(w) for w in spec["members"]]
    seeds = seed_set(model_name(m["workdir"]), members)
    runs = [f"ensemble_fold{fold}"] + [f"seed{s}_fold{fold}" for s in seeds]
    metrics = [src.json(f"{folder}/{r}/metrics.json") for r in runs]
    commits = {src.json(f"{folder}/{r}/eval_provenance.json")["git"]["commit"] for r in runs}
    if (len(seeds) != size or spec.get("flip", True) or len(commits) != 1
        or [model_name(x["workdir"]) for x in metrics[1:]] != members
        or any(x["topology"]["smooth_sd_columns"] != sd for x in metrics)
        or any(scored_subjects(x) != m["scored_on"] for x in metrics)):
      raise ValueError(f"{folder}/ensemble_fold{fold}: not a seed ensemble of {size} seeds of "
                       f"{m['run']}'s recipe and fold, without flip, all scored at one commit on "
                       f"its held-out subjects with smoothing sd {sd:g}; rerun seed_ensembles.sh")
    out.append({"fold": fold, "seeds": seeds, "ensemble": metrics[0], "members": metrics[1:]})
  return out


def ensemble_seeds_text(ensembles: List[Dict]) -> str:
  """Which seeds seed ensembles (stand_in_seed_ensembles) hold, as the text names them: 'seeds 0
  and 1 of one fold', or per fold where they differ, in fold order ('the seeds of one fold:
  seeds 0 and 1 on fold 0, seeds 1 and 2 on folds 1, 2 and 3'; consecutive runs of 3 or more
  seeds as 'seeds 2-5')."""
  folds = {}
  for e in ensembles:
    folds.setdefault(e["seeds"], []).append(e["fold"])
  if not folds:
    return ""

  def named(seeds):
    consecutive = len(seeds) > 2 and list(seeds) == list(range(seeds[0], seeds[-1] + 1))
    return f"seeds {seeds[0]}-{seeds[-1]}" if consecutive else f"seeds {and_list(map(str, seeds))}"
  if len(folds) == 1:
    return f"{named(next(iter(folds)))} of one fold"
  return "the seeds of one fold: " + ", ".join(
      f"{named(seeds)} on fold{'s' if len(f) > 1 else ''} {and_list(map(str, f))}"
      for seeds, f in sorted(folds.items(), key=lambda item: min(item[1])))


def seed_set(model: str, members: List[str]) -> Tuple[int, ...]:
  """The seeds, ascending, of `members` when they are 2 or more seeds of `model`'s recipe and
  fold (RECIPE/foldF_seedS names, model_name), listed in that order; () otherwise."""
  stem = model.rsplit("_seed", 1)[0]
  seeds = [m[len(stem) + len("_seed"):] for m in members if m.startswith(stem + "_seed")]
  if len(seeds) < 2 or len(seeds) != len(members) or not all(x.isdigit() for x in seeds):
    return ()
  ints = tuple(map(int, seeds))
  return ints if all(a < b for a, b in zip(ints, ints[1:])) else ()


def ensemble_gains(ensembles: List[Dict]) -> List[float]:
  """The averaging gains of seed ensembles (stand_in_seed_ensembles): per fold, the ensemble's
  mean layer Dice minus its members' mean; [] before any is scored."""
  def dice(m):
    return m["topology"]["literature"]["mean_layer_dice"]
  return [dice(e["ensemble"]) - float(np.mean([dice(x) for x in e["members"]]))
          for e in ensembles]


def shipped_size_ensembles(src: Sources, models: List[Dict], sd: float,
                           size: int) -> List[Dict]:
  """The stand-ins' seed ensembles that read pretrained/'s averaging gain: those of its own
  `size` once they cover every held-out model, else the 2-member ones."""
  own = stand_in_seed_ensembles(src, models, sd, size) if size > 2 else []
  return own if len(own) == len(models) else stand_in_seed_ensembles(src, models, sd)


def shipped_gain(src: Sources, recipe: str, flip: bool) -> Tuple[List[float], List[str],
                                                                 List[Dict]]:
  """The cross-validated gains of the seed ensembles of `recipe` with the shipped flip setting,
  the recipes they come from, and each one's fold and seeds (as ensemble_seeds_text reads
  them). While `recipe` has none, those of the recipes that train the same network (the same
  `model` in their resolved config.json), named as such."""
  ensembles = [e for e in seed_ensembles(src) if e["spec"]["flip"] == flip and len(e["runs"]) == 2
               and len({run_parts(r)[:2] for r in e["runs"]}) == 1]   # two seeds of one fold
  used = [e for e in ensembles if run_parts(e["runs"][0])[0] == recipe]
  if not used:
    from octseg_jax.serving.workdir import load_config   # fills the defaults of older configs
    def model(run):
      return load_config(src.path(f"{CAMPAIGN_RUNS}/{run}")).model.to_dict()
    used = [e for e in ensembles if model(e["runs"][0]) == model(f"{recipe}/fold0_seed0")]
  pairs = [{"fold": run_parts(e["runs"][0])[1],
            "seeds": tuple(sorted(run_parts(r)[2] for r in e["runs"]))} for e in used]
  return ([e["gain"] for e in used], sorted({run_parts(e["runs"][0])[0] for e in used}), pairs)


def pretrained_members(src: Sources) -> str:
  """The members: campaign run, commit, subjects trained on, epochs, and for fold members the
  subjects held out and their scores there."""
  members = shipped_members(src)
  if stand_ins(members):
    return table(["member", "campaign run", "commit", "trained on subjects",
                  "kept epoch (lowest loss on its training scans) of the epochs run"],
                 [[f"`{m['member']}`", m["run"], m["record"]["commit"][:7],
                   ", ".join(map(str, m["split"]["train"]["subjects"])),
                   f"{m['best']} of {m['epochs']}"] for m in members])
  rows = []
  for m in held_out_models(src):
    lit = m["metrics"]["topology"]["literature"]
    fluid = m["metrics"].get("heads", {}).get("fluid", {}).get("dice")
    rows.append([f"`{m['member']}`", m["run"], m["record"]["commit"][:7],
                 ", ".join(map(str, m["split"]["train"]["subjects"])),
                 ", ".join(map(str, m["scored_on"])),
                 f"{m['best']} of {m['epochs']}", fmt(lit["mean_layer_dice"], 4),
                 "-" if fluid is None else fmt(fluid, 3)])
  return table(["member", "campaign run", "commit", "trained on subjects",
                "held out (scored on)", "best epoch", "held-out mean layer Dice",
                "held-out fluid Dice"], rows)


def shipped_numbers(src: Sources) -> Dict:
  """The shipped ensemble's members, ensemble.json, recipe, its held-out models
  (held_out_models) with their mean layer and fluid Dice, and the cross-validated gains of its
  recipe's seed ensembles."""
  members, spec, models = (shipped_members(src), src.json("pretrained/ensemble.json"),
                           held_out_models(src))
  recipe, cv_recipe = run_parts(members[0]["run"])[0], run_parts(models[0]["run"])[0]
  sd = float(spec.get("settings", {}).get("predict.smooth_sd_columns", 0.0))
  ensembles = (shipped_size_ensembles(src, models, sd, len(members)) if stand_ins(members)
               else [])
  gains, gain_recipes, pairs = ((ensemble_gains(ensembles), [cv_recipe], ensembles)
                                if stand_ins(members) else shipped_gain(src, recipe, spec["flip"]))
  ensemble_seeds = ensemble_seeds_text(pairs)
  dice = [m["metrics"]["topology"]["literature"]["mean_layer_dice"] for m in models]
  smoothing = shipped_smoothing(src, spec, models, stand_ins(members))
  if stand_ins(members):
    check_stand_ins(src, recipe, cv_recipe)
  return {"members": members, "models": models, "spec": spec, "recipe": recipe, "dice": dice,
          "stand_ins": stand_ins(members), "cv_recipe": cv_recipe,
          "fluid": [m["metrics"]["heads"]["fluid"]["dice"] for m in models
                    if "fluid" in m["metrics"].get("heads", {})],
          "gains": gains, "gain_recipes": gain_recipes, "smoothing": smoothing,
          "ensemble_seeds": ensemble_seeds,
          "ensemble_size": len(pairs[0]["seeds"]) if pairs else 2,
          "seed_gaps": seed_pair_gaps(src.json(CAMPAIGN)["recipes"].get(cv_recipe, {})
                                      .get("runs_detail", {})),
          "expected": float(np.mean(dice) + (np.mean(gains) if gains else 0.0)
                            + (smoothing["ensemble_gain"] if smoothing else 0.0))}


def smoothing_sets(src: Sources, name: str) -> Dict[str, Dict]:
  """scripts/smoothing_cv.py's sets in SMOOTHING/NAME.json."""
  return src.json(f"{SMOOTHING}/{name}")["sets"]


SMOOTHING_EVIDENCE = (f"{SMOOTHING}/cv.json",          # scripts/smoothing_cv.py outputs, each
                      f"{VALIDATION_FREE_SETTINGS}/smoothing_cv.json")   # set a fold model set
SCORE_DRIFT = 5e-4   # |a stand-in's unsmoothed score in its smoothing run - its committed one|
                     # allowed: 132dc96 moved one band of subject 2 after the noval runs (their
                     # fold 0: 1.8e-4); the members' own must agree to 1e-9


def evidence_set(src: Sources, files, models: List[Dict], workdirs) -> Optional[Tuple[str, Dict]]:
  """(file, set) of the one set among the `sets` of `files` (those committed) whose fold models,
  workdirs(set), are exactly `models` (held_out_models, by workdir); None where none is, and
  ValueError where several are (which one chose the setting would be a guess)."""
  shipped = model_set(m["workdir"] for m in models)
  found = [(f, st) for f in files if src.exists(f) for st in src.json(f)["sets"].values()
           if model_set(workdirs(st)) == shipped]
  if len(found) > 1:
    raise ValueError(f"{' and '.join(sorted({f for f, _ in found}))}: {len(found)} sets of "
                     "pretrained/'s held-out models; keep one")
  return found[0] if found else None


def smoothing_set_models(st: Dict) -> List[str]:
  """The fold models (workdirs) a set of scripts/smoothing_cv.py scored."""
  return [f["workdir"] for f in st["folds"].values()]


def flag_set_models(st: Dict) -> List[str]:
  """The fold models (workdirs) whose evals a set of scripts/flag_threshold_cv.py read."""
  return list(st["workdirs"].values())


def shipped_smoothing(src: Sources, spec: Dict, models: List[Dict],
                      others: bool = False) -> Optional[Dict]:
  """The shipped ensemble's predict.smooth_sd_columns (ensemble.json settings) with its
  cross-validated gains, each fold's sd chosen on the other folds: on its held-out models (the
  SMOOTHING_EVIDENCE set of exactly held_out_models, whose unsmoothed scores must be their
  committed ones, within SCORE_DRIFT where `others` (stand-ins) stand for the members; refused
  otherwise) and, for members that are their own held-out models, on 2-member ensembles that
  hold them (cv_pairs.json), the gain counted (for stand-ins, the averaging gain is read on
  smoothed outputs, so the models' own is counted). None when the setting is off."""
  sd = float(spec.get("settings", {}).get("predict.smooth_sd_columns", 0.0))
  if not sd:
    return None
  found = evidence_set(src, SMOOTHING_EVIDENCE, models,
                       smoothing_set_models)
  if found is None or found[1]["cv"]["chosen_sd"] != sd:
    raise ValueError(f"pretrained/ensemble.json smooths with sd {sd:g} columns, but "
                     f"{' or '.join(SMOOTHING_EVIDENCE)} has no cross-validation of its held-out "
                     "models choosing it")
  where, own = found
  scored = {model_name(f["workdir"]): f["by_sd"]["0"]["mean_layer_dice"]
            for f in own["folds"].values()}
  for m in models:
    name = model_name(m["workdir"])
    committed = m["metrics"]["topology"]["literature"]["mean_layer_dice"]
    if abs(scored[name] - committed) > (SCORE_DRIFT if others else 1e-9):
      raise ValueError(f"{where}: {name} scores {scored[name]:.4f} unsmoothed, not "
                       f"its committed {committed:.4f}; rerun the cross-validation")
  out = {"sd": sd, "member_gains": [v["gain"] for v in own["cv"]["per_fold"].values()],
         "member_sds": [v["sd"] for v in own["cv"]["per_fold"].values()], "pair_gains": []}
  if others:
    return out | {"pairs_share_folds": False, "ensemble_gain": own["cv"]["mean_gain"]}
  return out | pair_smoothing(src, models)


def pair_smoothing(src: Sources, models: List[Dict]) -> Dict:
  """The smoothing gains of SMOOTHING/cv_pairs.json's 2-member ensembles that hold one of
  `models`, their mean (`ensemble_gain`) and whether two of them share a fold."""
  shipped = set(model_set(m["workdir"] for m in models))
  pairs = [(f, st["cv"]["per_fold"][name])
           for st in smoothing_sets(src, "cv_pairs.json").values()
           for name, f in st["folds"].items()
           if any(model_name(m) in shipped for m in f["members"])]
  if not pairs:
    raise ValueError(f"{SMOOTHING}/cv_pairs.json: no ensemble holding pretrained's members")
  return {"pair_gains": [v["gain"] for _, v in pairs],
          "pairs_share_folds": len({tuple(f["subjects"]) for f, _ in pairs}) < len(pairs),
          "ensemble_gain": float(np.mean([v["gain"] for _, v in pairs]))}


UPSAMPLING = {"unpool": "pooling-index unpooling", "transpose": "transposed convolutions"}
LOSSES = {"hybrid": "hybrid loss CE + {dice_weight:g} (1 - Dice)",
          "weighted_hybrid": "ReLayNet's weighted loss (weighted CE + {dice_weight:g} (1 - Dice))"}


def pretrained_recipe(src: Sources) -> str:
  """The members' recipe: its campaign name, config file and options (CAMPAIGN_PLAN),
  and what the members' own config.json says they are."""
  n = shipped_numbers(src)
  recipe = src.json(CAMPAIGN_PLAN)["recipes"][n["recipe"]]
  args = [override_arg(k, v) for k, v in recipe.get("overrides", {}).items()]
  c = src.json(f"pretrained/{n['members'][0]['member']}/config.json")
  model, loss, train = c["model"], c["loss"], c["train"]
  net = (f"SegNet {'-'.join(map(str, model['widths']))} with "
         f"{UPSAMPLING.get(model['upsample'], model['upsample'])}"
         + (" and skip connections" if model["skip"] else "")
         + f", {model['kernel'][0]}x{model['kernel'][1]} kernels")
  objective = (LOSSES.get(loss["name"], f"loss `{loss['name']}`").format(**loss)
               + (" plus the fluid loss BCE + soft Dice" if model["fluid_head"] else ""))
  return ("* Members (`members/NAME`, listed in `ensemble.json` with the campaign folders they "
          f"were copied from): the campaign recipe `{n['recipe']}` (`{recipe['config']}`"
          + (f" with `{' '.join(args)}`" if args else "") + f": {net}, {objective}, "
          f"{train['optimizer'].capitalize()} with the {train['schedule']} schedule for up to "
          f"{train['num_epochs']} epochs (early stopping after "
          f"{train['early_stopping_patience']} epochs without a lower validation loss), "
          f"{c['data']['recipe']['band_height']}-row retina band at native resolution), "
          + members_trained(n) + " " + trained_where(n["members"]))


def members_trained(n: Dict) -> str:
  """pretrained_recipe's words on what each member trained on and how its epoch was kept."""
  seeds = ", ".join(str(s) for s in sorted({run_parts(m["run"])[2] for m in n["members"]}))
  if n["stand_ins"]:
    return (f"one model per seed ({seeds}), each trained on Duke DME subjects 1-8 (grader 1) "
            "with no validation pair: its schedule, early stopping and kept epoch read the loss "
            "on its training scans (table below).")
  return ("one model per subject-wise fold of Duke DME subjects 1-8 (grader 1), seed "
          f"{seeds}: each trained on the subjects of its other folds, keeping the checkpoint of "
          "its best epoch on its own held-out subjects (table below).")


def trained_where(members) -> str:
  """Where the members trained, from their campaign run.json (host and CPU count)."""
  machines = sorted({(m["record"]["host"], m["record"]["cpus"]) for m in members})
  return ("Trained on "
          + and_list([f"a {cpus}-core CPU (host `{host}`)" for host, cpus in machines]) + ".")


def pretrained_accuracy(src: Sources) -> str:
  """Expected accuracy on new eyes: a headline, then one bullet per reading it is built from
  (single-member cross-validation, the cross-validated gains) or that qualifies it."""
  n = shipped_numbers(src)
  trained = ", ".join(map(str, sorted({s for m in n["members"]
                                       for s in m["split"]["train"]["subjects"]})))
  head = (f"Expected mean layer Dice of this {len(n['members'])}-member ensemble on new eyes: "
          f"about **{n['expected']:.3f}**. This is an estimate, not a measurement, since together "
          f"its members trained on subjects {trained}. It adds the cross-validated gains below to "
          "the single-member cross-validation:")
  bullets = [single_member_cv(n), averaging_sentence(n), smoothing_sentence(n),
             more_subjects_sentence(src, n), trust_sentence(src, n),
             previous_on_same_folds(src, n["models"], n["expected"], n["smoothing"])]
  return bulleted(head, bullets)


def bulleted(head: str, parts: List[str]) -> str:
  """`head`, then one markdown bullet per non-empty part, stripped and capitalised (the parts
  may be sentences written to follow others)."""
  items = [p.strip() for p in parts if p.strip()]
  return head + "\n\n" + "\n".join(f"* {p[0].upper()}{p[1:]}" for p in items)


def single_member_cv(n: Dict) -> str:
  """pretrained_accuracy's first reading: its held-out models' layer, boundary and fluid
  scores."""
  models, dice, fluid = n["models"], n["dice"], n["fluid"]
  layers = np.mean([m["metrics"]["topology"]["literature"]["layer_dice"] for m in models], axis=0)
  mae = [statistics.mean(m["metrics"]["topology"]["geometry"]["mae_um"]) for m in models]
  held = "; ".join(", ".join(map(str, m["scored_on"])) for m in models)
  each = "folds" if n["stand_ins"] else "members"
  text = (f"Single-member cross-validation ({len(models)} of the 4 subject-wise folds of "
          f"subjects 1-8, held out: {held}; {held_out_whose(n)}; literature protocol, native "
          f"resolution, order fix on): mean layer Dice **{mean_sd(dice, 3)}** (population sd "
          f"over {len(models)} {'fold models' if n['stand_ins'] else 'members'}; {each} "
          + ", ".join(f"{v:.3f}" for v in dice) + f"); {layer_list(layers)}; boundary MAE "
          f"{mean_sd(mae, 1)} um")
  if fluid:
    text += (f"; fluid Dice (split, global) **{np.mean(fluid):.3f}** ({each} "
             + ", ".join(f"{v:.3f}" for v in fluid) + ")")
  return text + "."


def trust_sentence(src: Sources, n: Dict) -> str:
  """How far pretrained_accuracy's numbers can be trusted: its recipe was chosen on the same
  subjects, and whether the folds differ more than any gain it cites."""
  sm = n["smoothing"] or {"member_gains": [], "pair_gains": []}
  cited = n["gains"] + sm["member_gains"] + sm["pair_gains"]
  return (f"How far to trust these numbers: its recipe was chosen among the "
          f"{screened_recipes(src)} recipes the campaign screened (CPU and H200) by their scores "
          "on these same 8 subjects, and nothing here was scored on the untouched subjects 9 "
          "and 10, so these numbers lean optimistic"
          + (f"; the folds differ from each other more (sd {np.std(n['dice']):.3f}) than any "
             "gain above, so a new eye's score depends more on the eye than on these choices."
             if cited and np.std(n["dice"]) > max(cited) else "."))


def more_subjects_sentence(src: Sources, n: Dict) -> str:
  """For members trained on every subject, what the step from their stand-ins' training subjects
  to all of them may add: the learning curve's step that section 11's reading of the stand-ins'
  recipe used (stand_in_reading), not counted in the estimate; '' otherwise."""
  if not n["stand_ins"]:
    return ""
  step = stand_in_reading(src, n["cv_recipe"])[1]
  trained = sorted({len(m["split"]["train"]["subjects"]) for m in n["models"]})
  return (f"Not counted: the members trained on all {CURVE_TO} subjects, each fold model above "
          f"on {and_list([str(k) for k in trained])} subjects: the learning curve read forward to "
          f"{CURVE_TO} subjects adds about {step:+.4f} (docs/results.md section 11), an "
          "extrapolation, not a measurement.")


def stand_in_reading(src: Sources, cv_recipe: str) -> Tuple[bool, float]:
  """(whether section 11's reading of `cv_recipe`, a complete comparison of kind
  validation_free, passed; the learning curve's step it used): validation_free_verdict.
  (False, 0.0) while no complete reading of it exists."""
  t = src.json(CAMPAIGN)
  for c in t.get("comparisons", []):
    if c["kind"] == VALIDATION_FREE and c["recipe"] == cv_recipe and c["complete"]:
      _, _, step, passed = validation_free_verdict(
          src, t, c, [c["paired_gains"][r] for r in paired_seed0(t, c)[2]])
      return passed, step
  return False, 0.0


SPLIT_FIELDS = ("data.split", "data.subjects")   # what a recipe's stand-ins may set otherwise


def check_stand_ins(src: Sources, recipe: str, cv_recipe: str) -> None:
  """Refuses stand-ins (held_out_models) that are not the members' recipe trained without its
  validation pair (CAMPAIGN_PLAN: the same config, commit and overrides but SPLIT_FIELDS), or
  whose reading by section 11's rule has not passed (stand_in_reading)."""
  plan = src.json(CAMPAIGN_PLAN)["recipes"]
  def core(r):
    return (r.get("config"), r.get("commit"),
            {k: v for k, v in r.get("overrides", {}).items() if k not in SPLIT_FIELDS})
  if core(plan[recipe]) != core(plan[cv_recipe]):
    raise ValueError(f"{CAMPAIGN_PLAN}: `{cv_recipe}` is not `{recipe}` without its validation "
                     "pair (config, commit and overrides but data.split and data.subjects)")
  if not stand_in_reading(src, cv_recipe)[0]:
    raise ValueError(f"`{cv_recipe}`: no passed reading by section 11's rule, so its fold models "
                     f"cannot stand for `{recipe}`'s members")


def held_out_whose(n: Dict) -> str:
  """Whose scores pretrained_accuracy's cross-validation is (held_out_models)."""
  if not n["stand_ins"]:
    return ("each member scored on the subjects it never trained on, which also chose its best "
            "epoch")
  return (f"the seed-0 fold models of `{run_parts(n['models'][0]['run'])[0]}`, trained as the "
          "members were, with no validation pair, on the subjects of the other folds, each "
          "scored on the subjects it never trained on, which chose none of its epochs")


def seed_pair_gaps(runs_detail: Dict[str, Dict]) -> Tuple[List[float], List[int]]:
  """Per fold with 2 or more seeds, in fold order: the mean |difference| of the mean layer Dice
  over every pair of its seeds (with 2 seeds, |seed 0 - seed 1|, as campaign_table's seed_gaps),
  and how many seeds it has."""
  folds: Dict[int, List[float]] = {}
  for run, numbers in runs_detail.items():
    folds.setdefault(run_parts(f"r/{run}")[1], []).append(numbers["mean_layer_dice"])
  scored = [(f, d) for f, d in sorted(folds.items()) if len(d) > 1]
  return ([float(np.mean([abs(a - b) for i, a in enumerate(d) for b in d[i + 1:]]))
           for _, d in scored], [len(d) for _, d in scored])


def averaging_sentence(n: Dict) -> str:
  """The cross-validated gain of seed ensembles of the shipped recipe (or of recipes training
  the same network), with the shipped flip setting, and whether they are of its own size."""
  gains, (gaps, seeds) = n["gains"], n["seed_gaps"]
  if not gains:
    return "Averaging gain: none counted, since its seed ensembles are not scored yet."
  of = ("the same recipe" if n["gain_recipes"] == [n["recipe"]] else
        f"`{n['cv_recipe']}`, each ensemble and member smoothed as shipped" if n["stand_ins"] else
        "`" + "`, `".join(n["gain_recipes"]) + "` (the same network; this recipe's own seed "
        "ensembles are not scored yet)")
  return (f"Averaging gain: {n['ensemble_size']}-member seed ensembles ({n['ensemble_seeds']}) "
          f"of {of}, "
          f"{'with' if n['spec']['flip'] else 'without'} flip, scored by cross-validation, "
          f"gained {np.mean(gains):+.4f} mean layer Dice over their members "
          f"({count(len(gains), 'fold')}: " + ", ".join(f"{g:+.4f}" for g in gains) + ")"
          + ("" if not gaps else
             f"; the recipe's seed noise (mean |difference| of two seeds' Dice, over every pair "
             f"of {seeds_per_fold(seeds)} seeds of a fold) is {np.mean(gaps):.4f} "
             f"({count(len(gaps), 'fold')}: " + ", ".join(f"{g:.4f}" for g in gaps) + ")")
          + ("; ensembles of its own size (" + count(len(n["members"]), "member")
             + ") may gain more." if n["ensemble_size"] < len(n["members"]) else
             "; these are ensembles of its own size."))


def smoothing_sentence(n: Dict) -> str:
  """How the shipped smoothing (predict.smooth_sd_columns) was chosen and what it adds."""
  sm = n["smoothing"]
  if not sm:
    return ""
  text = ("Boundary smoothing: the ordered boundaries are smoothed along the B-scan (Gaussian, "
          f"sd {sm['sd']:g} columns: `settings` in `ensemble.json`, predict.smooth_sd_columns), "
          "the sd chosen by cross-validation (docs/results.md section "
          f"{11 if n['stand_ins'] else 10}): on each "
          f"{'fold model' if n['stand_ins'] else 'member'}'s own "
          "held-out subjects, with that fold's sd chosen on the other folds ("
          + ", ".join(f"{v:g}" for v in sm["member_sds"]) + f" columns), it gained "
          f"{np.mean(sm['member_gains']):+.4f} (" + ", ".join(f"{g:+.4f}" for g in
                                                             sm["member_gains"]) + ")")
  if n["stand_ins"]:
    return text + ("; it adds to the averaging gain, which was read with ensembles and "
                   "members smoothed alike, so the two do not overlap." if n["gains"] else ".")
  return (text + f"; on {len(sm['pair_gains'])} held-out 2-member ensembles of a member with "
          f"another recipe's fold model, {sm['ensemble_gain']:+.4f} (" +
          ", ".join(f"{g:+.4f}" for g in sm["pair_gains"])
          + ("; not independent where a fold appears twice with the same member"
             if sm["pairs_share_folds"] else "; one per fold")
          + "), the gain counted: averaging already steadies the boundaries, so a 4-member "
          "average may gain less.")


def previous_on_same_folds(src: Sources, members, expected: float, smoothing=None) -> str:
  """The first shipped model's recipe (v1: configs/duke_gpu.py, one model) on the same folds,
  scored with the order fix as the shipped members are (not smoothed: the smoothing's share of
  the difference is named)."""
  folds = [run_parts(m["run"])[1] for m in members]
  cv = src.cv()
  v1 = [cv[f]["native"]["topology"]["mean_layer_dice"] for f in folds]
  return ("Against the first shipped model: on the same folds its recipe (v1: "
          f"`configs/duke_gpu.py`, one SegNet 32..256, H200) scored {np.mean(v1):.3f} with the "
          "order fix, as here ("
          + ", ".join(f"{v:.3f}" for v in v1)
          + f"), {expected - np.mean(v1):+.4f} from it to this predictor's expected "
          f"{expected:.3f}"
          + (f" ({smoothing['ensemble_gain']:+.4f} of it the boundary smoothing, which that "
             "recipe's models could use too)" if smoothing else "")
          + "; this predictor adds the fluid output and the members' disagreement.")


def shipped_gflop(src: Sources):
  """(GFLOP per B-scan of the shipped ensemble, of one member, views, of the previous model)
  at the Duke input size of the lever table."""
  from octseg_jax.models import flops
  from octseg_jax.serving.workdir import load_config
  spec = src.json("pretrained/ensemble.json")
  per = [sum(flops.conv_flops(c, 1) for c in flops.model_convs(
      load_config(src.path(f"pretrained/{m}")).model, duke.MODEL_INPUT)) / 1e9
      for m in spec["members"]]
  previous = sum(flops.conv_flops(c, 1) for c in flops.model_convs(
      load_config(src.path(PREVIOUS)).model, duke.MODEL_INPUT)) / 1e9
  views = 2 if spec["flip"] else 1
  return views * sum(per), per[0], views * len(per), previous


def pretrained_cost(src: Sources) -> str:
  """Size and network cost of the shipped ensemble against the first shipped model (v1)."""
  total, one, views, previous = shipped_gflop(src)
  files = [os.path.join(d, f) for d, _, names in os.walk(src.path("pretrained/members"))
           for f in names if "/best/" in os.path.join(d, f)]
  size = sum(os.path.getsize(f) for f in files)
  return (f"Network cost: {views} forward passes of {one:.2f} GFLOP = **{total:.1f} GFLOP of "
          f"convolutions per B-scan** at a {duke.MODEL_INPUT[0]} x {duke.MODEL_INPUT[1]} model "
          f"input, {total / previous:.2f}x the first shipped model's (v1, one network) "
          f"{previous:.1f} GFLOP at the same input. `--config.predict.members=1` runs the first "
          f"member alone "
          f"({one:.2f} GFLOP). Checkpoints (parameters and BatchNorm statistics only): "
          f"{size:,} bytes in {len(files)} files ({size / 1e6:.2f} MB).")


def pretrained_uncertainty(src: Sources) -> str:
  """How well the shipped recipe's uncertain flag finds its errors on held-out eyes, and how
  well its confidence is calibrated: the recipe's seed ensembles scored as pretrained/ predicts
  (SHIPPED_CALIBRATION: the same smoothing, flip and flag threshold)."""
  members = shipped_members(src)
  recipe = run_parts(members[0]["run"])[0]
  if stand_ins(members):
    return stand_in_uncertainty(src)
  if len(members) > 1 and shipped_ensemble_flag(src)[0] != uncertainty.SPREAD:
    raise ValueError("pretrained/: its ensemble of fold models flags by the position sd, which "
                     "the documents read only for members trained on every subject (docs/"
                     "results.md section 11); set its predict.uncertain_um")
  found = shipped_calibration_runs(src)
  if not found:
    return f"No held-out measurement of the uncertainty of `{recipe}` as shipped yet."
  seeds = sorted({seed for _, _, run_seeds in found for seed in run_seeds})
  return (uncertainty_sentence([m["calibration"] for _, m, _ in found], recipe,
                               [str(s) for s in seeds]) + ensemble_flag_recall(src)
          + single_member_flag(src))


def stand_in_uncertainty(src: Sources) -> str:
  """pretrained_uncertainty for members trained on every subject: the calibration of their
  stand-ins' seed ensembles (flag_evidence: those of its own size once every fold has one;
  scored with the shipped smoothing on the pairs they never saw), the ensemble's flag and the
  single member's."""
  members, models = shipped_members(src), held_out_models(src)
  size, ensembles, _ = flag_evidence(src)
  runs = [e["ensemble"]["calibration"] for e in ensembles]
  if not runs:
    return (f"No held-out measurement of the uncertainty of its stand-ins' seed ensembles yet "
            f"(`{VALIDATION_FREE_SETTINGS}/seed_ensembles.sh`).")
  recipe = run_parts(models[0]["run"])[0]
  return bulleted(
      f"How its uncertainty relates to its errors on eyes the models never saw "
      f"({count(len(runs), 'fold')}: {size}-member seed ensembles "
      f"({ensemble_seeds_text(ensembles)}) "
      f"of `{recipe}`, scored by eval with the shipped smoothing on the pair neither trained on; "
      "docs/results.md section 11):",
      [calibration_words(runs),
       stand_in_ensemble_flag(src, len(members)) if len(members) > 1 else "",
       single_member_flag(src)])


def shipped_uncertain_um(src: Sources) -> float:
  """predict.uncertain_um as pretrained/ reads it (stored_config: its ensemble.json settings over
  its first member's config.json): the threshold of the ensemble's spread flag, which fold-model
  members flag by (pretrained_uncertainty); shipped_ensemble_flag gives the flag itself."""
  return float(stored_config(src.path("pretrained")).predict.uncertain_um)


def calibration_seed_ensembles(src: Sources) -> List[Tuple[str, Dict, Dict, List]]:
  """(name, metrics.json, ensemble.json, members' run_parts) of each SHIPPED_CALIBRATION run:
  seed ensembles of fold models scored with the smoothing, flip and flag threshold of the fold
  models pretrained/ held when they ran (docs/results.md section 7)."""
  found = []
  for name, m in eval_runs(src, SHIPPED_CALIBRATION).items():
    spec = src.json(f"{ENSEMBLES}/{os.path.basename(m['workdir'])}/ensemble.json")
    found.append((name, m, spec, [run_parts(run_of_workdir(w)) for w in spec["members"]]))
  return found


def shipped_calibration_runs(src: Sources) -> List[Tuple[str, Dict, List[int]]]:
  """(name, metrics.json, member seeds) of the SHIPPED_CALIBRATION runs that are seed ensembles
  of pretrained/'s recipe scored as it predicts (its smoothing, flip and flag threshold)."""
  first = shipped_members(src)[0]
  recipe, shipped = run_parts(first["run"])[0], src.json("pretrained/ensemble.json")
  as_shipped = (shipped["settings"]["predict.smooth_sd_columns"], shipped["flip"],
                shipped_uncertain_um(src))
  return [(name, m, sorted({r[2] for r in members}))
          for name, m, spec, members in calibration_seed_ensembles(src)
          if {r[0] for r in members} == {recipe} and as_shipped == (
              m["topology"]["smooth_sd_columns"], spec["flip"],
              m["calibration"]["uncertain_columns"]["threshold_um"])]


def uncertainty_sentence(runs: List[Dict], recipe: str, seeds: List[str]) -> str:
  """pretrained_uncertainty's text from eval's calibration records of `runs`."""
  flags = [c["uncertain_columns"] for c in runs]
  share = [f["flagged"] / f["columns"] * 100 for f in flags]
  return (f"How well the flag finds errors on eyes the models never saw ({count(len(runs), 'fold')}"
          f": the seed {' and '.join(seeds)} models of `{recipe}` averaged, scored by eval as "
          f"shipped; docs/results.md section 7): {span(share, 1)}% of the measured columns are "
          f"flagged (spread over {flags[0]['threshold_um']:g} um), with a mean absolute boundary "
          f"error of {span([f['mae_flagged_um'] for f in flags], 1)} um in them against "
          f"{span([f['mae_unflagged_um'] for f in flags], 1)} um in the others; "
          + calibration_words(runs))


def calibration_words(runs: List[Dict]) -> str:
  """How weakly the members' spread ranks the errors and how well the confidence is calibrated,
  from eval's calibration records of `runs`."""
  return ("the spread ranks single errors only weakly (Spearman's rho "
          f"{span([c['uncertainty_vs_error']['pooled']['rho'] for c in runs], 2)} over column "
          "and boundary). Expected calibration error of the top-class confidence (15 bins): "
          f"{span([c['band']['ece'] for c in runs], 4)} over the pixels of the model's input "
          f"band, {span([c['ece'] for c in runs], 4)} over all labelled pixels (the rows outside "
          "the band count as certain background).")


def results_campaign_levers(src: Sources) -> str:
  """The CPU lever screen (CAMPAIGN_PLAN)."""
  return lever_block(src.json(CAMPAIGN))


def results_h200_levers(src: Sources) -> str:
  """The H200 screen (H200_PLAN), and how its base agrees with the CPU base."""
  return lever_block(src.json(H200)) + " " + device_agreement(src) + " " + h200_ship_text(src)


def results_h200_layers(src: Sources) -> str:
  return results_campaign_layers(src, H200)


def results_h200_boundaries(src: Sources) -> str:
  return results_campaign_boundaries(src, H200)


def device_agreement(src: Sources) -> str:
  """The same recipe (the base) on the two machines, run for run on the same fold and seed."""
  gpu = src.json(H200)["recipes"]["base"]["runs_detail"]
  cpu = src.json(CAMPAIGN)["recipes"]["base"]["runs_detail"]
  diffs = {k: gpu[k]["mean_layer_dice"] - cpu[k]["mean_layer_dice"] for k in gpu if k in cpu}
  listed = ", ".join(f"{k.replace('fold', 'f').replace('_seed', 's')} {v:+.4f}"
                     for k, v in diffs.items())
  gap, noise = np.mean(np.abs(list(diffs.values()))), src.json(CAMPAIGN)["seed_noise"]
  return (f"The base on the H200 minus the base on the CPU, same fold and seed: {listed} "
          f"(mean absolute difference {gap:.4f}, {'below' if gap < noise else 'above'} the CPU "
          f"seed noise {noise:.4f}"
          + ("; the two machines do not train to the same weights)." if gap > 0 else ")."))


def h200_ship_verdict(src: Sources) -> Optional[Dict]:
  """Whether the best H200 recipe's fold models would replace pretrained/: its seed-0 4-fold mean
  against the shipped members' on the same folds, and the issue's cost rule (at most 2x the
  first shipped model's GFLOP unless the gain over the cheaper choice exceeds 0.01); None while
  no H200 recipe has 4 seed-0 folds."""
  t = src.json(H200)
  full = {name: [x["mean_layer_dice"] for x in runs]
          for name, runs in seed0_fold_runs(t).items() if name != "base"}
  if not full:
    return None
  best = max(full, key=lambda name: np.mean(full[name]))
  n, (shipped_gflop_now, _, _, previous) = shipped_numbers(src), shipped_gflop(src)
  gain = float(np.mean(full[best]) - np.mean(n["dice"]))
  views = 2 if n["spec"]["flip"] else 1
  cost = views * len(n["members"]) * t["recipes"][best]["gflop_per_bscan"]
  return {"best": best, "dice": float(np.mean(full[best])), "gain": gain, "cost": cost,
          "previous": previous, "now": shipped_gflop_now, "n": n,
          "ships": gain > 0 and (cost <= 2 * previous or gain > 0.01)}


def h200_ship_text(src: Sources) -> str:
  """h200_ship_verdict in words, for section 8."""
  v = h200_ship_verdict(src)
  if v is None:
    return ""
  best, gain, cost, previous, n = v["best"], v["gain"], v["cost"], v["previous"], v["n"]
  shipped_gflop_now, ships = v["now"], v["ships"]
  return (f"The best of them, {best}, scores {v['dice']:.4f} over its 4 seed-0 fold "
          f"models, {gain:+.4f} against the "
          + ("shipped members' stand-ins'" if n["stand_ins"] else "shipped members'")
          + f" {np.mean(n['dice']):.4f} on the same folds and seed (different machines). As a "
          f"{len(n['members'])}-member ensemble it would cost {cost:.1f} GFLOP per B-scan ({cost / previous:.1f}x the first shipped "
          f"model's {previous:.1f}; pretrained/ now {shipped_gflop_now:.1f}); the issue allows more "
          f"than 2x only for a gain above 0.01 over the cheaper choice (and none without a "
          f"gain), so it "
          f"{'would replace' if ships else 'does not replace'} pretrained/.")


def lever_block(t: Dict) -> str:
  """A lever screen: runs, mean layer Dice, paired gains over the base, boundary MAE."""
  rows = []
  for name, r in t["recipes"].items():
    if not r["runs"]:
      continue
    gains = ", ".join(f"{k.replace('fold', 'f').replace('_seed', 's')} {v:+.4f}"
                      for k, v in r["paired_gains"].items())
    rows.append([name, str(r["runs"]), fmt(r["mean_layer_dice"], 4), gains or "-",
                 fmt(r["mean_gain"], 4) if r["mean_gain"] is not None else "-",
                 fmt(r["boundary_mae_um"], 2), f"{r['gflop_per_bscan']:.2f}",
                 fmt(r["train_s_per_run"] / 60, 1), "yes" if r["adopted"] else "no"])
  return (table(["recipe", "runs", "mean layer Dice", "paired gains vs base (fold, seed)",
                 "mean gain", "boundary MAE (um)", "GFLOP / B-scan", "train min / run",
                 "adopted"], rows) +
          f"\n\nSeed noise of the base (mean over folds of |seed 0 - seed 1|): "
          f"{fmt(t['seed_noise'], 4)}. Adopted: the recipe has run every (fold, seed) pair where "
          f"the base has both seeds, and its mean paired gain exceeds the seed noise. What each "
          f"recipe changes (its options to main.py): " +
          "; ".join(f"{name} `{' '.join(r['override_args'])}`" + fold_options(r)
                    for name, r in t["recipes"].items() if r["runs"] and r["overrides"]) +
          ". " + comparisons_text(t) + selection_text(t))


def fold_options(recipe: Dict) -> str:
  """', fold F `...`' per fold: a recipe's fold_overrides as options to main.py, or ''."""
  per_fold = recipe.get("fold_override_args", {})
  return "".join(f", fold {f} `{' '.join(args)}`" for f, args in sorted(per_fold.items()))


def comparisons_text(t: Dict) -> str:
  """The candidates paired with the recipe they would replace (in pretrained/, or as the
  candidate for it; not the base), as the plan's `comparisons` say why."""
  out = ""
  for c in t.get("comparisons", []):
    if not c["paired_gains"]:
      continue
    gains = ", ".join(f"{k.replace('fold', 'f').replace('_seed', 's')} {v:+.4f}"
                      for k, v in c["paired_gains"].items())
    verdict = (READING_VERDICT[c["kind"]] if c["kind"] in READINGS and c["complete"]
               else f"so it replaces {c['against']}" if c["replaces"] else
               f"so it does not replace {c['against']} (not above the seed noise)"
               if c["complete"] else
               "undecided until it has run folds " + ", ".join(map(str, c["folds_needed"])))
    out += (f"Paired reading: {c['recipe']} with {c['against']} ({c['why']}) "
            f"gains {gains}, mean **{c['mean_gain']:+.4f}** against the seed noise "
            f"{t['seed_noise']:.4f}, {verdict}. ")
  return out


def selection_text(t: Dict) -> str:
  """How much choosing each run's epoch on its validation subjects (lowest validation loss) can
  flatter the scores: the logged Dice at the chosen epoch minus at the last one (not for a
  recipe without a validation pair, which chose on its training scans)."""
  runs = [r for recipe in t["recipes"].values() if recipe["kind"] != VALIDATION_FREE
          for r in recipe["runs_detail"].values()]
  gains = [r["selection_gain"] for r in runs]
  kept_last = sum(r["selected_epoch"] == r["last_epoch"] for r in runs)
  late = sum(r["last_epoch"] - r["selected_epoch"] <= 2 for r in runs)
  return (f"Epoch selection: each run keeps the last epoch that lowered its validation loss "
          f"(by more than train.min_delta) on the fold's validation subjects, the same subjects "
          f"it is scored on. {kept_last} of {len(runs)} runs kept their last epoch and {late} of "
          f"{len(runs)} one of their last 3 epochs. In the logs (model resolution) the kept epoch's mean layer Dice "
          f"differs from the last epoch's by {np.mean(gains):+.4f} on average over the "
          f"{len(runs)} runs ({min(gains):+.4f} to {max(gains):+.4f}).")


def screened_recipes(src: Sources) -> int:
  """How many recipes with a committed run the campaign chose pretrained/'s among (CPU and
  H200): the levers (not a learning curve or a recipe without a validation pair, which read
  the data or a protocol and are never candidates)."""
  return sum(r["runs"] > 0 and r["kind"] == LEVER for levers in (CAMPAIGN, H200)
             for r in src.json(levers)["recipes"].values())


def screened_runs(src: Sources, levers: str = CAMPAIGN):
  """(recipe, [its runs' numbers]) of every recipe with at least one committed run."""
  return [(name, list(r["runs_detail"].values()))
          for name, r in src.json(levers)["recipes"].items() if r["runs_detail"]]


def results_campaign_layers(src: Sources, levers: str = CAMPAIGN) -> str:
  """Per-layer Dice of each screened recipe, averaged over its runs."""
  rows = []
  for name, runs in screened_runs(src, levers):
    per_layer = np.mean([run["layer_dice"] for run in runs], axis=0)
    rows.append([name, str(len(runs))] + [fmt(v, 3) for v in per_layer])
  return table(["recipe", "runs"] + list(LAYER_NAMES[1:]), rows)


def results_campaign_boundaries(src: Sources, levers: str = CAMPAIGN) -> str:
  """Per-boundary error of each screened recipe, averaged over its runs: MAE (signed bias)."""
  def row(label, runs, prefix):
    mae = np.mean([run[f"{prefix}_mae_um_each"] for run in runs], axis=0)
    bias = np.mean([run[f"{prefix}_signed_um_each"] for run in runs], axis=0)
    return [label, str(len(runs))] + [f"{m:.2f} ({b:+.2f})" for m, b in zip(mae, bias)]

  rows = []
  for name, runs in screened_runs(src, levers):
    rows.append(row(name, runs, "boundary"))
    head = [run for run in runs if "boundary_head_mae_um_each" in run]
    if head:
      rows.append(row(f"{name} (the head's own boundaries)", head, "boundary_head"))
  return table(["recipe", "runs"] + list(BOUNDARY_NAMES), rows)


def results_campaign_fluid(src: Sources) -> str:
  """Split-level fluid Dice of every run with the fluid head, by fold and seed, and per recipe
  the mean over its folds of the seed means."""
  t = src.json(CAMPAIGN)
  rows, by_recipe = [], {}
  for name, r in t["recipes"].items():
    for run, numbers in r["runs_detail"].items():
      if "fluid_dice" in numbers:
        rows.append([name, run, fmt(numbers["fluid_dice"], 3), fmt(numbers["mean_layer_dice"], 4)])
        by_recipe.setdefault(name, {}).setdefault(run.split("_")[0], []).append(
            numbers["fluid_dice"])
  lines = []
  for name, by_fold in by_recipe.items():
    folds = {f: float(np.mean(v)) for f, v in sorted(by_fold.items())}
    each = ", ".join(f"{f} {v:.3f}" for f, v in folds.items())
    lines.append(f"{name}: {each}" + (f"; mean over these {len(folds)} folds "
                                      f"**{np.mean(list(folds.values())):.3f}**"
                                      if len(folds) > 1 else " (one fold so far)"))
  return (table(["recipe", "run", "fluid Dice (split, global)", "mean layer Dice"], rows) +
          "\n\nFluid Dice averaged over the seeds of each fold, per recipe: " +
          "; ".join(lines) + ".")


def results_campaign_ensembles(src: Sources) -> str:
  """The ensemble gain by cross-validation: each fold's seed-0 and seed-1 members of a recipe,
  averaged with or without flip, against the mean of the two members alone (same validation
  subjects)."""
  rows, gains, dice_of = [], {True: [], False: []}, {}
  for e in seed_ensembles(src):
    flip, ens = e["spec"]["flip"], e["ensemble"]
    gains[flip].append(e["gain"])
    dice_of[(tuple(e["runs"]), flip)] = e["dice"]
    fluid = [m.get("heads", {}).get("fluid", {}).get("dice") for m in e["members"] + [ens]]
    rows.append([e["name"], " + ".join(r.split("/")[1] for r in e["runs"]), str(flip).lower(),
                 ", ".join(fmt(v, 4) for v in e["single"]), fmt(e["dice"], 4),
                 f"{e['gain']:+.4f}", "-" if None in fluid else
                 f"{fmt(float(np.mean(fluid[:-1])), 3)} -> {fmt(fluid[-1], 3)}",
                 fmt(ens["calibration"]["ece"], 4),
                 fmt(ens["calibration"]["uncertainty_vs_error"]["pooled"]["rho"], 3)])
  return (table(["ensemble", "members", "flip", "each member's mean layer Dice", "ensemble",
                 "gain", "fluid Dice (members' mean -> ensemble)", "ECE",
                 "rho(boundary sd, error)"], rows) +
          "\n\n" + summary_of_ensembles(gains, dice_of))


def summary_of_ensembles(gains, dice_of) -> str:
  """The mean gain with and without flip, and the flip's own paired share."""
  flip = [dice_of[(r, True)] - dice_of[(r, False)] for r, f in dice_of if f and (r, False) in dice_of]
  parts = [f"{'with' if f else 'without'} flip ({'2 views' if f else '1 view'} per member) "
           f"**{np.mean(g):+.4f}** over {len(g)} folds x recipes" for f, g in gains.items() if g]
  return ("Mean ensemble gain in mean layer Dice over the members alone: " + "; ".join(parts) +
          (f". The flip's own share, paired: {np.mean(flip):+.4f} ({len(flip)} pairs)" if flip
           else "") + " (literature protocol, native resolution, order fix on; each ensemble "
          "scored on the validation subjects that neither member trained on).")


def eval_runs(src: Sources, folder: str) -> Dict[str, Dict]:
  """{name: eval's metrics.json} of each run folder FOLDER/NAME (run.sh beside them)."""
  return {e: src.json(f"{folder}/{e}/metrics.json") for e in sorted(os.listdir(src.path(folder)))
          if os.path.isdir(src.path(f"{folder}/{e}"))}


def results_uncertainty_smoothing(src: Sources) -> str:
  """The shipped recipe's seed ensembles scored with pretrained/'s boundary smoothing, with the
  members' spread of their unsmoothed boundaries (before) and of their boundaries smoothed as
  the written ones are (after): the spread's rank correlation with the boundary error, and how
  the uncertain flag splits the error (after)."""
  rows, unsmoothed = [], eval_runs(src, f"{UNCERTAINTY_SMOOTHING}/before")
  for name, after in eval_runs(src, f"{UNCERTAINTY_SMOOTHING}/after").items():
    before = unsmoothed[name]
    flag = after["calibration"]["uncertain_columns"]
    sd = after["topology"]["smooth_sd_columns"]
    rho = [m["calibration"]["uncertainty_vs_error"]["pooled"]["rho"] for m in (before, after)]
    rows.append([f"{os.path.basename(after['workdir'])} (sd {sd:g} columns)", fmt(rho[0], 3),
                 fmt(rho[1], 3),
                 f"{flag['flagged']} of {flag['columns']} (over {flag['threshold_um']:g} um)",
                 fmt(flag["mae_flagged_um"], 1), fmt(flag["mae_unflagged_um"], 1)])
  return table(["ensemble (smoothing)", "rho, spread of unsmoothed boundaries",
                "rho, spread of smoothed boundaries",
                "columns flagged uncertain, of those measured", "boundary MAE flagged (um)",
                "boundary MAE others (um)"], rows)


POSITION_SD = "docs/results/position_sd"      # its run.sh: each shipped member alone, held out


def results_position_sd(src: Sources) -> str:
  """How well each boundary's position sd (calibration.position_sd_vs_error) and, for an
  ensemble, the members' spread rank the boundary errors on held-out eyes: each fold-model
  member then shipped alone (POSITION_SD) and the seed ensembles scored as those were shipped
  (calibration_seed_ensembles, each named with its recipe) whose eval reports both."""
  runs = [(f"shipped member `{m['workdir']}` alone", m)
          for m in eval_runs(src, POSITION_SD).values()]
  runs += [(f"seed ensemble of {name} ({', '.join(sorted({r[0] for r in members}))}, seeds "
            f"{and_list(sorted({str(r[2]) for r in members}))})", m)
           for name, m, _, members in calibration_seed_ensembles(src)
           if "position_sd_vs_error" in m["calibration"]]
  rows = []
  for label, m in runs:
    cal = m["calibration"]
    for what, rank, flag in (("members' spread", "uncertainty_vs_error", "uncertain_columns"),
                             ("position sd", "position_sd_vs_error", "position_sd_columns")):
      if rank in cal:
        rows.append([label, ", ".join(sorted(m["per_subject_mean_layer_dice"])),
                     fmt(m["topology"]["literature"]["mean_layer_dice"], 4), what]
                    + uncertainty_cells(cal[rank], cal.get(flag)))
  return table(["model", "held-out subjects", "mean layer Dice (smoothed)", "uncertainty",
                "rho with the boundary error", "MAE (um): its most uncertain tenth / the rest",
                "columns over the flag's threshold, of those measured",
                "MAE (um): those columns / the others"], rows)


def uncertainty_cells(rank: Dict, flag: Optional[Dict]) -> List[str]:
  """results_position_sd's cells of one uncertainty: its rank correlation and top-tenth split
  (scoring.ranks_errors), and its split at the flag's threshold (flagged_columns_error)."""
  cells = [fmt(rank["pooled"]["rho"], 3),
           f"{rank['top_tenth']['mae_top_um']:.1f} / {rank['top_tenth']['mae_rest_um']:.1f}"]
  if flag is None:
    return cells + ["-", "-"]
  return cells + [f"{flag['flagged']} of {flag['columns']} (over {flag['threshold_um']:g} um)",
                  f"{fmt(flag['mae_flagged_um'], 1)} / {fmt(flag['mae_unflagged_um'], 1)}"]


FLAG_THRESHOLD = "docs/results/flag_threshold"   # its run.sh: scripts/flag_threshold_cv.py
FLAG_EVIDENCE = (f"{FLAG_THRESHOLD}/cv.json",     # flag_threshold_cv.py outputs, each set a
                 f"{VALIDATION_FREE_SETTINGS}/flag_threshold_cv.json")   # fold model set's evals
FIRST_SEED1 = f"{CAMPAIGN_RUNS}/plateau_80_fluid_skip_wh_ema"   # FOLD_seed1: first trainings
FLAG_NAMES = {"uncertain": "members' spread", "position_sd": "position sd"}
EVAL_THRESHOLD = {"uncertain": "predict.uncertain_um",
                  "position_sd": "eval's: predict.uncertain_position_sd_um, or predict."
                                 "uncertain_um where that is unset"}
FLAG_SETS = {"members": "each shipped member alone",
             "seed_ensembles": "the shipped recipe's 2-member seed ensembles"}


def results_flag_threshold(src: Sources) -> str:
  """Each column flag of FLAG_THRESHOLD/cv.json on held-out eyes: at the threshold its evals
  flagged at, and at each fold's threshold chosen on the other folds (means over the folds)."""
  rows = []
  for name, s in src.json(f"{FLAG_THRESHOLD}/cv.json")["sets"].items():
    for flag, f in s["flags"].items():
      at = and_list([fmt_um(t) for t in sorted({v["threshold_um"] for v in
                                                f["current"].values()})])
      label = [FLAG_SETS.get(name, name), FLAG_NAMES[flag]]
      rows.append(label + [f"{at} ({EVAL_THRESHOLD[flag]})", str(len(f["current"]))]
                  + flag_cells(list(f["current"].values())))
      if f["cv"]:
        held = [v["held_out"] for v in f["cv"]["per_fold"].values()]
        chosen = and_list([fmt_um(h["threshold_um"]) for h in held])
        rows.append(label + [f"chosen on the other folds: {chosen}", str(len(held))]
                    + flag_cells(held))
  return table(["fold models", "uncertainty", "threshold (um)", "folds",
                f"columns off (mean error over {fmt_um(f['wrong_um'])} um)", "columns flagged",
                "precision", "recall", "F1", "MAE (um): flagged / others"], rows)


def known(values) -> List[float]:
  """The values that are not None (JSON null: a ratio without a denominator)."""
  return [v for v in values if v is not None]


def percent_span(stats: List[Dict], key: str) -> str:
  """span of the known ratios `key` of flag_stats records, in whole per cent."""
  return span([100 * v for v in known(s[key] for s in stats)], 0)


def fmt_um(value: float) -> str:
  return f"{value:g}"


def flag_cells(stats: List[Dict]) -> List[str]:
  """results_flag_threshold's cells: means over the folds of uncertainty.flag_stats."""
  def mean(key):
    return float(np.mean(known(s[key] for s in stats) or [np.nan]))
  return [f"{mean('wrong_share'):.1%}", f"{mean('flagged_share'):.1%}",
          fmt(mean("precision"), 2), fmt(mean("recall"), 2), fmt(mean("f1"), 2),
          f"{fmt(mean('mae_flagged_um'), 1)} / {fmt(mean('mae_unflagged_um'), 1)}"]


def results_seed1_retrained(src: Sources) -> str:
  """The seed-1 models retrained for the seed ensembles (FLAG_THRESHOLD/seed1_retrained/foldF,
  its retrain_seed1.sh) against their first campaign training: held-out score, kept epoch and
  the first epoch's training loss."""
  folder = f"{FLAG_THRESHOLD}/seed1_retrained"
  if not os.path.isdir(src.path(folder)):
    return "No seed-1 model retrained yet."
  parts = []
  for fold in sorted(os.listdir(src.path(folder))):
    runs = (f"{folder}/{fold}", f"{FIRST_SEED1}/{fold}_seed1")
    new, old = (src.json(f"{d}/metrics.json")["topology"]["literature"]["mean_layer_dice"]
                for d in runs)
    logs = [src.log(f"{d}/log.csv") for d in runs]
    epochs = [src.json(f"{d}/metrics.json")["checkpoint_epoch"] for d in runs]
    parts.append(f"fold {fold[4:]}: {new:.4f} against {old:.4f} ({new - old:+.4f}; kept epoch "
                 f"{epochs[0]} against {epochs[1]}; first epoch's training loss "
                 f"{float(logs[0][0]['train_loss']):.6f} against "
                 f"{float(logs[1][0]['train_loss']):.6f})")
  return (f"Retrained at the same commit, seed, data and options, held-out mean layer Dice "
          f"(order fix) against the first training's: {'; '.join(parts)}."
          + determinism_sentence(src, folder))


def determinism_sentence(src: Sources, retrained: str) -> str:
  """Whether the first epoch of fold 0 seed 1, trained twice more on this machine
  (FLAG_THRESHOLD/determinism/run_*), and the first training's match the retrained run's first
  epoch in every logged number but its seconds ('' without those runs)."""
  folder = f"{FLAG_THRESHOLD}/determinism"
  if not os.path.isdir(src.path(folder)) or not os.path.isdir(src.path(f"{retrained}/fold0")):
    return ""
  def numbers(path):
    return {k: v for k, v in src.log(path)[0].items() if k != "seconds"}
  runs = sorted(d for d in os.listdir(src.path(folder)) if d.startswith("run_"))
  ours = numbers(f"{retrained}/fold0/log.csv")
  here = all(numbers(f"{folder}/{r}/log.csv") == ours for r in runs)
  first = numbers(f"{FIRST_SEED1}/fold0_seed1/log.csv")
  why = (" So training is deterministic on this machine, and the first training's machine "
         "computed otherwise." if here and first != ours else "")
  return (f" Fold 0's first epoch, trained again here in {count(len(runs), 'run')} "
          f"(`{folder}`), logged {'the same numbers as' if here else 'other numbers than'} the "
          f"retrained run to the last digit; the first training's first epoch logged "
          f"{'the same' if first == ours else 'other'} numbers.{why}")


def ensemble_flag_recall(src: Sources) -> str:
  """pretrained_uncertainty's sentence on how many of the wrong columns the ensemble's flag
  finds: the seed ensembles of FLAG_THRESHOLD/cv.json at the shipped predict.uncertain_um
  ('' where none was read at it)."""
  flag = src.json(f"{FLAG_THRESHOLD}/cv.json")["sets"].get("seed_ensembles", {}).get(
      "flags", {}).get("uncertain")
  shipped = shipped_uncertain_um(src)
  at = [v for v in (flag or {}).get("current", {}).values() if v["threshold_um"] == shipped]
  if not at:
    return ""
  def pct(key):
    return percent_span(at, key)
  return (f" Read as a search for the columns whose boundaries are off by more than "
          f"{flag['wrong_um']:g} um on average ({count(len(at), 'fold')} of 2-member seed "
          f"ensembles, docs/results.md section 7), that flag found {pct('recall')}% of them "
          f"(recall), and {pct('precision')}% of the columns it flagged were off (precision): "
          f"its threshold, 2 Duke axial pixels, was set by hand, not chosen on held-out eyes, "
          f"and it is sparing.")


def single_member_flag(src: Sources) -> str:
  """pretrained_uncertainty's sentence on --config.predict.members=1: its flag's threshold
  (ensemble.json settings) must be the one a FLAG_EVIDENCE set chose on exactly pretrained's
  held-out models (each on its held-out subjects, scored with its smoothing), whose held-out
  reading it gives."""
  spec = src.json("pretrained/ensemble.json")
  setting = spec.get("settings", {}).get("predict.uncertain_position_sd_um", 0.0)
  smoothing = spec.get("settings", {}).get("predict.smooth_sd_columns", 0.0)
  models = held_out_models(src)
  found = evidence_set(src, FLAG_EVIDENCE, models, flag_set_models)
  own = [found[1]] if found and "position_sd" in found[1]["flags"] and set(
      found[1]["smooth_sd_columns"].values()) == {smoothing} else []
  cv = own[0]["flags"]["position_sd"]["cv"] if own else None
  members = shipped_members(src)
  if own and stand_ins(members) and len(members) > 1:
    kind, shared = shipped_ensemble_flag(src)
    if kind == uncertainty.POSITION_SD:                  # the ensemble's threshold, shared
      return shared_position_flag(src, found, shared, models)
  if not setting or cv is None or cv["chosen_um"] != setting:
    raise ValueError(f"pretrained/ensemble.json flags a single member at position sd {setting:g}"
                     f" um, but {' or '.join(FLAG_EVIDENCE)} has no cross-validation of its "
                     "held-out models (scored with its smoothing) choosing it")
  others = stand_ins(members)
  on = (f"the {len(cv['per_fold'])} fold models of `{run_parts(models[0]['run'])[0]}`"
        if others else f"the {len(cv['per_fold'])} members")
  return (f" With `--config.predict.members=1` the first member alone flags a column where some "
          f"boundary's position sd exceeds {setting:g} um (`predict.uncertain_position_sd_um`), "
          + flag_cv_reading(own[0]["flags"]["position_sd"], on, 11 if others else 7))


def shared_position_flag(src: Sources, found: Tuple[str, Dict], setting: float,
                         models: List[Dict]) -> str:
  """single_member_flag where the ensemble flags by the position sd (stand_in_ensemble_flag
  checks its threshold): the single member flags at the same threshold, read on each held-out
  model's eval (the evals of the FLAG_EVIDENCE set `found`, next to its file) at it."""
  folder, held = os.path.dirname(found[0]), []
  for name, workdir in sorted(found[1]["workdirs"].items()):
    metrics = src.json(f"{folder}/{name}/metrics.json")
    curve = metrics["calibration"]["position_sd_columns_curve"]
    if model_name(metrics["workdir"]) != model_name(workdir) or setting not in curve[
        "thresholds_um"]:
      raise ValueError(f"{folder}/{name}: not the eval of {workdir} with a flag curve at "
                       f"{setting:g} um; rerun its eval")
    held.append(uncertainty.flag_stats(curve, curve["thresholds_um"].index(setting)))
  return (f" With `--config.predict.members=1` the first member alone flags by its position sd "
          f"at the same {setting:g} um: on each of the {len(held)} fold models of "
          f"`{run_parts(models[0]['run'])[0]}` at that threshold, on its held-out subjects, "
          + flag_reading(held, 11))


def flag_cv_reading(flag: Dict, on: str, section: int) -> str:
  """The shipped flags' words on a threshold chosen by flag_threshold_cv.py (`flag`: one flag
  of a set, chosen on `on`): the rule, and the held-out reading at each fold's threshold chosen
  on the other folds (docs/results.md `section`)."""
  held = [v["held_out"] for v in flag["cv"]["per_fold"].values()]
  chosen = sorted({h["threshold_um"] for h in held})
  return (f"the threshold with the best F1 of finding the columns whose boundaries are off by "
          f"more than {flag['wrong_um']:g} um "
          f"({flag['wrong_um'] / uncertainty.SPECTRALIS_ROW_UM:.3g} rows) on average, chosen on "
          f"{on} (each on its own "
          f"held-out subjects; chosen on the other {count(len(held) - 1, 'fold')}, each fold's "
          f"threshold was {'-'.join(fmt_um(t) for t in sorted({chosen[0], chosen[-1]}))} um): "
          "on the fold left out " + flag_reading(held, section))


def flag_reading(held: List[Dict], section: int) -> str:
  """What a flag found on held-out folds (uncertainty.flag_stats of each), in words."""
  def pct(key):
    return percent_span(held, key)
  return (f"it flagged {pct('flagged_share')}% of the measured columns and "
          f"found {pct('recall')}% of those that were off (recall; {pct('wrong_share')}% of the "
          f"columns were), and {pct('precision')}% of the flagged columns were off (precision), "
          f"with a mean absolute boundary error of "
          f"{span(known(h['mae_flagged_um'] for h in held), 1)} um in them against "
          f"{span(known(h['mae_unflagged_um'] for h in held), 1)} um in the others "
          f"(docs/results.md section {section}).")


SEED_ENSEMBLE_FLAGS = f"{VALIDATION_FREE_SETTINGS}/seed_ensembles_cv.json"   # seed_ensembles.sh


FLAG_KEY = {uncertainty.SPREAD: "uncertain",          # each flag's record in eval's calibration
            uncertainty.POSITION_SD: "position_sd"}   # and flag_threshold_cv.py (FLAG_NAMES)


def ensemble_flag_choice(flags: Dict) -> Tuple[str, Dict]:
  """Which uncertainty an ensemble of members trained on every subject flags by, from its
  stand-ins' seed-ensemble flags (SEED_ENSEMBLE_FLAGS's `flags`), by the rule of docs/results.md
  section 11: the position sd of the averaged probabilities, unless the members' spread has the
  higher mean held-out F1 (flag_f1), or the position sd was not cross-validated (no `cv`).
  (uncertainty.SPREAD or POSITION_SD, that flag's record); ValueError where neither was."""
  usable = {kind: flags[key] for kind, key in FLAG_KEY.items() if (flags.get(key) or {}).get("cv")}
  if not usable:
    raise ValueError(f"{SEED_ENSEMBLE_FLAGS}: no cross-validated flag of the seed ensembles; "
                     "run seed_ensembles.sh")
  spread, position = usable.get(uncertainty.SPREAD), usable.get(uncertainty.POSITION_SD)
  if position and (not spread or flag_f1(spread) <= flag_f1(position)):
    return uncertainty.POSITION_SD, position
  return uncertainty.SPREAD, spread


def flag_f1(flag: Dict) -> float:
  """A cross-validated flag's mean held-out F1 over its folds (flag_threshold_cv.py); -1 where
  it has none (NaN or null: no column wrong nor flagged), below any F1."""
  f1 = flag["cv"]["held_out_mean"]["f1"]
  return -1.0 if f1 is None or math.isnan(f1) else float(f1)


def ensemble_flag_settings(src: Sources, single_um: float) -> Tuple[float, float]:
  """(predict.uncertain_um, predict.uncertain_position_sd_um) of an ensemble of members trained
  on every subject, by ensemble_flag_choice: the spread at its chosen threshold, the single
  member then at `single_um` (its own cross-validated choice); or 0 and the position sd's
  chosen threshold, which the single member shares. Read on flag_evidence's seed ensembles."""
  kind, flag = ensemble_flag_choice(flag_evidence(src)[2].get("flags", {}))
  chosen = float(flag["cv"]["chosen_um"])
  return (chosen, float(single_um)) if kind == uncertainty.SPREAD else (0.0, chosen)


def seed_ensemble_flags(src: Sources, size: int = 2) -> Dict:
  """SEED_ENSEMBLE_FLAGS's set of the stand-ins' seed ensembles of `size` seeds (seed_ensembles,
  seed_ensembles_N for N > 2; {} before it is written)."""
  name = "seed_ensembles" + ("" if size == 2 else f"_{size}")
  return (src.json(SEED_ENSEMBLE_FLAGS)["sets"].get(name, {}) if
          src.exists(SEED_ENSEMBLE_FLAGS) else {})


def flag_evidence(src: Sources) -> Tuple[int, List[Dict], Dict]:
  """(size, the stand-ins' seed ensembles, seed_ensemble_flags of them) that pretrained/'s flag
  and calibration are read on (docs/results.md section 11): those of its own size once every
  held-out model has one and their flags were cross-validated over all of them, else the
  2-member ones. For members trained on every subject (stand_ins)."""
  models = held_out_models(src)
  sd = stored_config(src.path("pretrained")).predict.smooth_sd_columns
  ensembles = shipped_size_ensembles(src, models, sd, len(shipped_members(src)))
  size = len(ensembles[0]["seeds"]) if ensembles else 2
  flags = seed_ensemble_flags(src, size)
  if size > 2 and len(flags.get("workdirs", {})) != len(models):   # flags not read on them all
    return 2, stand_in_seed_ensembles(src, models, sd), seed_ensemble_flags(src)
  return size, ensembles, flags


def shipped_ensemble_flag(src: Sources) -> Tuple[str, float]:
  """(uncertainty, threshold um) pretrained/'s ensemble flags by (uncertainty.flag_rule on its
  stored config); ValueError where it flags none."""
  predict = stored_config(src.path("pretrained")).predict
  rule = uncertainty.flag_rule(True, float(predict.uncertain_um),
                               float(predict.uncertain_position_sd_um))
  if rule is None:
    raise ValueError("pretrained/: its ensemble flags no column (predict.uncertain_um and "
                     "predict.uncertain_position_sd_um are both 0)")
  return rule


def results_ensemble_flag_rule(src: Sources) -> str:
  """The reading of docs/results.md section 11's flag rule (ensemble_flag_choice) on the
  stand-ins' seed ensembles (SEED_ENSEMBLE_FLAGS): each flag's chosen threshold and held-out F1,
  mean and per fold, and what pretrained/ ships, which must be the choice where its members
  trained on every subject."""
  members_are_stand_ins = stand_ins(shipped_members(src))
  size, _, read = (flag_evidence(src) if members_are_stand_ins else
                   (2, [], seed_ensemble_flags(src)))
  kind, flag = ensemble_flag_choice(read.get("flags", {}))
  parts = []
  for key in FLAG_KEY.values():
    cv = (read["flags"].get(key) or {}).get("cv")
    if cv:
      folds = [f"{cv['per_fold'][w]['held_out']['f1']:.3f}" for w in sorted(cv["per_fold"])]
      parts.append(f"the {FLAG_NAMES[key]} at {cv['chosen_um']:g} um, mean held-out F1 "
                   f"**{flag_f1(read['flags'][key]):.3f}** (folds {', '.join(folds)})")
  text = (f"Read over the {len(read['workdirs'])} folds' {size}-member seed ensembles "
          f"(`{SEED_ENSEMBLE_FLAGS}`): {and_list(parts)}; by the rule the ensemble flags by the "
          f"{FLAG_NAMES[FLAG_KEY[kind]]} at {flag['cv']['chosen_um']:g} um.")
  if not members_are_stand_ins:
    return text + " pretrained/ still holds fold models, whose flag section 7 chose."
  checked_stand_in_flag(src)                     # pretrained/ flags by exactly that choice
  return text + (" pretrained/ ships it (`settings` in its `ensemble.json`), for "
                 "`--config.predict.members=1` too." if kind == uncertainty.POSITION_SD else
                 " pretrained/ ships it (`settings` in its `ensemble.json`).")


def results_ensemble_size(src: Sources) -> str:
  """The averaging gain by ensemble size: per fold, the stand-ins' 2-seed ensembles and those of
  pretrained/'s own size (stand_in_seed_ensembles; each scored with the shipped smoothing on the
  pair no member saw), with the position-sd flag's held-out F1 of each size (SEED_ENSEMBLE_FLAGS
  sets seed_ensembles and seed_ensembles_N)."""
  models, size = held_out_models(src), len(shipped_members(src))
  sd = stored_config(src.path("pretrained")).predict.smooth_sd_columns
  by_size = {n: {e["fold"]: e for e in stand_in_seed_ensembles(src, models, sd, n)}
             for n in (2, size)}
  folder = seed_ensemble_folder(size)
  if size == 2 or not by_size[size]:
    return (f"No seed ensembles of pretrained/'s {size} members scored yet (`{folder}`, "
            "seed_ensembles.sh; their runs are queued in configs/campaign.json).")
  folds = sorted(set(by_size[2]) | set(by_size[size]))
  held = {run_parts(m["run"])[1]: m["scored_on"] for m in models}
  rows = [[str(f), ", ".join(map(str, held[f]))]
          + [cell for n in (2, size) for cell in ensemble_size_cells(by_size[n].get(f))]
          for f in folds]
  both = [f for f in folds if f in by_size[2] and f in by_size[size]]
  gains = {n: ensemble_gains([by_size[n][f] for f in both]) for n in (2, size)}
  text = table(["fold", "held-out subjects"]
               + [h.format(n) for n in (2, size) for h in (
                   "seeds ({})", "members' mean Dice ({})", "ensemble Dice ({})", "gain ({})")],
               rows)
  read = [(n, st) for n in (2, size) for st in [seed_ensemble_flags(src, n)]
          if (st.get("flags", {}).get("position_sd") or {}).get("cv")]   # none on one fold
  f1 = [f"{n} members {flag_f1(st['flags']['position_sd']):.3f} "
        f"({count(len(st['workdirs']), 'fold')}, threshold chosen on the other folds)"
        for n, st in read]
  return (text + f"\n\nOn the {count(len(both), 'fold')} with both, the mean averaging gain is "
          f"**{np.mean(gains[2]):+.4f}** with 2 members and **{np.mean(gains[size]):+.4f}** "
          f"with {size} (`{folder}`, literature protocol, native resolution, order fix on, "
          f"smoothing sd {sd:g}, no flip)."
          + (f" Held-out F1 of the position-sd flag: {'; '.join(f1)}" if f1 else "")
          + ("; the two read different folds, so they are not paired." if len(read) == 2
             and sorted(read[0][1]["workdirs"]) != sorted(read[1][1]["workdirs"]) else
             "." if f1 else ""))


def ensemble_size_cells(e: Optional[Dict]) -> List[str]:
  """One seed ensemble's cells of results_ensemble_size: its seeds, its members' mean Dice, its
  own and the gain; dashes where the fold has none."""
  if e is None:
    return ["-"] * 4
  own = e["ensemble"]["topology"]["literature"]["mean_layer_dice"]
  (gain,) = ensemble_gains([e])
  return [", ".join(map(str, e["seeds"])), fmt(own - gain, 4), fmt(own, 4), f"{gain:+.4f}"]


def checked_stand_in_flag(src: Sources) -> Tuple[str, float, Dict, Dict, List, List]:
  """For members trained on every subject: (uncertainty, threshold) of the ensemble's flag
  (shipped_ensemble_flag), which must be the one SEED_ENSEMBLE_FLAGS chose on the stand-ins'
  seed ensembles, each fold's (stand_in_seed_ensembles, all verified; scored with the
  shipped smoothing), by the rule of ensemble_flag_choice; with that flag's record, the whole
  reading, the ensembles and the stand-ins. ValueError otherwise. The ensembles are those of
  pretrained/'s own size once every fold has them (flag_evidence)."""
  (kind, setting), models = shipped_ensemble_flag(src), held_out_models(src)
  sd = stored_config(src.path("pretrained")).predict.smooth_sd_columns
  _, ensembles, flags = flag_evidence(src)
  verified = sorted(f"ensembles/fold{e['fold']}" for e in ensembles)
  read = sorted(run_of_workdir(w) for w in flags.get("workdirs", {}).values())  # ensembles/foldF
  chosen, flag = (ensemble_flag_choice(flags["flags"]) if flags.get("flags") else (None, None))
  if (not flag or len(verified) != len(models) or read != verified or chosen != kind
      or set(flags["smooth_sd_columns"].values()) != {sd} or flag["cv"]["chosen_um"] != setting):
    raise ValueError(f"pretrained/ flags its ensemble by the {FLAG_NAMES[FLAG_KEY[kind]]} at "
                     f"{setting:g} um, but {SEED_ENSEMBLE_FLAGS} has no cross-validation of its "
                     "held-out models' seed ensembles choosing it (docs/results.md section 11's "
                     "rule); run seed_ensembles.sh")
  return kind, setting, flag, flags, ensembles, models


def stand_in_ensemble_flag(src: Sources, members: int) -> str:
  """For members trained on every subject: the held-out reading of the ensemble's flag
  (checked_stand_in_flag), with what `members` members change."""
  kind, setting, flag, flags, ensembles, models = checked_stand_in_flag(src)
  size = len(ensembles[0]["seeds"])
  on = (f"the {len(flag['cv']['per_fold'])} {size}-member seed ensembles "
        f"({ensemble_seeds_text(ensembles)}) "
        f"of `{run_parts(models[0]['run'])[0]}`")
  name = FLAG_KEY[uncertainty.POSITION_SD if kind == uncertainty.SPREAD else uncertainty.SPREAD]
  other = flags["flags"].get(name)                                    # the flag not chosen
  rule = (f"; chosen over the {FLAG_NAMES[name]} by the rule of docs/results.md section 11: "
          f"held-out F1 {flag_f1(flag):.2f} against {flag_f1(other):.2f}"
          if (other or {}).get("cv") else "")
  if kind == uncertainty.SPREAD:
    ratio = expected_sd_factor(members) / expected_sd_factor(size)
    return (f" The ensemble flags a column where the members' spread of some boundary exceeds "
            f"{setting:g} um (`predict.uncertain_um`, set in `ensemble.json`{rule}), "
            + flag_cv_reading(flag, on, 11)
            + ("" if members == size else
               f" The population sd of {members} members drawn alike from a normal distribution "
               f"runs {ratio:.2f}x that of {size} on average, so with {members} members it flags "
               "more columns than these readings."))
  return (f" The ensemble flags a column where some boundary's position sd in its averaged "
          f"probabilities exceeds {setting:g} um (`predict.uncertain_position_sd_um`, with "
          f"`predict.uncertain_um` 0, set in `ensemble.json`{rule}), "
          + flag_cv_reading(flag, on, 11)
          + ("" if members == size else
             f" With {members} members instead of {size} the part of it that is the members' "
             "disagreement runs larger; each member's own spread over rows does not change."))


def expected_sd_factor(n: int) -> float:
  """E[population sd of n normal draws] / sigma: sqrt(2 / n) Gamma(n / 2) / Gamma((n - 1) / 2)
  (c4(n) sqrt((n - 1) / n))."""
  return float(np.sqrt(2.0 / n) * np.exp(math.lgamma(n / 2) - math.lgamma((n - 1) / 2)))


HELDOUT_SHIPPED = f"{CPU}/explain_heldout_shipped"     # the same, pretrained/'s members
CAM_CHOICE = f"{CPU}/explain_heldout_shipped_6scans"   # theirs on 6 B-scans per fold: the
                                                       # runs whose ranking chose pretrained/'s CAM
CAM_EVIDENCE = (CAM_CHOICE,                            # held-out CAM comparisons of fold model
                f"{CPU}/explain_heldout_noval_6scans")   # sets pretrained/'s CAM may be chosen on
FOLD_MEMBERS = tuple(f"pretrained/members/fold{f}_seed0" for f in range(4))   # the fold models
# of plateau_80_fluid_skip_wh_ema that pretrained/ shipped from 2026-12-05: the models that
# HELDOUT_SHIPPED and CAM_CHOICE explained, read as their record after any rebuild
CAM_COST_BUDGET = 3.0              # issue 30: explain at most 3x predict (whole commands)


def cam_choice(src: Sources) -> str:
  """The CAM_EVIDENCE folder whose runs explained exactly pretrained/'s held-out models (the
  runs its CAM is chosen on), or ValueError."""
  models = model_set(m["workdir"] for m in held_out_models(src))
  for folder in CAM_EVIDENCE:
    runs = heldout_runs(src, folder)
    if model_set(r["workdir"] for r in runs.values()) == models:
      return folder
  raise ValueError(f"{' and '.join(CAM_EVIDENCE)}: none explained exactly pretrained/'s held-out "
                   "models; run the comparison on them")


def heldout_runs(src: Sources, folder: str = HELDOUT) -> Dict[str, Dict]:
  """{fold: compare_cams.json} of a held-out CAM comparison, for the folds that have one."""
  folds = sorted(d for d in os.listdir(src.path(folder)) if d.startswith("fold")
                 and os.path.exists(src.path(f"{folder}/{d}/compare_cams.json")))
  return {f: src.json(f"{folder}/{f}/compare_cams.json") for f in folds}


def results_cam_heldout(src: Sources) -> str:
  """The held-out CAM comparison of the campaign's base fold models (cam_heldout_table)."""
  return cam_heldout_table(heldout_runs(src))


def fold_member_cam_runs(src: Sources, folder: str) -> Dict[str, Dict]:
  """heldout_runs of FOLD_MEMBERS in `folder`; ValueError where a fold explained another
  model."""
  runs = heldout_runs(src, folder)
  if model_set(r["workdir"] for r in runs.values()) != model_set(FOLD_MEMBERS):
    raise ValueError(f"{folder}: not the 4 fold members {', '.join(FOLD_MEMBERS)}")
  return runs


def shipped_cam_comparison(src: Sources, runs: Dict[str, Dict],
                           ranked: List[Tuple[Tuple, str, str]]) -> str:
  """The held-out CAM comparison of a set of fold models (heldout_runs, the candidates
  only; `ranked` their cam_ranking), and where the schema's default and pretrained/'s CAM rank
  there by issue 30's rule."""
  order = "; ".join(f"({k}) {rank_text(key, m, l, len(runs))}"
                    for k, (key, m, l) in enumerate(ranked, 1))
  text = cam_heldout_table(runs) + f"\n\nRanked by the same rule: {order}."
  for what, name, cam in (("The schema's default", "the default", default_cam()),
                          ("pretrained/'s CAM", "pretrained/'s", shipped_cam(src))):
    place = place_of(ranked, cam)
    text += (f" {what} ({METHOD_NAMES[cam[0]]} at `{cam[1]}`) "
             + (f"ranks {place} of {len(ranked)}.{ranked_above(ranked, place, name)}"
                if place else "fails the rule's sanity limit."))
  return text


def results_cam_heldout_noval(src: Sources) -> str:
  """The held-out CAM comparison of the validation-free fold models (CAM_EVIDENCE[1], its
  run.sh), ranked by issue 30's rule with the places of the schema's default and pretrained/'s
  CAM (shipped_cam_comparison); how many folds have run until all 4 have."""
  folder = CAM_EVIDENCE[1]
  runs = heldout_runs(src, folder)
  if len(runs) < 4:
    return (f"{len(runs)} of 4 folds have run (`{folder}/run.sh`); the ranking waits for all "
            "of them.")
  return shipped_cam_comparison(src, runs, cam_ranking(heldout_evidence(runs)))


def results_cam_heldout_shipped(src: Sources) -> str:
  """shipped_cam_comparison of the members' first runs (2 B-scans per fold)."""
  runs = fold_member_cam_runs(src, HELDOUT_SHIPPED)
  return shipped_cam_comparison(src, runs, cam_ranking(heldout_evidence(runs)))


def results_cam_heldout_shipped_6scans(src: Sources) -> str:
  """shipped_cam_comparison on 6 B-scans per fold (the runs that chose pretrained/'s CAM), how
  narrowly it leads, where it ranked on the first runs' 2 B-scans, and its cost against the
  schema default's (explain_cost_run: the latest timing of each, on the members of its day)."""
  runs = fold_member_cam_runs(src, CAM_CHOICE)
  evidence = heldout_evidence(runs)
  ranked = cam_ranking(evidence)
  first = cam_ranking(heldout_evidence(fold_member_cam_runs(src, HELDOUT_SHIPPED)))
  mine, schema_cam = shipped_cam(src), default_cam()
  costs = [explain_cost_run(src, *cam) for cam in (mine, schema_cam)]
  first_place = place_of(first, mine)
  if None in costs or first_place is None:
    raise ValueError(f"{CAM_CHOICE}: pretrained/'s CAM or the schema's default was never timed "
                     f"({EXPLAIN_COST}), or pretrained/'s fails the sanity limit on "
                     f"{HELDOUT_SHIPPED}")
  failed = [LAYER_NAMES[k] for k in range(1, 8)
            if not any(evidence[m][l]["passed"][k] for _, m, l in ranked)]
  return (shipped_cam_comparison(src, runs, ranked) + " " + lead_text(ranked)
          + (f" No candidate beats random for {and_list(failed)} pooled." if failed else "")
          + f" On the first two of these B-scans per fold alone (the table before) it ranked "
          f"{first_place} of {len(first)}. It costs {costs[0]['medians']['A/B wall']:.2f}x "
          f"predict, the schema's default {costs[1]['medians']['A/B wall']:.2f}x (each timed on "
          f"the ensemble shipped that day: {costs[0]['date']} and {costs[1]['date']}; table "
          "below).")


def lead_text(ranked: List[Tuple[Tuple, str, str]]) -> str:
  """How narrowly cam_ranking's first leads: the candidates tied with it on the rule's first
  two keys (classes pooled, worst fold) and their fold passes."""
  top = ranked[0][0]
  tied = [k for k, _, _ in ranked[1:] if k[:2] == top[:2]]
  if not tied:
    return "The first leads on the rule's first two keys."
  passes = sorted({k[2] for k in tied})
  return (f"{count(len(tied), 'candidate')} {'ties' if len(tied) == 1 else 'tie'} with the first"
          f" on the rule's first two keys (classes pooled, worst fold), with "
          f"{'-'.join(str(p) for p in sorted({passes[0], passes[-1]}))} fold passes against its "
          f"{top[2]}.")


def leaders(ranked: List[Tuple[Tuple, str, str]], place: int) -> List[Tuple[Tuple, str, str]]:
  """cam_ranking's candidates ahead of the one at 1-based `place` on the rule's first key."""
  return [c for c in ranked[:place - 1] if c[0][0] > ranked[place - 1][0][0]]


def ranked_above(ranked: List[Tuple[Tuple, str, str]], place: int,
                 name: str = "the default") -> str:
  """' Above it ...': which of cam_ranking's candidates rank above the CAM at 1-based `place`
  (`name` in the words: the schema's default, or pretrained/'s) on the rule's first key
  (classes beating random, folds pooled), and how many only on its later keys; '' where none
  does."""
  own = ranked[place - 1][0]
  above = ranked[:place - 1]
  ahead = [f"{METHOD_NAMES[m]} at `{l}` ({k[0]} of 7 pooled, {name} {own[0]})"
           for k, m, l in leaders(ranked, place)]
  later = sum(k[0] == own[0] and k != own for k, _, _ in above)
  tied = sum(k == own for k, _, _ in above)
  return ((f" Above it on the rule's first key: {and_list(ahead)}." if ahead else "")
          + (f" {count(later, 'candidate')} above it only on the later keys (worst fold, fold "
             "passes, similarity)." if later else "")
          + (f" {count(tied, 'candidate')} tied with it on every key." if tied else ""))


def cam_heldout_table(runs: Dict[str, Dict]) -> str:
  """Per method and layer on held-out eyes: layer classes whose ROAD MoRF area is below random,
  per fold and over the folds' pooled areas, and the randomisation similarity (mean of folds)."""
  evidence = heldout_evidence(runs)
  rows = [[method, layer] + [f"{c} of 7" for c in e["per_fold_faithful"]] +
          [f"{int(np.sum(e['passed'][1:]))} of 7", fmt(e["similarity"], 3)]
          for method, per in evidence.items() for layer, e in per.items()]
  scans = "; ".join(f"{f}: " + ", ".join(n for n, *_ in r["scans"]) for f, r in runs.items())
  return (table(["method", "layer"] + [f"{f} (MoRF < random)" for f in runs] +
                ["pooled over folds", "randomisation similarity"], rows) +
          f"\n\nScans (each explained only by the fold model that never trained on its subject): "
          f"{scans}. Pooled: the ROAD areas averaged over the folds' scans, then compared. "
          + (f"These runs predate {PADDING_RULE}." if counts_padding(runs) else
             "Class scores, maps and removal count the scan's pixels only, not the network's "
             "padding (compare_cams.json `pixels`)."))


def default_cam() -> Tuple[str, str]:
  """The schema's default CAM (method, layers joined by commas), as the evidence keys them."""
  explain = schema.default_config().explain
  return explain.method, ",".join(explain.layers)


def place_of(ranked: List[Tuple[Tuple, str, str]], cam: Tuple[str, str]):
  """The 1-based place of a CAM (method, layers), such as default_cam() or shipped_cam(), in
  cam_ranking's list, or None when the rule left it out (it failed the sanity limit)."""
  pairs = [(m, l) for _, m, l in ranked]
  return pairs.index(cam) + 1 if cam in pairs else None


def rank_text(key: Tuple, method: str, layer: str, folds: int) -> str:
  """One candidate of cam_ranking with its ranking key, in words."""
  return (f"{METHOD_NAMES[method]} at `{layer}`: {key[0]} of 7 pooled, worst fold {key[1]} of 7, "
          f"{key[2]} of {7 * folds} fold passes, similarity {-key[3]:.3f}")


def cam_ranking(evidence: Dict) -> List[Tuple[Tuple, str, str]]:
  """Issue 30's rule on held-out evidence, best first: the gradient-linear methods (the only
  ones an ensemble is explained with) at randomisation similarity <= SANITY_PASS, ranked by
  layer classes beating random with the folds pooled, then the worst fold, then the fold
  passes summed over classes, then the lower similarity."""
  ranked = []
  for method in LINEAR_METHODS:
    for layer, e in evidence.get(method, {}).items():
      if e["similarity"] is not None and e["similarity"] <= SANITY_PASS:
        key = (int(sum(e["passed"][1:])), min(e["per_fold_faithful"]),
               int(sum(e["folds_passed"][1:])), -e["similarity"])
        ranked.append((key, method, layer))
  return sorted(ranked, reverse=True)


def results_cam_default(src: Sources) -> str:
  """The default CAM method and layer against the rule's ranking on held-out eyes."""
  runs = heldout_runs(src)
  ranked = cam_ranking(heldout_evidence(runs))
  default = default_cam()
  place = place_of(ranked, default)
  if place is None:
    raise ValueError(f"{HELDOUT}: the default CAM {default} is not among the ranked candidates")
  def describe(key, method, layer):
    cost = explain_cost_of(src, method, layer)
    return (rank_text(key, method, layer, len(runs)) + ", "
            + (f"{cost['A/B wall']:.2f}x predict" if cost else "cost not measured"))
  return (f"Ranked by that rule over {len(runs)} folds: "
          + "; ".join(f"({i + 1}) {describe(*r)}" for i, r in enumerate(ranked[:3]))
          + f". The default ({METHOD_NAMES[default[0]]} at `{default[1]}`) ranks {place}.")


SHIPPED_EXPLAIN = f"{CPU}/explain_shipped"      # the shipped ensemble, ROAD + sanity, its run.sh


def results_cam_shipped(src: Sources) -> str:
  """The summary of the shipped predictor's explain run with ROAD and the sanity check, which
  must be of today's pretrained/: its members, method and layer."""
  stats = src.json(f"{SHIPPED_EXPLAIN}/cam_stats.json")
  st = stats["settings"]
  layer = st["layers"][0]
  if (st.get("member_workdirs") != [m["workdir"] for m in shipped_members(src)]
          or (st["method"], ",".join(st["layers"])) != shipped_cam(src)):
    raise ValueError(f"{SHIPPED_EXPLAIN}/cam_stats.json: not an explain run of pretrained/'s "
                     "members with its CAM; rerun its run.sh")
  s = stats["summary"][layer]
  return (f"On the shipped ensemble itself, `--cam_faithfulness=road --cam_sanity` on the first "
          f"{st['scans']} B-scans of {os.path.basename(st['input'])} with its CAM "
          f"({METHOD_NAMES[st['method']]} at `{layer}`, {st['views']} views): MoRF beats random "
          f"for **{s['faithful_classes']} of 7** layer classes, randomisation similarity "
          f"**{s['randomisation_similarity']:.3f}**. {trained_on(src, st['input'])} of its "
          f"{len(shipped_members(src))} members trained on this subject, so this shows the "
          "report, not held-out evidence.")


def trained_on(src: Sources, input_path: str) -> int:
  """How many of pretrained/'s members trained on the Duke subject file `input_path`."""
  subject = duke.subject_number(input_path)
  return sum(subject in m["split"]["train"]["subjects"] for m in shipped_members(src))


EXPLAIN_COST = f"{CPU}/explain_cost"       # benchmarks/explain_vs_predict.sh (farm-bench)


def farm_bench_medians(text: str) -> Dict[str, float]:
  """The median column of a farm-bench report: {'A wall s': ..., 'A/B wall': ..., ...}."""
  out = {}
  for line in text.splitlines():
    m = re.match(r"^(A/B \w+|[AB] \w+ \w+)\s+([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s*$", line)
    if m:
      out[m.group(1)] = float(m.group(3))
  return out


def results_explain_cost(src: Sources) -> str:
  """Whole explain commands against predict on the same 4 Duke scans, per candidate default."""
  rows, shipped = [], shipped_cam(src)
  for run in explain_cost_runs(src):
    flags, med = run["flags"], run["medians"]
    if run["explained"]:      # the run's own cam_stats.json says what it explained
      what = (f"{run['explained'][0]} at `{run['explained'][1]}`" + (
          "" if flags != "none" else " (pretrained/'s)" if tuple(run["explained"]) == shipped
          else " (pretrained/'s then)"))
    else:
      what = f"`{flags}`" if flags != "none" else "the default"
    rows.append([what, run["date"], run["cpu"], str(run["pairs"]), f"{med['A wall s']:.1f}",
                 f"{med['B wall s']:.1f}", f"**{med['A/B wall']:.2f}**", f"{med['A/B cpu']:.2f}",
                 " -> ".join(run["loads"])])
  return table(["explain (method at layers)", "timed", "CPU", "pairs",
                "explain wall s", "predict wall s", "ratio (wall)", "ratio (cpu)",
                "load average before -> after"], rows)


def fluid_column_runs(src: Sources, folder: str) -> List[Dict]:
  """The re-scored metrics.json of a FLUID_COLUMN_MODELS folder, folds 0-3."""
  return [src.json(f"{FLUID_COLUMNS}/{folder}/fold{f}_seed0/metrics.json") for f in range(4)]


def fluid_column_splits(src: Sources, folder: str) -> List[Dict]:
  """The by_fluid_columns records (topology) of a FLUID_COLUMN_MODELS folder, folds 0-3."""
  return [r["topology"]["by_fluid_columns"] for r in fluid_column_runs(src, folder)]


def fluid_column_means(splits: List[Dict], group: str) -> Dict:
  """One column group ('without_fluid' or 'with_fluid') of eval's by_fluid_columns records
  (metrics.json's topology.by_fluid_columns, one per run): columns summed; mean layer Dice,
  per-layer Dice, per-boundary MAE and bias (um) averaged over the runs."""
  g = [split[group] for split in splits]
  return {"columns": sum(x["columns"] for x in g),
          "dice": float(np.mean([x["literature"]["mean_layer_dice"] for x in g])),
          "layers": np.mean([x["literature"]["layer_dice"] for x in g], axis=0),
          "mae": np.mean([x["geometry"]["mae_um"] for x in g], axis=0),
          "bias": np.mean([x["geometry"]["signed_um"] for x in g], axis=0)}


FLUID_COLUMN_HEADER = ["how many (share)", "mean layer Dice", "INL", "OPL", "boundary MAE (um)",
                       "INL/OPL MAE (bias)", "OPL/ONL MAE (bias)"]


def fluid_column_cells(m: Dict, total: int) -> List[str]:
  """The FLUID_COLUMN_HEADER cells of one fluid_column_means group (total: all its columns)."""
  mae, bias = m["mae"], m["bias"]
  return [f"{m['columns']} ({100 * m['columns'] / total:.0f}%)", f"{m['dice']:.4f}",
          f"{m['layers'][2]:.3f}", f"{m['layers'][3]:.3f}", f"{np.mean(mae):.2f}",
          f"{mae[3]:.2f} ({bias[3]:+.2f})", f"{mae[4]:.2f} ({bias[4]:+.2f})"]


def results_campaign_fluid_columns(src: Sources) -> str:
  """The campaign runs whose eval split the columns with and without fluid (their pinned
  commit is 9c8c308 or later), per machine and recipe, as results_fluid_columns."""
  rows = []
  for machine, levers in (("CPU", CAMPAIGN), ("H200", H200)):
    for name, r in src.json(levers)["recipes"].items():
      splits = {k: v["by_fluid_columns"] for k, v in r["runs_detail"].items()
                if "by_fluid_columns" in v}
      if not splits:
        continue
      groups = {g: fluid_column_means(list(splits.values()), g)
                for g in ("without_fluid", "with_fluid")}
      total = sum(m["columns"] for m in groups.values())
      for group, m in groups.items():
        rows.append([machine, name, ", ".join(splits), group.replace("_", " ")]
                    + fluid_column_cells(m, total))
  if not rows:
    return ("No campaign run scored with this split has finished yet (the recipes pinned to "
            "9c8c308 or later are the first).")
  return table(["machine", "recipe", "runs", "columns"] + FLUID_COLUMN_HEADER, rows)


CURVE_TO = 8          # a learning curve is read forward to training on all 8 Duke subjects


def trained_subjects(src: Sources, recipe: str, run: str) -> List[int]:
  """The subjects a committed campaign run trained on (its split.json)."""
  return src.json(f"{CAMPAIGN_RUNS}/{recipe}/{run}/split.json")["train"]["subjects"]


def curve_row(src: Sources, c: Dict, run: str, pair: Tuple[Dict, Dict], gap: float) -> List[str]:
  """One fold of learning curve `c` (a comparison): the fold, its validation subjects, both
  runs' training subjects, their mean layer Dice, the paired gap (more subjects minus fewer,
  `gap`) and the gaps in INL, OPL and the columns without and with fluid, how much each run's
  epoch selection on the scored pair lifted it (selection_gain), and both boundary MAEs."""
  few, full = pair
  val = src.json(f"{CAMPAIGN_RUNS}/{c['recipe']}/{run}/split.json")["val"]["subjects"]
  dice = {g: [r["by_fluid_columns"][g]["literature"]["mean_layer_dice"] for r in pair]
          for g in ("without_fluid", "with_fluid") if all("by_fluid_columns" in r for r in pair)}
  gaps = [gap] + [full["layer_dice"][k] - few["layer_dice"][k] for k in (2, 3)] + [
      dice[g][1] - dice[g][0] if g in dice else None for g in ("without_fluid", "with_fluid")]
  return ([run.split("_")[0].replace("fold", ""), ", ".join(map(str, val))]
          + [", ".join(map(str, trained_subjects(src, c[k], run))) for k in ("recipe", "against")]
          + [f"{few['mean_layer_dice']:.4f}", f"{full['mean_layer_dice']:.4f}"]
          + ["n/a" if g is None else f"{g:+.4f}" for g in gaps]
          + [f"{few['selection_gain']:+.4f} / {full['selection_gain']:+.4f}",
             f"{few['boundary_mae_um']:.2f} / {full['boundary_mae_um']:.2f}"])


def paired_seed0(t: Dict, c: Dict):
  """Comparison `c`'s two recipes' runs (runs_detail) and the seed-0 runs both have, sorted."""
  mine, other = (t["recipes"][c[k]]["runs_detail"] for k in ("recipe", "against"))
  return mine, other, [run for run in sorted(mine) if run.endswith("_seed0") and run in other]


def against_noise(t: Dict, c: Dict) -> Optional[float]:
  """The seed noise of the recipe comparison `c` is read against (mean |seed 0 - seed 1|), or
  None while no fold of it has run with two seeds."""
  gaps = t["recipes"][c["against"]].get("seed_gaps")
  return statistics.mean(gaps) if gaps else None


def noise_wait(c: Dict) -> str:
  """A complete reading's sentence while the recipe it is read against has no seed noise."""
  return (f"The reading waits for the seed noise of {c['against']}: no fold of it has run "
          "with two seeds yet.")


def curve_folds(src: Sources, t: Dict, c: Dict):
  """Learning curve `c`'s seed-0 folds run by both recipes, their gaps (more subjects minus
  fewer: the comparison's paired gains, negated) and the two training-subject counts."""
  done = paired_seed0(t, c)[2]
  counts = tuple(len(trained_subjects(src, c[k], done[0])) for k in ("recipe", "against")
                 ) if done else None
  return done, [-c["paired_gains"][run] for run in done], counts


def curve_step(t: Dict, c: Dict, gaps: List[float], counts: Tuple[int, int]) -> Optional[float]:
  """The rule section 11 states before the curve's runs: data-limited when its mean gap over
  every fold exceeds the seed noise of the recipe on more subjects; then the gap read forward
  on a log-linear curve (Dice = a + b ln n through both points) from counts[1] to CURVE_TO
  training subjects. None while folds are missing or when it is not data-limited."""
  if not c["complete"] or not gaps:
    return None
  gap, noise = statistics.mean(gaps), against_noise(t, c)
  if noise is None or gap <= noise:
    return None
  return gap * np.log(CURVE_TO / counts[1]) / np.log(counts[1] / counts[0])


def curve_reading(t: Dict, c: Dict, gaps: List[float], counts: Tuple[int, int]) -> str:
  """Learning curve `c` read by curve_step's rule, in words."""
  noise = against_noise(t, c)
  gap, step = statistics.mean(gaps), curve_step(t, c, gaps, counts)
  if not c["complete"]:
    return (f"{len(gaps)} of {len(c['folds_needed'])} folds have run; the reading waits for "
            f"all of them (mean gap so far {gap:+.4f}).")
  if noise is None:
    return noise_wait(c)
  head = (f"Mean gap over the {len(gaps)} folds **{gap:+.4f}**, against the seed noise "
          f"{noise:.4f} of {c['against']} (mean |seed 0 - seed 1| over its folds): ")
  if step is None:
    return head + (f"within it, so from {counts[0]} to {counts[1]} training subjects the "
                   "recipe is not measurably data-limited, and there is no slope to read "
                   "forward.")
  return head + (f"beyond it, so the recipe is data-limited at this scale. Read forward on a "
                 f"log-linear curve, training on {CURVE_TO} subjects instead of {counts[1]} "
                 f"would add about {step:+.4f} (ln({CURVE_TO}/{counts[1]}) / "
                 f"ln({counts[1]}/{counts[0]}) of the gap): an extrapolation with the caveats "
                 "above, not a measurement.")


def results_learning_curve(src: Sources) -> str:
  """The campaign's learning curves (comparisons of kind learning_curve): per seed-0 fold, the
  recipe on fewer training subjects against the same recipe on all 6 of the fold, paired on its
  validation pair."""
  t = src.json(CAMPAIGN)
  out = []
  for c in (c for c in t.get("comparisons", []) if c["kind"] == CURVE):
    done, gaps, counts = curve_folds(src, t, c)
    if not done:
      out.append(f"No fold of {c['recipe']} has finished yet (queued in {CAMPAIGN_PLAN}).")
      continue
    few, full, _ = paired_seed0(t, c)
    rows = [curve_row(src, c, run, (few[run], full[run]), gap) for run, gap in zip(done, gaps)]
    out.append(table(["fold", "validation subjects"] +
                     [f"trained on ({n} subjects)" for n in counts] +
                     [f"Dice, {n} subjects" for n in counts] +
                     ["gap", "INL gap", "OPL gap", "gap without fluid", "gap with fluid",
                      f"epoch-selection gain, {counts[0]} / {counts[1]}",
                      f"boundary MAE (um), {counts[0]} / {counts[1]}"], rows)
               + "\n\n" + curve_reading(t, c, gaps, counts))
  return "\n\n".join(out)


def validation_free_row(src: Sources, c: Dict, run: str, pair: Tuple[Dict, Dict]) -> List[str]:
  """One fold of comparison `c` (a recipe trained without a validation pair against the one
  with it): the subjects its eval scored (metrics.json's per-subject scores, which must be the
  other's validation pair), both mean layer Dice, the difference in it, INL and OPL, the kept
  and last epochs, both boundary MAEs and both padded training widths."""
  mine, other = pair
  runs = [f"{CAMPAIGN_RUNS}/{c[k]}/{run}" for k in ("recipe", "against")]
  scored = scored_subjects(src.json(f"{runs[0]}/{METRICS}"))
  splits = [src.json(f"{r}/split.json") for r in runs]
  val = sorted(splits[1]["val"]["subjects"])
  if scored != val:
    raise SystemExit(f"{runs[0]} scored subjects {scored}, not {c['against']}'s validation "
                     f"pair {val}")
  diffs = [mine["mean_layer_dice"] - other["mean_layer_dice"]] + [
      mine["layer_dice"][k] - other["layer_dice"][k] for k in (2, 3)]
  return ([run.split("_")[0].replace("fold", ""), ", ".join(map(str, val)),
           f"{mine['mean_layer_dice']:.4f}", f"{other['mean_layer_dice']:.4f}"]
          + [f"{d:+.4f}" for d in diffs]
          + [f"{r['selected_epoch']} of {r['last_epoch']}" for r in pair]
          + [f"{mine['boundary_mae_um']:.2f} / {other['boundary_mae_um']:.2f}",
             " / ".join(str(sp["input_shape"][1]) for sp in splits)])


def validation_free_verdict(src: Sources, t: Dict, c: Dict, diffs: List[float]):
  """Comparison `c` by the rule section 11 states before its runs: (the mean paired difference
  `diffs` over the seed-0 folds, the tolerance: the other recipe's seed noise (None while it
  has none), the step the recipe's learning curve reads forward to CURVE_TO subjects
  (curve_step; 0 when the curve reads none), and whether the members trained on every subject
  replace the recipe's: the difference above minus the noise and, with the step, positive)."""
  diff, noise = statistics.mean(diffs), against_noise(t, c)
  curves = [k for k in t["comparisons"] if k["kind"] == CURVE and k["against"] == c["against"]]
  step = next((curve_step(t, k, *curve_folds(src, t, k)[1:]) for k in curves), None) or 0.0
  return diff, noise, step, noise is not None and diff > -noise and diff + step > 0


def validation_free_reading(src: Sources, t: Dict, c: Dict, diffs: List[float]) -> str:
  """Comparison `c` read by validation_free_verdict's rule, in words."""
  diff, noise, step, passed = validation_free_verdict(src, t, c, diffs)
  if not c["complete"]:
    return (f"{len(diffs)} of {len(c['folds_needed'])} folds have run; the reading waits for "
            f"all of them (mean difference so far {diff:+.4f}).")
  if noise is None:
    return noise_wait(c)
  return (f"Mean difference over the {len(diffs)} folds **{diff:+.4f}** (tolerance: minus the "
          f"seed noise {noise:.4f} of {c['against']}); with the learning curve's step to "
          f"{CURVE_TO} subjects ({step:+.4f}, an extrapolation) the expected net change is "
          f"{diff + step:+.4f}: " + (
              "by the rule above the members trained on all 8 subjects replace pretrained/'s "
              "(no loss beyond the tolerance and an extrapolated net gain, not a measured one)."
              if passed else "by the rule above pretrained/ keeps its fold models."))


def results_validation_free(src: Sources) -> str:
  """The campaign's recipes trained without a validation pair (kind validation_free) against
  the recipe they are read against, per seed-0 fold, paired on the held-out pair."""
  t = src.json(CAMPAIGN)
  out = []
  for c in (c for c in t.get("comparisons", []) if c["kind"] == VALIDATION_FREE):
    mine, other, done = paired_seed0(t, c)
    if not done:
      out.append(f"No fold of {c['recipe']} has finished yet (queued in {CAMPAIGN_PLAN}).")
      continue
    rows = [validation_free_row(src, c, run, (mine[run], other[run])) for run in done]
    out.append(table(["fold", "held-out subjects", f"Dice, {c['recipe']}",
                      f"Dice, {c['against']}", "difference", "INL difference",
                      "OPL difference", "kept epoch, no validation pair",
                      "kept epoch, validation pair", "boundary MAE (um), without / with",
                      "padded training width, without / with"], rows)
               + "\n\n" + validation_free_reading(src, t, c,
                                                    [c["paired_gains"][r] for r in done]))
  return "\n\n".join(out)


def results_validation_free_settings(src: Sources) -> str:
  """pretrained/'s smoothing sd and single-model flag threshold chosen again on the
  validation-free fold models, each on its held-out pair (VALIDATION_FREE_SETTINGS: run.sh's
  smoothing_cv.json and flag_threshold_cv.json), beside the settings pretrained/ ships."""
  folder = VALIDATION_FREE_SETTINGS
  if not src.exists(f"{folder}/flag_threshold_cv.json"):
    return f"Not run yet ({folder}/run.sh)."
  smooth = src.json(f"{folder}/smoothing_cv.json")
  cv = smooth["sets"]["noval"]["cv"]
  flag = src.json(f"{folder}/flag_threshold_cv.json")["sets"]["noval"]["flags"]["position_sd"]
  shipped = src.json("pretrained/ensemble.json")["settings"]
  per_fold = ", ".join(f"{v['sd']:g}" for v in cv["per_fold"].values())
  return (f"Chosen again on the {len(cv['per_fold'])} validation-free fold models, each on "
          f"its held-out pair (`{folder}/run.sh` at {smooth['provenance']['git']['commit'][:7]}, "
          "the shared 2-core CPU): boundary smoothing sd "
          f"**{cv['chosen_sd']:g}** columns (pretrained/ ships "
          f"{shipped['predict.smooth_sd_columns']:g}; chosen on the other folds: {per_fold}), "
          f"with a leave-one-fold-out gain of {cv['mean_gain']:+.4f} mean layer Dice; a single "
          f"model's position-sd flag at **{fmt_um(flag['cv']['chosen_um'])} um** (pretrained/ "
          f"ships {fmt_um(shipped['predict.uncertain_position_sd_um'])} um"
          + (", its ensemble's, which flags by the position sd, chosen on the seed ensembles "
             "by the rule below" if not shipped.get("predict.uncertain_um", 1.0) else "")
          + f"), held-out F1 {fmt(flag['cv']['held_out_mean']['f1'], 2)} with each fold's "
          "threshold chosen on the other folds.")


SMOOTHING_KINDS = (("cv.json", "one fold model"), ("cv_pairs.json", "2 fold models, averaged"))
OPL_ONL = BOUNDARY_NAMES.index("OPL/ONL")


def smoothing_gain_row(name: str, kind: str, st: Dict) -> List[str]:
  """One set's leave-one-fold-out reading: sd per fold, Dice and MAE at sd 0 -> chosen sd,
  the gains per fold, and the gains in the columns without and with fluid."""
  folds, per = st["folds"], st["cv"]["per_fold"]
  at = {f: folds[f]["by_sd"][f"{per[f]['sd']:g}"] for f in folds}
  zero = {f: folds[f]["by_sd"]["0"] for f in folds}

  def mean(of, key):
    return float(np.mean([of[f][key] for f in folds]))

  def split_gain(group):
    key = "mean_layer_dice_by_fluid_columns"
    return float(np.mean([at[f][key][group] - zero[f][key][group] for f in folds]))
  held = "; ".join(", ".join(map(str, folds[f]["subjects"])) for f in folds)
  return [name, kind, held, ", ".join(f"{per[f]['sd']:g}" for f in folds),
          f"{mean(zero, 'mean_layer_dice'):.4f} → {mean(at, 'mean_layer_dice'):.4f}",
          ", ".join(f"{per[f]['gain']:+.4f}" for f in folds), f"**{st['cv']['mean_gain']:+.4f}**",
          f"{mean(zero, 'mean_boundary_mae_um'):.2f} → {mean(at, 'mean_boundary_mae_um'):.2f}",
          f"{split_gain('without_fluid'):+.4f} / {split_gain('with_fluid'):+.4f}"]


def results_smoothing(src: Sources) -> str:
  """Boundary smoothing along the B-scan, chosen by cross-validation (scripts/smoothing_cv.py):
  the leave-one-fold-out gains of each set with 2 or more folds, then every set's mean layer
  Dice at each sd."""
  rows, by_sd, gains, bias = [], [], [], []
  for fname, kind in SMOOTHING_KINDS:
    sds = src.json(f"{SMOOTHING}/{fname}")["sds"]
    for name, st in smoothing_sets(src, fname).items():
      if st["cv"]:
        rows.append(smoothing_gain_row(name, kind, st))
        gains += [v["gain"] for v in st["cv"]["per_fold"].values()]
        bias.append(f"{name} {wet_opl_onl_bias(st, False):+.1f} → "
                    f"{wet_opl_onl_bias(st, True):+.1f}")
      by_sd.append([name, kind, str(len(st["folds"]))] + [
          f"{np.mean([f['by_sd'][f'{sd:g}']['mean_layer_dice'] for f in st['folds'].values()]):.4f}"
          for sd in sds])
  first = table(["fold models", "each", "held out", "sd chosen on the other folds (columns)",
                 "mean layer Dice, sd 0 → chosen", "gain per fold", "mean gain",
                 "boundary MAE (um), sd 0 → chosen", "gain without / with fluid"], rows)
  second = table(["fold models", "each", "folds"] + [f"sd {sd:g}" for sd in sds], by_sd)
  positive = sum(g > 0 for g in gains)
  return (first + f"\n\n{positive} of the {len(gains)} held-out fold gains are positive "
          f"({min(gains):+.4f} to {max(gains):+.4f}). In the columns with fluid, the mean signed "
          f"{BOUNDARY_NAMES[OPL_ONL]} error (um, sd 0 → chosen sd; negative = above the grader's): "
          + "; ".join(bias) + ".\n\nMean layer Dice over each set's folds at every sd (0 = no "
          "smoothing; sd in columns):\n\n" + second)


def wet_opl_onl_bias(st: Dict, smoothed: bool) -> float:
  """A set's mean over folds of the signed OPL/ONL error in the columns with fluid, at sd 0 or
  at each fold's chosen sd."""
  folds, per = st["folds"], st["cv"]["per_fold"]
  return float(np.mean([
      folds[f]["by_sd"][f"{per[f]['sd']:g}" if smoothed else "0"][
          "boundary_signed_um_by_fluid_columns"]["with_fluid"][OPL_ONL] for f in folds]))


def results_fluid_columns(src: Sources) -> str:
  """Per predictor, the order-fixed scores in the columns without and with grader-marked fluid:
  the mean over the 4 folds of each fold's numbers (columns summed), and how the re-scored
  overall mean layer Dice compares with the scoring at the end of training."""
  rows, drift = [], []
  for folder, label, runs_dir in FLUID_COLUMN_MODELS:
    runs = fluid_column_runs(src, folder)
    splits = [r["topology"]["by_fluid_columns"] for r in runs]
    groups = {g: fluid_column_means(splits, g) for g in ("without_fluid", "with_fluid")}
    total = sum(m["columns"] for m in groups.values())
    for group, m in groups.items():
      rows.append([label, group.replace("_", " ")] + fluid_column_cells(m, total))
    for f, r in enumerate(runs):
      at_training = src.json(f"{runs_dir}/{folder}/fold{f}_seed0/{METRICS}")
      drift.append(abs(r["topology"]["literature"]["mean_layer_dice"]
                       - at_training["topology"]["literature"]["mean_layer_dice"]))
  return (table(["fold models", "columns"] + FLUID_COLUMN_HEADER, rows)
          + "\n\n" + fluid_column_spread(src) + " " + targets_in_columns(src)
          + " Re-scored here, every fold model's overall mean "
          f"layer Dice (order fix) is within {max(drift):.1e} of its score at the end of training "
          "(the H200 runs were scored on the H200).")


def wet_error_shares(splits: List[Dict]) -> Tuple[np.ndarray, float]:
  """(per boundary, over all 8) the share of the summed absolute boundary error (MAE x known
  columns, over the runs' by_fluid_columns records) that lies in the columns with fluid."""
  summed = {g: np.sum([np.asarray(s[g]["geometry"]["mae_um"])
                       * np.asarray(s[g]["geometry"]["columns"]) for s in splits], axis=0)
            for g in ("with_fluid", "without_fluid")}
  wet, everywhere = summed["with_fluid"], summed["with_fluid"] + summed["without_fluid"]
  return wet / everywhere, float(wet.sum() / everywhere.sum())


def fluid_column_spread(src: Sources) -> str:
  """Per FLUID_COLUMN_MODELS predictor: the OPL/ONL bias in the columns with fluid fold by fold,
  and the share of the summed absolute boundary error (MAE x known columns, over the 4 folds)
  that lies in those columns: all 8 boundaries, INL/OPL and OPL/ONL."""
  parts = []
  for folder, _, _ in FLUID_COLUMN_MODELS:
    splits = fluid_column_splits(src, folder)
    folds = np.array([s["with_fluid"]["geometry"]["signed_um"][4] for s in splits])
    worst = int(np.argmax(np.abs(folds)))
    bias = (", ".join(f"{b:+.1f}" for b in folds) + f" um (mean {folds.mean():+.1f}; without "
            f"fold {worst}, {np.delete(folds, worst).mean():+.1f})")
    share, total = wet_error_shares(splits)
    parts.append(f"{folder}: OPL/ONL bias with fluid, folds 0-3, {bias}; share of the summed "
                 f"absolute boundary error in the columns with fluid {100 * total:.0f}% (all 8 "
                 f"boundaries), {100 * share[3]:.0f}% (INL/OPL), {100 * share[4]:.0f}% (OPL/ONL)")
  return "; ".join(parts) + "."


def targets_in_columns(src: Sources) -> str:
  """Issue 25's targets (TARGETS) met or not by each FLUID_COLUMN_MODELS predictor in each
  column group, from the 4-fold means."""
  parts = []
  for folder, _, _ in FLUID_COLUMN_MODELS:
    for group in ("without_fluid", "with_fluid"):
      m = fluid_column_means(fluid_column_splits(src, folder), group)
      have = {"mean layer Dice": m["dice"], "lowest layer Dice": float(np.min(m["layers"])),
              "boundary MAE (um)": float(np.mean(m["mae"]))}
      met = [name for name, (goal, op) in TARGETS.items()
             if (have[name] >= goal if op == ">=" else have[name] <= goal)]
      parts.append(f"{folder} {group.replace('_', ' ')}: "
                   + (and_list(met) + " met" if met else "none met")
                   + f" (lowest layer {have['lowest layer Dice']:.3f})")
  goals = ", ".join(f"{name} {op} {goal}" for name, (goal, op) in TARGETS.items())
  return f"Against the issue's targets ({goals}), 4-fold means: " + "; ".join(parts) + "."


def pretrained_fluid_columns(src: Sources) -> str:
  """pretrained/'s held-out models (held_out_models) scored apart in the columns with and
  without fluid: their runs' own evals (eval splits every score by fluid columns)."""
  n = shipped_numbers(src)
  runs = [m["metrics"] for m in n["models"]]
  splits = [r["topology"]["by_fluid_columns"] for r in runs]
  wet, dry = (fluid_column_means(splits, g) for g in ("with_fluid", "without_fluid"))
  share = 100 * wet["columns"] / (wet["columns"] + dry["columns"])

  def scores(m):
    return (f"mean layer Dice {m['dice']:.3f} (INL {m['layers'][2]:.3f}, OPL "
            f"{m['layers'][3]:.3f}) and boundary MAE {np.mean(m['mae']):.1f} um")
  sd = {r["topology"].get("smooth_sd_columns", 0.0) for r in runs}
  smoothing = ("no boundary smoothing" if sd == {0.0} else "boundary smoothing sd "
               + ", ".join(f"{v:g}" for v in sorted(sd)) + " columns")
  whose = "fold model" if n["stand_ins"] else "member"
  biases = [s["with_fluid"]["geometry"]["signed_um"][4] for s in splits]
  recipe, _, seed = run_parts(n["models"][0]["run"])
  named = f"seed-{seed} fold model of `{recipe}`" if n["stand_ins"] else "member"
  return (f"Where it is weakest (each {named} on its own held-out subjects, order fix on, "
          f"{smoothing}; docs/results.md section 9): in the B-scan columns where the grader "
          "marked fluid "
          f"({wet['columns']} of {wet['columns'] + dry['columns']} held-out columns, "
          f"{share:.0f}%), {scores(wet)}, with a mean signed OPL/ONL error of "
          f"{wet['bias'][4]:+.1f} um (negative: above the grader's; {whose}s "
          + ", ".join(f"{b:+.1f}" for b in biases) + " um"
          + (": its sign changes from fold to fold, so it is no fixed offset" if min(biases) < 0
             < max(biases) else "") + "); in the columns without "
          f"fluid, {scores(dry)}. Layer boundaries drawn through cysts are the least reliable "
          "part of its output.")


TABLES: Dict[str, Callable[[Sources], str]] = {
    f.__name__: f for f in (
        readme_predict_time, readme_explain, readme_results,
        results_seed_noise, results_paper, results_paper_classes, results_paper_iou_gap,
        results_cv_layers, results_cv_folds, results_cv_boundaries, results_gpu_ablations,
        results_gpu_ablations_noise, results_topology, results_topology_effect, results_cam,
        results_cam_localisation, results_cam_compare_gradcam, results_cam_compare_others,
        results_cam_compare_subject01, results_cam_cost_subject01, results_road_vs_deletion,
        results_cam_pretrained, results_cam_pretrained_summary,
        results_explain_time, results_crop_recipe, results_cpu_run, results_cpu_fold0,
        results_cpu_ablations, results_cpu_ablation_layers, results_cpu_reading,
        results_campaign_levers,
        results_campaign_layers, results_campaign_boundaries, results_campaign_fluid,
        results_campaign_ensembles, results_uncertainty_smoothing, results_position_sd,
        results_flag_threshold, results_seed1_retrained, results_h200_levers,
        results_h200_layers, results_h200_boundaries, results_fluid_columns,
        results_campaign_fluid_columns, results_learning_curve, results_validation_free,
        results_validation_free_settings, results_cam_heldout_noval, results_ensemble_flag_rule,
        results_ensemble_size,
        results_cam_heldout,
        results_cam_default, results_cam_heldout_shipped, results_cam_heldout_shipped_6scans,
        results_cam_shipped, results_explain_cost,
        performance_predict_throughput, performance_predict_targets,
        performance_geometry_position_sd, performance_gpu_speed,
        performance_gpu_paper_training, performance_bf16_vs_fp32, performance_compile_cache,
        performance_cpu_compare, performance_cpu_layer_rewrites, performance_cpu_profile,
        performance_conv_grads, performance_cpu_allocator, performance_cpu_earlier_round,
        previous_schedule, previous_training, previous_cv, pretrained_recipe, pretrained_members,
        pretrained_accuracy, pretrained_fluid_columns, pretrained_cost, pretrained_uncertainty,
        results_smoothing)}


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


def unpaired_markers(text: str) -> List[str]:
  """Names of generated markers that are not part of a complete block (an opening marker
  without its closing partner, or the reverse): such a block would never be checked."""
  paired = BLOCK.sub("", text)
  return [m.group("name") for m in MARKER.finditer(paired)]


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
    problems += [f"{doc}: marker generated:{name} is not part of a complete block"
                 for name in unpaired_markers(text)]
    problems += [f"{doc}: table row with numbers outside a generated block: {row[:80]}"
                 for row in stray_table_rows(text)]
  return problems


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
