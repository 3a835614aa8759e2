"""Markdown reports from metric dictionaries (pure string building; writing is the caller's)."""

from typing import Dict, Sequence

import numpy as np

from octseg_jax.anatomy import BOUNDARY_NAMES, LAYER_NAMES, NUM_LAYERS, PAPER_IOU
from octseg_jax.geometry.boundaries import LOW_SUPPORT
from octseg_jax.learning.metrics import nanmean



def paper_comparable(config, input_path) -> bool:
  """Whether a score can stand next to the paper's numbers: Duke DME data, the paper's random
  split of B-scans, scored on that split's validation scans (not on other input)."""
  return (not input_path and config.data.source == "duke"
          and config.data.split == "random")


def fmt(v, digits: int = 4) -> str:
  """A number with a fixed count of decimals ('n/a' for None, NaN and infinities)."""
  if v is None or not np.isfinite(float(v)):
    return "n/a"
  return f"{float(v):.{digits}f}"


def epochs_text(epoch) -> str:
  """A checkpoint epoch, or an ensemble's epochs as '38, 40, 40, 40 (one per member)'."""
  if isinstance(epoch, (list, tuple)):
    return ", ".join(str(e) for e in epoch) + " (one per member)"
  return str(epoch)


def count(n: int, noun: str, plural: str = "") -> str:
  """'1 scan', '2 scans' (plural: the plural form where it is not noun + 's')."""
  return f"{n} {noun if n == 1 else (plural or noun + 's')}"


def console_summary(result: Dict) -> str:
  """What eval prints: per-layer Dice and the boundary error (mean absolute, signed) per
  boundary, raw argmax and with the topology fix, as aligned text."""
  raw, fix = result["raw"], result["topology"]
  lines = ["layer       Dice (raw)  Dice (order fix)"]
  for k, name in enumerate(LAYER_NAMES[1:]):
    lines.append(f"{name:10s}  {fmt(raw['literature']['layer_dice'][k]):>10s}  "
                 f"{fmt(fix['literature']['layer_dice'][k]):>16s}")
  lines.append(f"{'mean':10s}  {fmt(raw['literature']['mean_layer_dice']):>10s}  "
               f"{fmt(fix['literature']['mean_layer_dice']):>16s}")
  lines.append("boundary    MAE um (raw)  signed um  MAE um (order fix)  signed um")
  for k, name in enumerate(BOUNDARY_NAMES):
    g, h = raw["geometry"], fix["geometry"]
    lines.append(f"{name:10s}  {fmt(g['mae_um'][k], 2):>12s}  {fmt(g['signed_um'][k], 2):>9s}  "
                 f"{fmt(h['mae_um'][k], 2):>18s}  {fmt(h['signed_um'][k], 2):>9s}")
  smoothing = smoothing_text(fix).strip()
  lines += ([smoothing] if smoothing else []) + boundary_columns_text(fix)
  return "\n".join(lines + fluid_columns_summary(fix.get("by_fluid_columns"))
                   + heads_summary(result.get("heads", {})))


def boundary_columns_text(fix: Dict) -> list:
  """eval's line on the columns its boundary errors (order fix) average over: those where the
  truth and the prediction both have the boundary, with a warning where that is fewer than
  LOW_SUPPORT of the columns scored (a few columns give an error, not an estimate)."""
  cols, total = fix["geometry"].get("columns"), fix.get("columns_total")
  if cols is None or not total:
    return []
  lo, hi = min(cols), max(cols)
  line = (f"boundary errors over {lo if lo == hi else f'{lo}-{hi}'} of {total} columns (where "
          "the truth and the prediction both have the boundary)")
  if lo < LOW_SUPPORT * total:
    line += (f"; warning: under {LOW_SUPPORT:.0%} of the columns for "
             f"{sum(c < LOW_SUPPORT * total for c in cols)} of {len(cols)} boundaries")
  return [line]


def fluid_columns_summary(split) -> list:
  """eval's console line of the fluid-column split: mean layer Dice and mean boundary MAE
  (order fix) with and without fluid; [] without a fluid annotation."""
  if not split:
    return []
  dry, wet = split["without_fluid"], split["with_fluid"]
  def text(g):
    mae = float(nanmean(np.asarray(g["geometry"]["mae_um"], np.float64)))
    return (f"{g['columns']} columns: mean layer Dice {fmt(g['literature']['mean_layer_dice'])}, "
            f"boundary MAE {fmt(mae, 2)} um")
  return [f"with fluid {text(wet)}; without {text(dry)} (order fix)"]


def heads_summary(heads: Dict) -> list:
  """eval's console lines of the optional heads: fluid Dice (global, and over the scans with
  fluid) and the boundary head's mean boundary error."""
  lines = []
  if "fluid" in heads:
    f = heads["fluid"]
    lines.append(f"fluid       Dice {fmt(f['dice'])} (pixels of all scans), "
                 f"{fmt(f['dice_scans_with_fluid'])} over the "
                 f"{count(f['scans_with_fluid'], 'scan')} with fluid")
  if "boundary_head" in heads:
    mae = np.asarray(heads["boundary_head"]["geometry"]["mae_um"], np.float64)
    lines.append(f"boundary head: mean boundary MAE {fmt(float(nanmean(mae)), 2)} um "
                 "(its own rows, ordered by construction)")
  return lines


def table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
  return "\n".join(lines)


def class_table(summary: Dict, with_paper: bool = True) -> str:
  """Per-class table shaped like the paper's Table 2 (IoU, accuracy, Dice)."""
  p, lit = summary["paper"], summary["literature"]
  dice = [None] + list(lit["layer_dice"])
  rows = []
  for k, name in enumerate(LAYER_NAMES):
    row = [k, name, fmt(p["class_iou"][k]), fmt(p["class_accuracy"][k]),
           fmt(dice[k]) if k else "excluded"]
    if with_paper:
      row.append(fmt(PAPER_IOU[k], 2))
    rows.append(row)
  header = ["class", "region", "IoU", "accuracy", "Dice (literature)"]
  return table(header + (["paper IoU"] if with_paper else []), rows)


def geometry_table(geometry: Dict) -> str:
  rows = [[name, fmt(geometry["mae_um"][b], 2), fmt(geometry["signed_um"][b], 2),
           fmt(geometry["mae_px"][b], 2), int(geometry["columns"][b])]
          for b, name in enumerate(BOUNDARY_NAMES)]
  return table(["boundary", "MAE (um)", "signed (um)", "MAE (px)", "columns"], rows)


def paper_note(result: Dict) -> str:
  if result.get("paper_comparable"):
    return ("The paper's class IoU (Table 2) is shown next to ours: same data (Duke DME) and "
            "the paper's random split of B-scans.")
  return ("The paper's numbers are not shown: they were measured on Duke DME with a random "
          "80/20 split of B-scans, and this evaluation is not that protocol.")


# How serving.inference.TrainingScans finds a scan the model trained on, and a scan of a volume
# it trained on, in every warning.
TRAINING_MATCH = "matched by scan name or pixels"
TRAINING_VOLUME = "training scans and other B-scans of their eyes, by the volume STEM of STEM_bII"
# What each mode's warning adds: why a learned scan matters there.
NOT_HELD_OUT = {"eval": "so these numbers are not held-out",
                "predict": "outputs on them do not show how it reads new eyes",
                "explain": "maps of scans it learned say less about how it reads new eyes"}


def low_support_warning(low: int, scans: str, measured: str, note: str = "") -> str:
  """The console's warning about `low` of `scans` ('3 scans of FILE') with `measured` in fewer
  than LOW_SUPPORT of their columns (`note` follows 'columns'): the sign of an input unlike the
  model's training data, the same for predict and explain."""
  return (f"warning: {low} of {scans} {'has' if low == 1 else 'have'} {measured} in fewer than "
          f"{LOW_SUPPORT:.0%} of the columns{note}: is it a retinal B-scan like the model's "
          "training data?")


def training_overlap(counts: Dict) -> bool:
  """Whether counts (manifest.json's or eval's: inference.training_overlap) hold a training
  scan or a scan of a training volume (records from before the volumes count only the first)."""
  return bool(counts.get("scans_from_training_volumes", counts.get("scans_in_training", 0)))


def training_overlap_text(counts: Dict, scans: int, of: str = "") -> str:
  """'X of N scans{of} were in the model's training set (...)' and, where more are from the
  volumes it trained on, '; Y of N are from volumes it trained on (...)'."""
  seen = counts.get("scans_in_training", 0)
  volume = counts.get("scans_from_training_volumes", seen)
  total = f"{count(scans, 'scan')}{of}"
  parts = [f"{seen} of {total} {'was' if seen == 1 else 'were'} in the model's training set "
           f"({TRAINING_MATCH})"] if seen else []
  if volume > seen:
    parts.append(f"{volume} of {total if not parts else scans} {'is' if volume == 1 else 'are'} "
                 f"from volumes it trained on ({TRAINING_VOLUME})")
  return "; ".join(parts)


def training_title(seen: bool, volume: bool) -> str:
  """A scan figure's title note on a scan the model learned (TrainingScans.flags), or ''."""
  return ("; a TRAINING SCAN of this model" if seen else
          "; from a volume this model trained on" if volume else "")


def low_support_title(low: bool) -> str:
  """A scan figure's title note on a scan with little of the layer order predict measures
  (geometry.low_support), or ''."""
  return (f"; LAYERS IN ORDER IN UNDER {LOW_SUPPORT:.0%} OF ITS COLUMNS (unlike the model's "
          "training data)" if low else "")


def training_volume_title(seen: int, volume: int, scans: int) -> str:
  """A volume's maps title note when the model trained on its B-scans (`seen` of `scans`
  training scans, `volume` from training volumes), or ''."""
  return (f"THIS MODEL TRAINED ON THIS VOLUME (training scans: {seen} of its "
          f"{count(scans, 'B-scan')}); not a new eye") if volume else ""


def smoothing_text(fix: Dict) -> str:
  """metrics.md's sentence on predict.smooth_sd_columns ('' when off or not recorded)."""
  sd = fix.get("smooth_sd_columns", 0.0)
  return (f" The topology-fixed labels and the sub-pixel boundaries were then smoothed along "
          f"the B-scan (Gaussian, sd {sd:.4g} columns; predict.smooth_sd_columns).") if sd else ""


def metrics_markdown(result: Dict) -> str:
  raw, fix = result["raw"], result["topology"]
  with_paper = bool(result.get("paper_comparable"))
  lines = [
      "# Evaluation", "",
      f"Data: {result['data']}; {count(result['scans'], 'scan')}; checkpoint epoch "
      f"{epochs_text(result['checkpoint_epoch'])}; resolution: {result['resolution']}; pixel "
      f"{result['pixel_um']} um." + (
          f" **Warning: {training_overlap_text(result, result['scans'])}, "
          f"{NOT_HELD_OUT['eval']}**" if training_overlap(result) else ""), "",
      "## Summary", "",
      table(["protocol", "metric", "raw argmax", "topology-fixed"], [
          ["paper", "pixel accuracy", fmt(raw["paper"]["accuracy"]), fmt(fix["paper"]["accuracy"])],
          ["paper", "global Dice (soft)", fmt(raw["paper"]["global_dice_soft"]), "n/a"],
          ["paper", "global IoU (soft) = D/(2-D)", fmt(raw["paper"]["global_iou_soft"]), "n/a"],
          ["paper", "mean class IoU", fmt(raw["paper"]["mean_iou"]), fmt(fix["paper"]["mean_iou"])],
          ["literature", "mean layer Dice (7 layers)", fmt(raw["literature"]["mean_layer_dice"]),
           fmt(fix["literature"]["mean_layer_dice"])],
      ]), "",
      table(["geometry", "raw argmax", "topology-fixed"], [
          ["mean boundary MAE (um)", fmt(nanmean(raw["geometry"]["mae_um"]), 2),
           fmt(nanmean(fix["geometry"]["mae_um"]), 2)]]), "",
      f"Topology fix changed {fix['columns_fixed']} of {fix['columns_total']} columns "
      "(columns whose argmax labelling was not background, layers 1..7 in order, background)."
      + smoothing_text(fix), "",
      *[s for t in boundary_columns_text(fix) for s in (t[0].upper() + t[1:] + ".", "")],
      "## Per class (raw argmax; paper protocol IoU and accuracy, literature Dice)", "",
      paper_note(result), "",
      class_table(raw, with_paper), "",
      "## Boundary error (raw argmax labels)", "", geometry_table(raw["geometry"]), "",
      "## Boundary error (sub-pixel, from probabilities)", "",
      geometry_table(raw["geometry_subpixel"]), "",
      "## Boundary error (topology-fixed labels)", "", geometry_table(fix["geometry"]), "",
      "## Thickness MAE per layer (um)", "",
      table(["layer", "raw", "topology-fixed"],
            [[LAYER_NAMES[k + 1], fmt(raw["geometry"]["thickness_mae_um"][k], 2),
              fmt(fix["geometry"]["thickness_mae_um"][k], 2)] for k in range(NUM_LAYERS)]), "",
      "## Mean layer Dice per subject (raw)", "",
      table(["subject", "mean layer Dice"],
            [[s, fmt(v)] for s, v in result["per_subject_mean_layer_dice"].items()]), "",
      "Protocols: *paper* = pixel accuracy and global Dice/IoU over the one-hot tensors of all 8 "
      "classes with background (soft, from probabilities), class IoU from hard predictions; "
      "*literature* = Dice per layer (background excluded, NaN if a class is absent from truth "
      "and prediction) from hard predictions, accumulated over all scans. Pixels labelled 255 "
      "never count.", ""]
  return "\n".join(lines + fluid_columns_markdown(fix.get("by_fluid_columns"),
                                                  fix.get("by_fluid_columns_skipped"))
                   + heads_markdown(result.get("heads", {}))
                   + calibration_markdown(result.get("calibration")))


def fluid_columns_markdown(split, skipped: str = "") -> list:
  """The topology-fixed layer Dice and boundary error in the columns with grader-marked fluid
  and in those without, side by side; why they were not scored when only some scans carry a
  fluid annotation (`skipped`); [] when none does."""
  if skipped:
    return ["## Columns with and without fluid", "",
            f"Not scored: {skipped} (the split needs every scan's).", ""]
  if not split:
    return []
  dry, wet = split["without_fluid"], split["with_fluid"]
  dice = [[LAYER_NAMES[k + 1], fmt(dry["literature"]["layer_dice"][k]),
           fmt(wet["literature"]["layer_dice"][k])] for k in range(NUM_LAYERS)]
  dice.append(["mean", fmt(dry["literature"]["mean_layer_dice"]),
               fmt(wet["literature"]["mean_layer_dice"])])
  bounds = [[name] + [cell for g in (dry, wet)
                      for cell in (fmt(g["geometry"]["mae_um"][b], 2),
                                   fmt(g["geometry"]["signed_um"][b], 2),
                                   int(g["geometry"]["columns"][b]))]
            for b, name in enumerate(BOUNDARY_NAMES)]
  return ["## Columns with and without fluid (topology-fixed labels)", "",
          f"A column counts as 'with fluid' when the grader marked fluid in at least one of its "
          f"pixels: {dry['columns']} columns without, {wet['columns']} with.", "",
          table(["layer", "Dice without fluid", "Dice with fluid"], dice), "",
          table(["boundary", "MAE without (um)", "signed without (um)", "columns without",
                 "MAE with (um)", "signed with (um)", "columns with"], bounds), "",
          "Columns: those where both the grader's and the model's boundary are known (a boundary "
          "through unlabelled fluid is not)."]


def calibration_markdown(cal) -> list:
  """ECE and, for an ensemble, how well the members' spread ranks the boundary errors and how
  the uncertain flag splits them."""
  if not cal:
    return []
  lines = ["## Calibration and uncertainty", "",
           f"Expected calibration error of the top-class confidence ({len(cal['count'])} bins, "
           f"{cal['pixels']} labelled pixels): {fmt(cal['ece'])}"
           + (f"; over the {cal['band']['pixels']} of them in the model's input band (the "
              f"rows outside it are certain background): {fmt(cal['band']['ece'])}"
              if "band" in cal else "") + ".", ""]
  if "position_sd_vs_error" in cal or "uncertainty_vs_error" in cal:
    lines += ["The uncertainties below rank where the boundaries are more likely wrong: check "
              "those columns first; a low uncertainty does not prove a boundary right.", ""]
  for key, what in (("uncertainty_vs_error", "the ensemble members' boundary spread "
                                            "(`boundary_sd_um`)"),
                    ("position_sd_vs_error", "each boundary's position sd in the (averaged) "
                                             "probabilities (`boundary_position_sd_um`, "
                                             "smoothed as the boundaries are)")):
    if cal.get(key):
      lines += uncertainty_rank_lines(what, cal[key])
  for key in ("uncertain_columns", "position_sd_columns"):
    flag = cal.get(key)
    if flag and (flag["threshold_um"] or flag.get("predict_flags")):   # 0: no threshold set
      share = flag["flagged"] / flag["columns"] if flag["columns"] else float("nan")
      lines += [f"{flag_text(key, flag)} {flag['threshold_um']:.4g} um): {flag['flagged']} of "
                f"the {flag['columns']} columns predict measures (`supported`), {share:.1%} of "
                "them; "
                f"mean absolute boundary error {fmt(flag['mae_flagged_um'], 2)} um in them, "
                f"{fmt(flag['mae_unflagged_um'], 2)} um in the others.", ""]
  if any(key.endswith("_columns_curve") for key in cal):
    lines += ["What each flag would find at other thresholds is in metrics.json "
              "(`calibration.*_columns_curve`, counts to choose a threshold by "
              "cross-validation: scripts/flag_threshold_cv.py).", ""]
  return lines


def flag_text(key: str, flag: Dict) -> str:
  """The opening of the report's sentence on a column flag (calibration_markdown)."""
  what = "members' spread" if key == "uncertain_columns" else "position sd"
  if flag.get("predict_flags", key == "uncertain_columns"):     # older runs: the spread flagged
    return f"Columns predict flags `uncertain` (some boundary's {what} over"
  return (f"Columns a flag on the {what} would mark, which predict does not flag by (some "
          f"boundary's {what} over")


def uncertainty_rank_lines(what: str, vs: Dict) -> list:
  """How well an uncertainty (`what`) ranks the boundary errors: Spearman's rho pooled and per
  boundary, and the error of its most uncertain tenth against the rest where given."""
  per = ", ".join(f"{name} {fmt(b['rho'], 2)}" for name, b in zip(BOUNDARY_NAMES,
                                                                  vs["per_boundary"]))
  top = vs.get("top_tenth")
  return [f"Spearman rank correlation of {what} with the absolute error of the boundaries "
          f"predict writes (sub-pixel, smoothed as written): {fmt(vs['pooled']['rho'])} over "
          f"{vs['pooled']['pairs']} (column, boundary) pairs of the 8 boundaries; per "
          f"boundary {per} (1: it ranks the errors perfectly; 0: not at all)."
          + (f" The {top['share']:.0%} of the pairs it ranks most uncertain: mean absolute "
             f"error {fmt(top['mae_top_um'], 2)} um; the others: {fmt(top['mae_rest_um'], 2)} um."
             if top else ""), ""]


def heads_markdown(heads: Dict) -> list:
  """Sections for the optional heads' numbers (fluid, boundary head); [] without heads."""
  lines = []
  if "boundary_head" in heads:
    lines += ["## Boundary error of the boundary head (ordered by construction)", "",
              geometry_table(heads["boundary_head"]["geometry"]), ""]
  if "fluid_skipped" in heads:
    lines += ["## Fluid", "", f"Not scored: {heads['fluid_skipped']} (the fluid Dice needs "
              "every scan's).", ""]
  if "fluid" in heads:
    f = heads["fluid"]
    lines += ["## Fluid (threshold 0.5; Dice counted globally over the pixels of all scans)", "",
              table(["fluid", "value"], [
                  ["Dice, all scans", fmt(f["dice"])],
                  [f"Dice, the {f['scans_with_fluid']} scans with fluid",
                   fmt(f["dice_scans_with_fluid"])],
                  ["mean absolute area error per scan (pixels)",
                   fmt(f["area_abs_error_px"]["mean"], 1)]]), "",
              table(["subject", "fluid Dice"],
                    [[s, fmt(v)] for s, v in f["per_subject_dice"].items()]), ""]
  return lines
