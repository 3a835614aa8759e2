"""Runs the Duke experiments of docs/results.md and collects their numbers.

  python scripts/run_experiments.py --plan=gpu --out=runs/experiments --duke_dir=DIR
  python scripts/run_experiments.py --campaign      # the accuracy campaign (configs/campaign.json)
  python scripts/run_experiments.py --status        # its runs: done, running, queued; compute left

Each experiment trains in OUT/runs/NAME/foldK, then scores the best checkpoint on its
validation subjects at native resolution (--mode=eval), and appends to OUT/results.json. Runs
are started in priority order until --budget_s is spent; a run that would start later is
recorded as skipped. Plans: 'gpu' (everything, for one GPU session) and 'cpu' (fold 0 of
configs/duke_cpu.py, then its resize ablation, a second seed and the other ablations on fold 0).

Issue 13's lever plans ('levers_cpu', 'levers_gpu', at commit e868cbe and before) were
retired: the accuracy campaign (--campaign) screens levers, and scripts/campaign_table.py is
the one lever table and adoption rule.
"""

import argparse
import json
import os
import statistics
import sys
import time
import traceback

if __name__ == "__main__" and {"--campaign", "--status"} & set(sys.argv[1:]):
  # The campaign runner (scripts/campaign.py) does no JAX work: dispatch before importing it.
  import campaign
  sys.exit(campaign.main([a for a in sys.argv[1:] if a != "--campaign"]))

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from octseg_jax.runtime import xla_setup  # noqa: E402

xla_setup.apply_cpu_flags()

from configs import duke_cpu, duke_gpu, segnet  # noqa: E402
from configs.ablations import ABLATIONS  # noqa: E402
from octseg_jax.modes import benchmark  # noqa: E402
from octseg_jax.modes import cli
from octseg_jax.modes import evaluate
from octseg_jax.modes import explain
from octseg_jax.runtime import provenance
from octseg_jax.training import train
from octseg_jax import layout  # noqa: E402
from octseg_jax.config.paths import apply_overrides  # noqa: E402
from octseg_jax.config.schema import FIELDS  # noqa: E402
from octseg_jax.outputs import training_log  # noqa: E402
from octseg_jax.outputs.atomic import write_json  # noqa: E402


SMOKE = {}   # --smoke: tiny models, one epoch, to check the plan end to end on a CPU


def configure(module, duke_dir, overrides):
  c = module.get_config()
  c.data.duke_dir = duke_dir
  return apply_overrides(c, {**overrides, **SMOKE})


def short(metrics_json):
  """The numbers results.json keeps from an eval's metrics.json."""
  raw, fix = metrics_json["raw"], metrics_json["topology"]
  return {
      "accuracy": raw["paper"]["accuracy"], "global_dice_soft": raw["paper"]["global_dice_soft"],
      "global_iou_soft": raw["paper"]["global_iou_soft"], "class_iou": raw["paper"]["class_iou"],
      "class_accuracy": raw["paper"]["class_accuracy"],
      "layer_dice": raw["literature"]["layer_dice"],
      "mean_layer_dice": raw["literature"]["mean_layer_dice"],
      "boundary_mae_um": raw["geometry"]["mae_um"],
      "boundary_mae_um_subpixel": raw["geometry_subpixel"]["mae_um"],
      "thickness_mae_um": raw["geometry"]["thickness_mae_um"],
      "topology": {"mean_layer_dice": fix["literature"]["mean_layer_dice"],
                   "layer_dice": fix["literature"]["layer_dice"],
                   "accuracy": fix["paper"]["accuracy"],
                   "boundary_mae_um": fix["geometry"]["mae_um"],
                   "columns_fixed": fix["columns_fixed"], "columns_total": fix["columns_total"]},
  }


class Runner:
  def __init__(self, out, budget_s):
    self.out, self.budget_s, self.start = out, budget_s, time.time()
    self.results_path = os.path.join(out, "results.json")
    self.results = {}
    if os.path.exists(self.results_path):
      with open(self.results_path) as f:
        self.results = json.load(f)

  def left(self):
    return self.budget_s - (time.time() - self.start)

  def save(self):
    write_json(self.results_path, self.results)

  def train_eval(self, name, key, config, min_left_s):
    entry = self.results.setdefault(name, {})
    if key in entry and not {"error", "skipped"} & set(entry[key]):
      return entry[key]
    if self.left() < min_left_s:
      entry[key] = {"skipped": f"budget: {self.left():.0f} s left, needs ~{min_left_s} s"}
      self.save()
      return None
    workdir = os.path.join(self.out, "runs", name, key)
    t = time.time()
    try:
      best = train.train_and_evaluate(config, workdir)
      train_s = time.time() - t
      if not os.path.exists(os.path.join(workdir, layout.PROVENANCE_FILE)):   # train writes one
        provenance.write(workdir, config, wall_time_s=train_s)
      metrics = evaluate.run(workdir, None, workdir)
      epochs = len(training_log.workdir_rows(workdir))
      entry[key] = {"best_epoch": best.get("epoch"), "epochs": epochs, "train_s": train_s,
                    "best_val_loss": best.get("loss"), "native": short(metrics),
                    "model_resolution_val": {"accuracy": best["paper"]["accuracy"],
                                             "global_dice_soft": best["paper"]["global_dice_soft"],
                                             "mean_layer_dice": best["literature"]["mean_layer_dice"]},
                    "val_subjects": metrics.get("data")}
    except Exception as e:  # keep going: one failed run must not lose the others
      entry[key] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
    print(f"[{time.time() - self.start:.0f}s] {name}/{key}: "
          f"{json.dumps(entry[key])[:300]}", flush=True)
    self.save()
    return entry[key]


NUM_FOLDS = FIELDS["data.num_folds"].default   # the configs' subject-wise folds


def folds(runner, name, module, duke_dir, overrides, min_left_s, fold_list=range(NUM_FOLDS)):
  for f in fold_list:
    cfg = configure(module, duke_dir, {**overrides, "data.split": "subject", "data.fold": f})
    runner.train_eval(name, f"fold{f}", cfg, min_left_s)


def plan_gpu(runner, duke_dir):
  bench_dir = os.path.join(runner.out, "benchmark")
  for tag, module, dtype in (("paper_fp32", segnet, "float32"), ("paper_bf16", segnet, "bfloat16"),
                             ("duke_gpu_fp32", duke_gpu, "float32")):
    path = os.path.join(bench_dir, tag)
    if not os.path.exists(os.path.join(path, "benchmark.json")):
      cfg = configure(module, duke_dir, {"train.compute_dtype": dtype, "benchmark.steps": 10,
                                         "benchmark.warmup": 3})
      try:
        benchmark.run(cfg, path)
      except Exception as e:
        print(f"benchmark {tag} failed: {e}", flush=True)
  # Paper protocol: random 80/20 split of B-scans, paper preprocessing and model, 100 epochs.
  paper = configure(segnet, duke_dir, {"train.checkpoint_every": 25})
  runner.train_eval("paper_protocol", "random_split", paper, 60)
  bf16 = configure(segnet, duke_dir, {"train.checkpoint_every": 25,
                                      "train.compute_dtype": "bfloat16"})
  runner.train_eval("paper_protocol_bf16", "random_split", bf16, 60)
  paper_dir = os.path.join(runner.out, "runs", "paper_protocol", "random_split")
  if os.path.isdir(os.path.join(paper_dir, layout.BEST_DIR)):
    try:
      explain.run(paper_dir, os.path.join(duke_dir, "subject_01.npz"),
                  os.path.join(runner.out, "explain_paper"))
    except Exception as e:
      print(f"explain failed: {e}", flush=True)
  # Literature protocol: 4-fold subject-wise CV of our configuration.
  folds(runner, "duke_gpu", duke_gpu, duke_dir, {}, 40)
  # Pretrained model on all subjects for the median best epoch of the folds.
  cv = [v.get("best_epoch") for v in runner.results.get("duke_gpu", {}).values()
        if isinstance(v, dict) and v.get("best_epoch")]
  epochs = int(statistics.median(cv)) if cv else 40
  final = configure(duke_gpu, duke_dir, {"data.split": "all", "train.num_epochs": epochs,
                                         "train.early_stopping_patience": 1000,
                                         "train.plateau_patience": 1000})
  runner.train_eval("pretrained_all_subjects", "all", final, 30)
  # Ablations: fold 0 of each first, then the remaining folds while the budget lasts.
  for f in range(NUM_FOLDS):
    for name, overrides in ABLATIONS.items():
      folds(runner, name, duke_gpu, duke_dir, overrides, 40, [f])


def plan_cpu(runner, duke_dir):
  folds(runner, "duke_cpu", duke_cpu, duke_dir, {}, 0, [0])
  # Fold 0 at the CPU configuration: the ablation the GPU session did not reach (resize), a
  # second seed (how far one seed's numbers move), then the other ablations while the budget
  # lasts. Each run needs ~20-35 min on 2 cores.
  folds(runner, "duke_cpu_resize_256", duke_cpu, duke_dir, ABLATIONS["resize_256"], 1500, [0])
  folds(runner, "duke_cpu_seed1", duke_cpu, duke_dir, {"seed": 1}, 2100, [0])
  for name in ("transpose_upsampling", "skip_concat", "ce_only"):
    folds(runner, f"duke_cpu_{name}", duke_cpu, duke_dir, ABLATIONS[name], 2100, [0])


PLANS = {"gpu": plan_gpu, "cpu": plan_cpu}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
  parser.add_argument("--plan", choices=sorted(PLANS), default="gpu",
                      help="the experiment grid (with --campaign or --status: a plan file, "
                           "default configs/campaign.json)")
  parser.add_argument("--out", help="the grid's output folder (required without --campaign "
                                    "and --status)")
  parser.add_argument("--duke_dir", default=FIELDS["data.duke_dir"].default)
  parser.add_argument("--budget_s", type=float, default=480)
  parser.add_argument("--smoke", action="store_true")
  campaign_flags = parser.add_argument_group(
      "the accuracy campaign (scripts/campaign.py; each of these runs it instead of a grid)")
  campaign_flags.add_argument("--campaign", action="store_true",
                              help="start (or restart) the runner of the plan's queue")
  campaign_flags.add_argument("--status", action="store_true",
                              help="what is done, running and queued, and the compute left")
  campaign_flags.add_argument("--state", help="the runner's state folder (default ../campaign)")
  args = parser.parse_args()
  if not args.out:
    parser.error("--out is required (unless --campaign or --status is given)")
  if args.state:
    parser.error("--state: only with --campaign or --status")
  if args.smoke:
    SMOKE.update({"model.widths": (4, 8), "train.num_epochs": 1, "benchmark.steps": 1,
                  "benchmark.warmup": 0, "train.batch_size": 4, "train.eval_batch_size": 4})
  cli.enable_compilation_cache(os.path.join(os.path.abspath(args.out), "xla_cache"))
  os.makedirs(args.out, exist_ok=True)
  runner = Runner(args.out, args.budget_s)
  PLANS[args.plan](runner, os.path.abspath(args.duke_dir))
  provenance.write(args.out, wall_time_s=time.time() - runner.start,
                   extra={"plan": args.plan, "budget_s": args.budget_s, "smoke": args.smoke})
  print(f"done in {time.time() - runner.start:.0f} s; results in {runner.results_path}")


if __name__ == "__main__":
  main()
