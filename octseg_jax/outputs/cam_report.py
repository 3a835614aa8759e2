"""cam_stats.json and cam_stats.md of --mode=explain: means over scans, the summary of the
faithfulness and sanity checks, and a report a person can read (pure; writing is the caller's).

Names: a *module* is the network layer a map is taken at (such as dec3_conv1; the config field
explain.layers and the JSON key "layers" name them, as Grad-CAM's "target layers" do); the
*retinal classes* are the 7 layer classes of the retina (1..7).
"""

from typing import Dict, List, Optional

import numpy as np

from octseg_jax.anatomy import LAYER_NAMES
from octseg_jax.learning.metrics import nanmean
from octseg_jax.outputs.report import (NOT_HELD_OUT, epochs_text, fmt, table,
                                       training_overlap, training_overlap_text)

SANITY_PASS = 0.5        # a class passes when its mean cascade Spearman correlation is <= this
TABLE3_KEYS = ("alpha_mean", "max_raw", "mean_norm_intensity", "mass_in_region", "area_share")
ROAD_ORDERS = ("morf", "lerf", "random")
DELETION_ORDERS = ("map", "random")
EVIDENCE_FILE = "cam_evidence.json"   # in a workdir: held-out evidence (scripts/cam_evidence.py)
EVIDENCE_TARGET = "all"     # the CAM target the held-out evidence is measured with (compare_cams)
SCAN_PIXELS = "scan only"   # compare_cams.json `pixels`: scores, maps and removal without padding


def _mean(per_scan: List[Dict], module: str, getter) -> np.ndarray:
  return nanmean(np.stack([np.asarray(getter(p["layers"][module]), np.float64)
                           for p in per_scan]), axis=0)


def module_means(per_scan: List[Dict], module: str) -> Dict:
  """Means over scans of one network module's statistics and removal areas (flat keys)."""
  first = per_scan[0]["layers"][module]
  m = {k: _mean(per_scan, module, lambda s, k=k: s[k]) for k in TABLE3_KEYS}
  m["activation_max"] = float(np.mean([p["layers"][module]["activation_max"] for p in per_scan]))
  alphas = np.stack([p["layers"][module]["alpha"] for p in per_scan])     # [scans, K, C]
  m["alpha_spread"] = float(np.max(np.abs(alphas - alphas.mean(0)))
                            / max(np.max(np.abs(alphas)), 1e-30))
  if "road" in first:
    for o in ROAD_ORDERS:
      m[f"road_{o}_area"] = _mean(per_scan, module, lambda s, o=o: s["road"][f"{o}_area"])
    m["road_beats_random"] = m["road_morf_area"] < m["road_random_area"]
  if "deletion" in first:
    m["deletion_area"] = _mean(per_scan, module, lambda s: s["deletion"]["map_area"])
    m["random_deletion_area"] = _mean(per_scan, module, lambda s: s["deletion"]["random_area"])
    m["deletion_beats_random"] = m["deletion_area"] < m["random_deletion_area"]
  return m


def retinal_classes(k: int) -> np.ndarray:
  """The retinal layer classes (all but background, class 0)."""
  return np.arange(1, k)


def summary(means: Dict, sanity: Optional[Dict], modules) -> Dict:
  """{module: {faithful_classes, randomisation_similarity}} in the order explained.
  faithful_classes: layer classes whose mean ROAD MoRF area is below the mean random-order
  area (None without ROAD); randomisation_similarity: mean over layer classes and cascade
  stages of the raw Spearman correlations (None without the sanity check)."""
  out = {}
  for module in modules:
    m = means[module]
    k = len(m["alpha_mean"])
    faithful = (int(np.sum(m["road_beats_random"][retinal_classes(k)]))
                if "road_beats_random" in m else None)
    similarity = None
    if sanity is not None:
      similarity = float(nanmean(sanity[module]["cascade"][:, retinal_classes(k)]))
    out[module] = {"faithful_classes": faithful, "randomisation_similarity": similarity}
  return out


def summarise(per_scan: List[Dict], sanity: Optional[Dict], settings: Dict) -> Dict:
  modules = settings["layers"]
  means = {l: module_means(per_scan, l) for l in modules}
  result = {"settings": settings}
  if settings["faithfulness"] or sanity is not None:
    result["summary"] = summary(means, sanity, modules)
  result["mean"] = means
  if sanity is not None:
    result["sanity"] = sanity
  timing = {k: float(np.mean([p["timing"][k] for p in per_scan if k in p["timing"]]))
            for k in ("maps_s", "statistics_s", "removal_s")
            if any(k in p["timing"] for p in per_scan)}
  timing.update({k: v for p in per_scan for k, v in p["timing"].items() if k == "sanity_s"})
  result["timing_per_scan"] = timing
  result["scans_with_low_support"] = sum(p["low_support"] for p in per_scan)
  result["per_scan"] = per_scan
  return result


def heldout_evidence(runs: Dict[str, Dict]) -> Dict:
  """What fold models showed on the eyes they never trained on. runs: {fold: the result of
  scripts/compare_cams.py for that fold's model on its held-out scans}. Returns {method:
  {module: ...}} for the methods and network modules every fold explained, each with
  per_fold_faithful (retinal classes whose mean ROAD MoRF area beats random, per fold), morf
  and random (ROAD areas per class [K], averaged over the folds' scan means), passed [K]
  (pooled MoRF < random), folds_passed [K] (folds whose own means show MoRF < random) and
  similarity (mean randomisation similarity of the folds that ran the check, None if none
  did)."""
  folds = sorted(runs)
  common = set.intersection(*(set(runs[f]["methods"]) for f in folds))
  out = {}
  for method in [m for m in runs[folds[0]]["methods"] if m in common]:
    per = [runs[f]["methods"][method]["layers"] for f in folds]
    out[method] = {}
    for module in [l for l in per[0] if all(l in p for p in per)]:
      entries = [p[module] for p in per]
      morf = np.mean([e["morf_mean"] for e in entries], axis=0)
      rand = np.mean([e["random_mean"] for e in entries], axis=0)
      each = np.array([np.asarray(e["morf_mean"]) < np.asarray(e["random_mean"])
                       for e in entries])
      sims = [e["randomisation_similarity"] for e in entries
              if e.get("randomisation_similarity") is not None]
      out[method][module] = {
          "per_fold_faithful": [int(e["faithful_classes"]) for e in entries],
          "morf": morf.tolist(), "random": rand.tolist(), "passed": (morf < rand).tolist(),
          "folds_passed": each.sum(axis=0).astype(int).tolist(),
          "similarity": float(np.mean(sims)) if sims else None}
  return out


def heldout_verdict(passed: bool, folds_passed: int, folds: int) -> str:
  """One class's held-out verdict, the same in cam_stats.md and the figures: 'yes' (its map beat
  random removal on the fold-averaged ROAD areas and in most folds alone), 'mixed' (on the
  average only, in at most half the folds alone) or 'no'."""
  if not passed:
    return "no"
  return "mixed" if 2 * folds_passed <= folds else "yes"


def heldout_passed(evidence: Optional[Dict], method: str, target: str) -> Dict[str, List]:
  """{module: per class (passed, folds passed, folds): whether `method`'s map there beat random
  removal on held-out eyes, on the ROAD areas averaged over the folds, and in how many of the
  folds it did (None for the background, which cam_stats.md does not judge either)} from a
  workdir's evidence, for explain's figures; {} without evidence or for a target other than
  'all', the one the evidence was measured with (scripts/compare_cams.py)."""
  if evidence is None or target != EVIDENCE_TARGET:
    return {}
  return {module: [None] + [(bool(p), int(k), len(found["per_fold_faithful"]))
                           for p, k in zip(found["passed"][1:], found["folds_passed"][1:])]
          for module, found in evidence["methods"].get(method, {}).items()}


def heldout_markdown(evidence: Optional[Dict], method: str, module: str, target: str) -> str:
  """The per-class held-out verdict for one explained network module, or why there is none (as
  heldout_passed: none without evidence or for a target other than EVIDENCE_TARGET)."""
  if evidence is None:
    return (f"Held-out evidence: none for this model ({EVIDENCE_FILE} in its workdir, written "
            "by scripts/cam_evidence.py, says whether a map beat random removal on eyes the "
            "model never saw).")
  if target != EVIDENCE_TARGET:
    return (f"Held-out evidence: measured with target '{EVIDENCE_TARGET}' only "
            f"({evidence['models']}); these maps, of target '{target}', have no held-out verdict.")
  found = evidence["methods"].get(method, {}).get(module)
  if found is None:
    return f"Held-out evidence: {method} at {module} was not measured ({evidence['models']})."
  n = len(found["per_fold_faithful"])
  rows = [[c, LAYER_NAMES[c], fmt(found["morf"][c], 3), fmt(found["random"][c], 3),
           {"yes": "yes", "mixed": "mixed (the mean only)", "no": "**no**"}[heldout_verdict(
               found["passed"][c], found["folds_passed"][c], n)],
           f"{found['folds_passed'][c]} of {n}"]
          for c in retinal_classes(len(found["morf"]))]
  return "\n".join([
      f"Held-out evidence for {method} at {module}: {evidence['models']}. ROAD areas averaged "
      f"over the folds; randomisation similarity {fmt(found['similarity'], 3)}.", "",
      table(["class", "region", "ROAD MoRF (held out)", "ROAD random (held out)",
             "passed on held-out eyes", "folds with MoRF < random"], rows)])


def alpha_meaning(module: str, settings: Dict, spread: float, scans: int) -> str:
  """What the feature-importance weights alpha mean at this network module."""
  method, target = settings["method"], settings["target"]
  feeding, head = settings["last_layer"]
  if module == head:
    text = ("At the 1x1 head, dY^c/dA^k is 1 for k = c and 0 otherwise: alpha is zero except "
            "for channel c (alpha (mean) = alpha_c / K) and the map is proportional to "
            "ReLU(logit_c), by construction; it carries no more than the logit map.")
  elif module == feeding and method in ("gradcam", "hirescam", "ablation"):
    text = ("This layer feeds the linear 1x1 head: alpha is the head's weight column W[:, c]"
            + (" (times the share of pixels in the class's pixel set)" if target != "all" else "")
            + ", the same for every image, and the map is ReLU(logit_c - bias_c) up to scale.")
  else:
    text = ("alpha depends on the image: it averages the class-score gradients that pass "
            "through the layers after this one.")
  if scans > 1:
    text += (f" Measured: alpha differs between the {scans} scans by at most "
             f"{spread:.1e} of its largest value"
             + (" (image-independent)." if spread < 1e-5 else "."))
  return text


def _table3(m: Dict) -> str:
  rows = [[c, name, fmt(m["alpha_mean"][c], 5), fmt(m["max_raw"][c], 4),
           fmt(m["mean_norm_intensity"][c], 4), fmt(m["mass_in_region"][c], 3),
           fmt(m["area_share"][c], 3)] for c, name in enumerate(LAYER_NAMES)]
  return table(["class", "region", "alpha (mean)", "max (raw map)", "mean intensity",
                "in-region", "area share"], rows)


def _faithfulness_table(m: Dict) -> str:
  header, rows = ["class", "region"], [[c, n] for c, n in enumerate(LAYER_NAMES)]
  if "road_morf_area" in m:
    header += ["ROAD MoRF", "ROAD LeRF", "ROAD random", "MoRF < random"]
    for c, r in enumerate(rows):
      r += [fmt(m[f"road_{o}_area"][c], 3) for o in ROAD_ORDERS]
      r.append("yes" if m["road_beats_random"][c] else "**no**")
  if "deletion_area" in m:
    header += ["deletion (map)", "deletion random", "map < random"]
    for c, r in enumerate(rows):
      r += [fmt(m["deletion_area"][c], 3), fmt(m["random_deletion_area"][c], 3),
            "yes" if m["deletion_beats_random"][c] else "**no**"]
  return table(header, rows)


def _sanity_table(s: Dict, stages: List[str]) -> str:
  cascade, independent = np.asarray(s["cascade"]), np.asarray(s["independent"])
  rows = []
  for c, name in enumerate(LAYER_NAMES):
    mean = float(nanmean(cascade[:, c])) if np.isfinite(cascade[:, c]).any() else None
    rows.append([c, name] + [fmt(v, 2) for v in cascade[:, c]]
                + [fmt(mean, 3), fmt(float(nanmean(independent[:, c])), 3),
                   "n/a" if mean is None else ("pass" if mean <= SANITY_PASS else "**fail**")])
  header = (["class", "region"] + [f"cascade to {g.split('_')[0]}" for g in stages]
            + ["cascade mean", "independent mean", f"passes (mean <= {SANITY_PASS})"])
  return table(header, rows)


READING = (
    "How to read: *alpha (mean)* = mean over the layer's channels of the feature-importance "
    "weights alpha_k^c; *max (raw map)* = largest value of the class map before normalisation "
    "(the header's *max activation* is the largest value of the layer's output itself, before "
    "any weighting); *mean intensity* = mean of the [0, 1]-normalised map (the paper's eq. 8); "
    "*in-region* = share of the map's mass inside the class's region ({region}) against "
    "*area share*, that region's share of the image.")
REMOVAL = (
    "Removal curves: the class's mean probability over its pixel set while pixels are removed "
    "most-relevant-first (MoRF, in map order), least-relevant-first (LeRF) or in a random order; "
    "the area is relative to the unperturbed score and to the removed-fraction range (1.0 = "
    "never falls, lower = falls faster, above 1 = the class gains). A map is faithful for a "
    "class when MoRF falls faster than random (MoRF < random). ROAD replaces removed pixels by "
    "noisy linear imputation from their neighbours (noise sd {noise} in model-input intensity, "
    "fractions {road}); deletion sets them to the image mean (fractions {deletion}), which draws "
    "flat bands the network can read as a layer, so trust ROAD where the two disagree.")
SANITY = (
    "Sanity check (Adebayo et al. 2018), on scan {scan}: Spearman rank correlation between the "
    "trained model's map and the map after re-initialising the weights, cascading from the head "
    "down (each column adds one more block) and each block alone (independent). A map that "
    "stays similar after randomisation does not depend on what the model learned. "
    "randomisation similarity = mean over the {n} layer classes and cascade stages.")


def stats_markdown(result: Dict) -> str:
  st = result["settings"]
  fr = lambda f: ", ".join(f"{v:.2f}" for v in f[1:])
  lines = ["# Explanation statistics", "",
           f"Method {st['method']}, target pixel set '{st['target']}', "
           f"{st['scans']} scan{'' if st['scans'] == 1 else 's'} from {st['input']}"
           + (f" (of {st['scans_read']} read: "
              + ("explain.scan_indices)" if st.get("scan_indices") else
                 "explain.max_scans per file)")
              if st.get("scans_read", st["scans"]) > st["scans"] else "")
           + f", checkpoint epoch {epochs_text(st['epoch'])} of {st['workdir']}. "
           "Means over scans." + (f" **Warning: {training_overlap_text(result, st['scans'])}: "
                                  f"{NOT_HELD_OUT['explain']}.**"
                                  if training_overlap(result) else ""),
           "", READING.format(region=st["region"]), ""]
  if st["faithfulness"]:
    lines += [REMOVAL.format(noise=st["road_noise"], road=fr(st["road_fractions"]),
                             deletion=fr(st["deletion_fractions"])), ""]
  if "sanity" in result:
    k = len(result["mean"][st["layers"][0]]["alpha_mean"])
    lines += [SANITY.format(scan=result["sanity"]["scan"], n=k - 1), ""]
  if "summary" in result:
    rows = [[l, "n/a" if s["faithful_classes"] is None else f"{s['faithful_classes']} of 7",
             fmt(s["randomisation_similarity"], 3)] for l, s in result["summary"].items()]
    lines += ["## Summary (first row: the default layer)", "",
              table(["layer", "layer classes with ROAD MoRF < random", "randomisation similarity"],
                    rows), ""]
  for module in st["layers"]:
    m = result["mean"][module]
    lines += [f"## {module} (max activation {fmt(m['activation_max'], 3)})", "",
              alpha_meaning(module, st, m["alpha_spread"], st["scans"]), "", _table3(m), ""]
    if st["faithfulness"]:
      lines += [_faithfulness_table(m), ""]
      if "road_beats_random" in m:
        fails = [LAYER_NAMES[c] for c in retinal_classes(len(m["alpha_mean"]))
                 if not m["road_beats_random"][c]]
        lines += ["ROAD: MoRF falls faster than random for every layer class." if not fails
                  else f"ROAD: MoRF does not beat random for {', '.join(fails)}.", ""]
    if "sanity" in result:
      lines += [_sanity_table(result["sanity"][module], result["sanity"]["stages"]), ""]
    lines += [heldout_markdown(result.get("heldout"), st["method"], module, st["target"]), ""]
  t = result["timing_per_scan"]
  lines += [f"Time per scan: maps {t['maps_s']:.2f} s"
            + (f", statistics {t['statistics_s']:.2f} s" if "statistics_s" in t else "")
            + (f", removal curves {t['removal_s']:.1f} s" if "removal_s" in t else "")
            + (f"; sanity check (once) {t['sanity_s']:.1f} s." if "sanity_s" in t else ".")]
  return "\n".join(lines) + "\n"
