"""Which CAM method and layer to explain by default? ROAD faithfulness and the randomisation
sanity check of every method on layers from the bottleneck to the head, on a few scans.

  python scripts/compare_cams.py --workdir=../campaign/runs/base/fold3_seed0 --output=OUT \
      --scans=../shared/data/duke_dme_chiu2015/subject_07.npz:3,../shared/data/duke_dme_chiu2015/subject_08.npz:3

WORKDIR is one training workdir (a fold model explains the subjects it never trained on); an
ensemble workdir such as pretrained/ is explained with gradcam and hirescam only.

Per method and layer: the ROAD most-relevant-first and random-order areas per class (means over
the scans), how many of the 7 layer classes beat random, and the mean cascade Spearman
similarity (sanity check on the first scan). Ablation-CAM reruns the network once per channel,
so its sanity check is limited to --ablation_sanity_layers. Writes compare_cams.json and
compare_cams.md (results are saved after every method). --resume keeps the methods an
interrupted run of the same model, scans and layers already saved, and computes the rest.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from octseg_jax.runtime import xla_setup  # noqa: E402

xla_setup.apply_cpu_flags()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from octseg_jax.modes import explain  # noqa: E402
from octseg_jax.cam import faithfulness  # noqa: E402
from octseg_jax.cam import gradcam  # noqa: E402
from octseg_jax.data import inputs  # noqa: E402
from octseg_jax.anatomy import LAYER_NAMES  # noqa: E402
from octseg_jax.outputs.cam_report import (  # noqa: E402
    EVIDENCE_TARGET, SCAN_PIXELS, retinal_classes)
from octseg_jax.serving import inference  # noqa: E402
from octseg_jax.serving.workdir import read_json  # noqa: E402
from octseg_jax.outputs.atomic import write_json, write_text  # noqa: E402
from octseg_jax.outputs.report import fmt, table  # noqa: E402

LAYERS = ("enc3_conv1", "dec3_conv1", "dec2_conv1", "dec1_conv1", "dec0_conv0", "dec0_conv1",
          "head")


def load_scans(spec: str):
  out = []
  for item in spec.split(","):
    path, index = item.rsplit(":", 1)
    scans = inputs.load_path(path)[0]
    i = int(index)
    out.append((scans.names[i], scans.images[i], None if scans.masks is None else scans.masks[i]))
  return out


def method_results(trained, method, layers, sanity_layers, scans, key):
  """ROAD MoRF/random areas per scan and layer, and cascade similarities on the first scan."""
  explainer = explain.make_explainer(trained, layers, method, EVIDENCE_TARGET)
  res = {l: {"morf": [], "random": []} for l in layers}
  timing = {"maps_s": [], "road_s": []}
  for s, (name, image, mask) in enumerate(scans):
    x, _, place = inference.prepare(trained, image, mask)
    t0 = time.perf_counter()
    extent = (place.model_rows, place.model_cols)      # x beyond it pads the scan
    out = explainer.explain(x[None], extent=extent)
    jax.block_until_ready(out["logits"])
    timing["maps_s"].append(time.perf_counter() - t0)
    weights = np.asarray(gradcam.score_masks(out["logits"], EVIDENCE_TARGET, (), extent))[0]
    base = np.asarray(faithfulness.class_probability(out["logits"], weights[None]))[0]
    t0 = time.perf_counter()
    for l in layers:
      r = explainer.removal("road", x, np.asarray(out[l]["norm"][:, 0]), weights, base,
                            jax.random.fold_in(key, s), orders=("morf", "random"),
                            extent=extent)
      res[l]["morf"].append(r["morf_area"])
      res[l]["random"].append(r["random_area"])
    timing["road_s"].append(time.perf_counter() - t0)
    if s == 0 and sanity_layers:
      sub = explain.make_explainer(trained, sanity_layers, method, EVIDENCE_TARGET)
      maps = {l: np.asarray(out[l]["raw"][:, 0]) for l in sanity_layers}
      t0 = time.perf_counter()
      san = sub.sanity(x, (), maps, extent, jax.random.key(1))
      timing["sanity_s"] = time.perf_counter() - t0
      for l in sanity_layers:
        res[l]["cascade"] = san[l]["cascade"]
        res[l]["independent"] = san[l]["independent"]
  for l in layers:
    morf, rand = np.mean(res[l]["morf"], 0), np.mean(res[l]["random"], 0)
    res[l].update(morf_mean=morf, random_mean=rand,
                  faithful_classes=int(np.sum((morf < rand)[retinal_classes(len(morf))])))
    if "cascade" in res[l]:
      res[l]["randomisation_similarity"] = float(
          np.nanmean(np.asarray(res[l]["cascade"])[:, retinal_classes(len(morf))]))
  return res, timing


def markdown(result) -> str:
  rows = []
  for method, per in result["methods"].items():
    for l in result["layers"]:
      if l not in per["layers"]:
        continue
      r = per["layers"][l]
      rows.append([method, l, f"{r['faithful_classes']} of 7",
                   fmt(r.get("randomisation_similarity"), 3),
                   " ".join(fmt(float(v), 2) for v in np.asarray(r["morf_mean"])[1:]),
                   " ".join(fmt(float(v), 2) for v in np.asarray(r["random_mean"])[1:])])
  names = ", ".join(n for n, *_ in result["scans"])
  return "\n".join([
      "# CAM methods and layers: ROAD faithfulness and randomisation sanity check", "",
      f"Model {result['workdir']} (epoch {result['epoch']}), scans {names}, target 'all', "
      f"ROAD fractions {result['fractions']}, noise sd {result['noise']}; areas are means over "
      "the scans, similarity = mean cascade Spearman correlation over the 7 layer classes and "
      "9 cascade stages on the first scan (n/a: not computed). Generated by "
      "scripts/compare_cams.py.", "",
      table(["method", "layer", "layer classes with MoRF < random", "randomisation similarity",
             "MoRF area (" + ", ".join(LAYER_NAMES[1:]) + ")", "random area"], rows), ""])


def saved_methods(path: str, result) -> dict:
  """The methods a previous run saved at PATH, if it explained the same model, epoch, scans,
  layers and removal settings as RESULT; exits with one line (status 2) if it did not."""
  if not os.path.exists(path):
    return {}
  saved = read_json(path)
  same = json.loads(json.dumps({k: v for k, v in result.items() if k != "methods"}))
  changed = [k for k, v in same.items() if saved.get(k) != v]
  if changed:
    print(f"error: --resume: {path} was written for another {', '.join(changed)}; "
          "choose another --output", file=sys.stderr)
    sys.exit(2)
  return saved["methods"]


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--workdir", required=True, help="a training workdir")
  p.add_argument("--output", required=True)
  p.add_argument("--scans", required=True, help="FILE:INDEX,FILE:INDEX,...")
  p.add_argument("--methods", default=",".join(gradcam.METHODS))
  p.add_argument("--layers", default=",".join(LAYERS))
  p.add_argument("--ablation_layers", default=",".join(LAYERS))
  p.add_argument("--ablation_sanity_layers", default="dec1_conv1,dec0_conv0,dec0_conv1,head")
  p.add_argument("--sanity_layers", default="", help="limit the sanity check (default: all)")
  p.add_argument("--resume", action="store_true",
                 help="keep the methods already in OUTPUT/compare_cams.json")
  a = p.parse_args()
  trained = inference.load_trained(a.workdir)
  scans = load_scans(a.scans)
  layers = a.layers.split(",")
  os.makedirs(a.output, exist_ok=True)
  explainer = explain.make_explainer(trained, layers[:1], "gradcam", EVIDENCE_TARGET)
  result = {"workdir": a.workdir, "epoch": trained.epoch, "layers": layers,
            "scans": [(n, int(i.shape[0]), int(i.shape[1])) for n, i, _ in scans],
            "fractions": explainer.fractions["road"].tolist(), "noise": explainer.road_noise,
            "pixels": SCAN_PIXELS,   # scores, maps and removal without the padding (2026-12-06)
            "methods": {}}
  if a.resume:
    result["methods"] = saved_methods(os.path.join(a.output, "compare_cams.json"), result)
  for method in a.methods.split(","):
    if method in result["methods"]:
      continue
    mlayers = layers if method != "ablation" else [l for l in layers
                                                   if l in a.ablation_layers.split(",")]
    sanity_layers = (mlayers if method != "ablation" else
                     [l for l in mlayers if l in a.ablation_sanity_layers.split(",")])
    if a.sanity_layers:
      sanity_layers = [l for l in sanity_layers if l in a.sanity_layers.split(",")]
    t0 = time.perf_counter()
    res, timing = method_results(trained, method, mlayers, sanity_layers, scans,
                                 jax.random.key(0))
    result["methods"][method] = {"layers": res, "timing": timing,
                                 "seconds": time.perf_counter() - t0}
    write_json(os.path.join(a.output, "compare_cams.json"), result)
    write_text(os.path.join(a.output, "compare_cams.md"), markdown(result))
    print(f"{method}: {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
  main()
