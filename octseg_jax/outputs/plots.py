"""Figures (matplotlib, imported lazily) and label colouring. All files written atomically.

Every figure names its scan (or run), the model (workdir) and its units. Boundary and layer
colours come from the Okabe-Ito palette (distinguishable with the common colour-vision
deficiencies); predictions are solid lines, truth dashed.
"""

from typing import Optional, Sequence, Union

import numpy as np

from octseg_jax.anatomy import BOUNDARY_NAMES, LAYER_NAMES, NUM_BOUNDARIES, NUM_CLASSES, PAPER_IOU
from octseg_jax.models.segnet import CLASS_HEAD
from octseg_jax.outputs import training_log
from octseg_jax.outputs.cam_report import heldout_verdict

# --figures: which scans of a file get figures (fovea: a volume's B-scan nearest its fovea, the
# first scan of other files), and the default
FIGURES = ("none", "first", "fovea", "all")
DEFAULT_FIGURES = "fovea"
# Okabe & Ito (2008), "Color Universal Design": 7 colours plus white for the ILM, which
# borders the dark vitreous (the palette's black would vanish on an OCT scan).
OKABE_ITO = ("#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7")
# Background black, then one colour per layer NFL..OS-RPE; IGNORE grey.
LABEL_COLOURS = np.array([[0, 0, 0]] + [[int(c[i:i + 2], 16) for i in (1, 3, 5)]
                                        for c in OKABE_ITO], np.uint8)
IGNORE_COLOUR = np.array([128, 128, 128], np.uint8)
# ILM, NFL/GCL, IPL/INL, INL/OPL, OPL/ONL, ISM/ISE, OS/RPE, BM: neighbours differ in hue.
BOUNDARY_COLOURS = ("#ffffff", "#e69f00", "#56b4e9", "#d55e00", "#009e73", "#f0e442",
                    "#cc79a7", "#0072b2")
FLUID_COLOUR = "#7fff00"      # fluid outlines: a colour none of the 8 boundaries uses
UNCERTAIN_COLOUR = "#ff4500"  # the columns flagged uncertain (predict.column_flag)
UNCERTAIN_STRIPS = ((0.0, 0.025), (0.975, 1.0))  # the overlay's marks of them (axes fraction)
PRED_STYLE = "solid"
TRUTH_DASHES = (3, 2)


def colorize(labels: np.ndarray) -> np.ndarray:
  """uint8 label map [H, W] -> RGB uint8 [H, W, 3] (ids >= 8 shown grey)."""
  labels = np.asarray(labels)
  out = np.broadcast_to(IGNORE_COLOUR, labels.shape + (3,)).copy()
  known = labels < len(LABEL_COLOURS)
  out[known] = LABEL_COLOURS[labels[known]]
  return out


def _plt():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def figure_array(fig) -> np.ndarray:
  """Renders a matplotlib figure to RGB uint8 [H, W, 3] and closes it (for TensorBoard)."""
  plt = _plt()
  fig.canvas.draw()
  out = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
  plt.close(fig)
  return out


def heading(subject: str, model: str = "", detail: str = "") -> str:
  """Figure title: what is shown (scan or run), then the model, then a reading hint."""
  text = subject + (f"  |  model: {model}" if model else "")
  return text + (f"\n{detail}" if detail else "")


def style_legend_handles(truth: bool = True) -> list:
  """Legend entries saying which line style is the prediction and which the truth."""
  from matplotlib.lines import Line2D
  handles = [Line2D([], [], color="0.3", lw=1.5, ls=PRED_STYLE, label="prediction (solid)")]
  if truth:
    handles.append(Line2D([], [], color="0.3", lw=1.5, dashes=TRUTH_DASHES,
                          label="truth (dashed)"))
  return handles


def class_legend_handles() -> list:
  """Legend patches: one per class (its label-map colour and name), plus 'unlabelled'."""
  from matplotlib.patches import Patch
  handles = [Patch(facecolor=LABEL_COLOURS[k] / 255, edgecolor="0.5", label=f"{k} {name}")
             for k, name in enumerate(LAYER_NAMES)]
  return handles + [Patch(facecolor=IGNORE_COLOUR / 255, edgecolor="0.5", label="unlabelled")]


def grey_uint8(image: np.ndarray) -> np.ndarray:
  """A scan as uint8 [H, W]: uint8 kept, floats taken as [0, 1] model inputs (clipped)."""
  image = np.asarray(image)
  if image.dtype == np.uint8:
    return image
  return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def retina_rows(label_maps: Sequence, height: int, margin: float = 0.15) -> tuple:
  """(first, stop) rows that hold every layer label (classes 1-7, not background or
  unlabelled) of `label_maps` ([H, W] each), widened by `margin` of that extent (at least 8
  rows) on each side within [0, height); (0, height) when none has a layer label."""
  rows = np.zeros(height, bool)
  for labels in label_maps:
    labels = np.asarray(labels)
    rows |= ((labels >= 1) & (labels < NUM_CLASSES)).any(axis=1)
  if not rows.any():
    return 0, height
  first, last = np.flatnonzero(rows)[[0, -1]]
  pad = max(8, int(round(margin * (last + 1 - first))))
  return max(0, int(first) - pad), min(height, int(last) + 1 + pad)


def _label_figure(images: Sequence, truths: Sequence, preds: Sequence, names: Sequence,
                  title: str):
  """Rows of input | truth | prediction with a class legend below, all cropped to the rows
  of the retina (retina_rows over every truth and prediction). Returns the figure."""
  plt = _plt()
  n = len(images)
  height, w = np.asarray(images[0]).shape[:2]
  top, stop = retina_rows(list(preds) + list(truths if truths is not None else []), height)
  h = stop - top
  panel_w = 3.6
  panel_h = float(np.clip(panel_w * h / w, 1.2, 4.0))
  cols = [("input", images)] + ([("truth", truths)] if truths is not None else []) + [
      ("prediction", preds)]
  fig, axes = plt.subplots(n, len(cols), figsize=(panel_w * len(cols), panel_h * n + 1.3),
                           squeeze=False, layout="constrained")
  for i in range(n):
    for j, (label, panels) in enumerate(cols):
      ax = axes[i, j]
      if label == "input":
        ax.imshow(grey_uint8(panels[i])[top:stop], cmap="gray", vmin=0, vmax=255,
                  aspect="auto")
      else:
        ax.imshow(colorize(panels[i][top:stop]), aspect="auto", interpolation="nearest")
      ax.set_title(f"{names[i]}: {label}" if names[i] else label, fontsize=10)
      ax.set_xticks([])
      ax.set_yticks([])
  fig.legend(handles=class_legend_handles(), loc="outside lower center", ncol=5, fontsize=9,
             frameon=False)
  rows = f"rows {top}-{stop - 1} of {height} (the retina)" if h < height else f"{height} rows"
  suptitle = lambda shape: fig.suptitle(
      (f"{title}\n" if title else "") + f"{rows} x {w} columns, {shape} (in um a B-scan "
      "column is usually wider than a row: not true proportions)", fontsize=10)
  suptitle("pixels drawn square")          # a draft: the title takes room from the panels
  ratio = drawn_pixel_ratio(fig, axes[0, 0])
  suptitle("pixels drawn square" if abs(ratio - 1) < 0.05 else
           f"each pixel drawn {ratio:.2f}x as tall as wide")
  return fig


def labelled_panel(image: np.ndarray, truth: Optional[np.ndarray], pred: np.ndarray,
                   title: str = "") -> np.ndarray:
  """TensorBoard image: input, truth and prediction side by side with class names and a
  colour legend, at least ~360 px per panel. image [H, W] (uint8, or float in [0, 1]);
  truth/pred uint8 labels [H, W] (truth may be None) -> RGB uint8 [h, w, 3]."""
  fig = _label_figure([image], None if truth is None else [truth], [pred], [""], title)
  return figure_array(fig)


def side_by_side(path: str, images, truths, preds, names, title: str = "") -> None:
  """Paper Figure 4: input, ground truth and prediction per scan (label colours, legend)."""
  from octseg_jax.outputs.atomic import save_figure
  save_figure(path, _label_figure(images, truths, preds, names, title))


def _finite_range(*arrays) -> tuple:
  values = np.concatenate([np.ravel(a) for a in arrays if a is not None])
  values = values[np.isfinite(values)]
  return (values.min(), values.max()) if values.size else (None, None)


NO_SUPPORT = "no support: no boundary or labels out of layer order (not drawn)"


def boundary_overlay(path: str, image: np.ndarray, pred_bounds: np.ndarray,
                     true_bounds=None, title: str = "", model: str = "",
                     unsupported=None, fluid=None, uncertain=None, pixel_um=None,
                     uncertain_rule=None, true_fluid=None) -> None:
  """Scan with the 8 predicted boundaries as solid lines and the true ones dashed (drawn on
  top, black gaps, so they stay visible where both agree). bounds [8, W] rows (NaN = none);
  columns in `unsupported` [W] bool are shaded, each run of them marked at the top edge (a run
  of one or two columns is narrower than a line), and their predicted boundaries not drawn
  (the lines end square at the last drawn column);
  the predicted `fluid` [H, W] (0/1) is outlined, and the grader's `true_fluid` [H, W] (0/1;
  None: no fluid annotation) dashed over it; columns in `uncertain` [W] bool are marked by
  orange strips along the top and bottom edges and a faint orange shade (the legend says what
  flags them: `uncertain_rule`, uncertain_patch).
  pixel_um: (row, column) pixel size.
  The scan is stretched to fit the figure (at its physical aspect a B-scan is a thin strip);
  the x-axis label says by how much, or that the lateral pixel size is unknown."""
  from octseg_jax.outputs.atomic import save_figure
  plt = _plt()
  h, w = image.shape
  # tall enough for the legend beside it; constrained layout keeps legend and labels apart
  fig, ax = plt.subplots(figsize=(min(14, 5 + w / 60), float(np.clip(1.5 + h / 70, 3.8, 8))),
                         layout="constrained")
  ax.imshow(image, cmap="gray", vmin=0, vmax=255, aspect="auto")
  cols = np.arange(w)
  masked = ~np.all(np.isfinite(pred_bounds), axis=0)
  if unsupported is not None:
    masked |= np.asarray(unsupported, bool)
  pred_bounds = np.where(masked[None], np.nan, pred_bounds)
  _mark_no_support(fig, ax, masked)
  if uncertain is not None:                # a faint shade keeps the boundaries readable; the
    flagged = np.asarray(uncertain, bool) & ~masked           # strips at both edges find them
    _shade_runs(ax, flagged, color=UNCERTAIN_COLOUR, alpha=0.12, zorder=1)
    for ymin, ymax in UNCERTAIN_STRIPS:
      _shade_runs(ax, flagged, color=UNCERTAIN_COLOUR, ymin=ymin, ymax=ymax, zorder=5)
  _outline_fluid(ax, fluid, true_fluid)
  for b in range(NUM_BOUNDARIES):
    ax.plot(cols, pred_bounds[b] - 0.5, color=BOUNDARY_COLOURS[b], lw=1.3, ls=PRED_STYLE,
            solid_capstyle="butt", zorder=2)
    if true_bounds is not None:
      ax.plot(cols, true_bounds[b] - 0.5, color=BOUNDARY_COLOURS[b], lw=1.3,
              dashes=TRUTH_DASHES, gapcolor="black", zorder=3)
  lo, hi = _finite_range(pred_bounds, true_bounds)
  if lo is not None:
    ax.set_ylim(min(h, hi + 40), max(0, lo - 40))
  ax.set_facecolor("black")
  ax.legend(handles=overlay_legend(true_bounds is not None, masked.any(),
                                   uncertain is not None and np.any(uncertain), uncertain_rule,
                                   fluid is not None and np.any(fluid),
                                   None if true_fluid is None else bool(np.any(true_fluid))),
            loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
            title="boundary", title_fontsize=8, facecolor="0.85")
  drawn = "boundaries and fluid" if true_fluid is not None else "boundaries"
  ax.set_title(heading(title, model, f"{drawn}: solid = prediction" +
                       (", dashed = truth" if true_bounds is not None else "")), fontsize=9)
  ax.set_ylabel("row (pixels)" + (f"; {pixel_um[0]:.4g} um each" if pixel_um is not None else ""))
  _stretch_label(fig, ax, "column (A-scan, pixels); ", pixel_um)
  save_figure(path, fig)


def _outline_fluid(ax, fluid, true_fluid) -> None:
  """The overlay's fluid outlines [H, W] (0/1, None: not drawn): the prediction solid, the
  grader's dashed with black gaps on top (as the boundaries)."""
  if fluid is not None and np.any(fluid):
    ax.contour(np.asarray(fluid, np.float32), levels=[0.5], colors=[FLUID_COLOUR],
               linewidths=1.2, zorder=4)
  if true_fluid is not None and np.any(true_fluid):
    for colour, style in (("black", "solid"), (FLUID_COLOUR, (0, TRUTH_DASHES))):
      ax.contour(np.asarray(true_fluid, np.float32), levels=[0.5], colors=[colour],
                 linewidths=1.2, linestyles=[style], zorder=4)


def _mark_no_support(fig, ax, masked: np.ndarray) -> None:
  """The overlay's no-support columns [W]: each run shaded, and marked once just inside the
  top edge at its centre (a run of a column or two is narrower than a boundary line); the
  mark of a run at the first or last column reaches past the edge, not cut at it."""
  from matplotlib.transforms import offset_copy
  _shade_runs(ax, masked, zorder=1, **NO_SUPPORT_BAND)
  runs = _runs(masked)
  if not runs:             # an empty unclipped line would stretch the saved figure's tight box
    return
  below_top = offset_copy(ax.get_xaxis_transform(), fig=fig, y=-6, units="points")
  ax.plot([(start + stop - 1) / 2 for start, stop in runs], [1.0] * len(runs),
          transform=below_top, zorder=6, clip_on=False, **NO_SUPPORT_MARK)


def drawn_pixel_ratio(fig, ax) -> float:
  """Displayed height of one data unit (a row) over displayed width of one (a column) in `ax`,
  after laying out the figure: 1 where pixels are drawn square."""
  fig.canvas.draw()
  box = ax.get_window_extent()
  (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
  return (box.height / abs(y1 - y0)) / (box.width / abs(x1 - x0))


def _stretch_label(fig, ax, prefix: str, pixel_um) -> None:
  """Sets the x label: `prefix`, then how much taller than physical the drawn scan is
  (displayed height per row over width per column, divided by the physical ratio row size /
  column size). The label itself takes room from the axes, so it is measured with a draft of
  the label in place."""
  if pixel_um is None or pixel_um[1] is None:
    ax.set_xlabel(prefix + "drawn stretched to fit (lateral pixel size unknown; set "
                  "--pixel_um=ROW,COL)")
    return
  text = lambda stretch: (f"{prefix}{pixel_um[1]:.4g} um each; drawn {stretch:.1f}x taller "
                          "than true proportions")
  ax.set_xlabel(text(0.0))
  ax.set_xlabel(text(drawn_pixel_ratio(fig, ax) / (pixel_um[0] / pixel_um[1])))


def unsupported_columns(thickness_um: np.ndarray) -> np.ndarray:
  """Columns where some layer has no thickness (a boundary was not found): bool [W]."""
  return ~np.all(np.isfinite(thickness_um), axis=0)


# The overlay's no-support columns: hatched as well as grey, since a grey band alone vanishes on
# a grey scan (the legend swatch has the same style with darker hatching for its light ground).
NO_SUPPORT_BAND = {"facecolor": (0.6, 0.6, 0.6, 0.35), "edgecolor": "0.85", "hatch": "////"}
# Its mark at the top edge, one per run of such columns, visible however narrow the run.
NO_SUPPORT_MARK = {"ls": "none", "marker": "v", "markersize": 9, "markerfacecolor": "0.85",
                   "markeredgecolor": "black", "markeredgewidth": 0.8}


def overlay_legend(truth: bool, unsupported: bool, uncertain: bool, uncertain_rule,
                   fluid: bool, true_fluid=None) -> list:
  """The overlay's legend entries: the 8 boundaries, prediction / truth styles, and the
  no-support, uncertain and fluid marks where the figure shows them; true_fluid: whether the
  grader marked fluid on the scan (None: it carries no fluid annotation)."""
  from matplotlib.lines import Line2D
  from matplotlib.patches import Patch
  handles = [Line2D([], [], color=BOUNDARY_COLOURS[b], lw=2.5, label=BOUNDARY_NAMES[b])
             for b in range(NUM_BOUNDARIES)]
  handles += style_legend_handles(truth)
  if unsupported:
    handles.append(Patch(**{**NO_SUPPORT_BAND, "edgecolor": "0.3"},   # dark on the light legend
                         label="no support (not drawn):\nno boundary, or layers\nout of order"))
    handles.append(Line2D([], [], **NO_SUPPORT_MARK,
                          label="a run of no-support\ncolumns (at the top,\nhowever narrow)"))
  if uncertain:
    marks = "\n(orange marks at the top\nand bottom edges over\na faint orange shade)"
    handles.append(uncertain_patch(uncertain_rule, "\n", marks, alpha=1.0))
  if fluid:
    handles.append(Line2D([], [], color=FLUID_COLOUR, lw=2, label="fluid (predicted)"))
  if true_fluid is not None:
    handles.append(Line2D([], [], color=FLUID_COLOUR, lw=2, dashes=TRUTH_DASHES,
                          gapcolor="black", label="fluid (grader)" if true_fluid
                          else "fluid (grader):\nnone marked"))
  return handles


def uncertain_patch(uncertain_rule=None, sep: str = " ", marks: str = "", alpha: float = 0.5):
  """The legend entry of the orange uncertain columns: what flags them (uncertain_rule, lines
  with the threshold last: predict.ColumnFlag.legend; None: not said) and how the figure marks
  them (`marks`, appended)."""
  from matplotlib.patches import Patch
  *words, rule = uncertain_rule or ("",)
  said = f": {sep.join(words)}{sep}({rule})" if uncertain_rule else ""
  return Patch(facecolor=UNCERTAIN_COLOUR, alpha=alpha, label=f"uncertain{said}{marks}")


def _runs(mask: np.ndarray) -> list:
  """[(start, stop)] of each run of True columns of `mask` [W] (stop exclusive)."""
  padded = np.concatenate([[False], np.asarray(mask, bool), [False]])
  edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
  return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def _shade_runs(ax, mask: np.ndarray, **kwargs) -> None:
  """Shades each run of True columns of `mask` [W] as a vertical band."""
  for start, stop in _runs(mask):
    ax.axvspan(start - 0.5, stop - 0.5, lw=0, **kwargs)


def thickness_profile(path: str, thickness_um: np.ndarray, true_um=None, title: str = "",
                      model: str = "", unsupported=None, uncertain=None,
                      uncertain_rule=None, col_um=None) -> None:
  """Small multiples: one panel per layer with its thickness (um) along the scan, prediction
  solid, truth dashed. Columns without support (no boundary found, or `unsupported` [W], e.g.
  where the raw labelling is out of layer order) are shaded grey and not drawn; `uncertain`
  [W] columns (flagged as uncertain_rule says) are shaded orange (the overlay, with boundary
  lines to keep readable, marks them with strips at its edges over a fainter shade).
  thickness_um, true_um [7, W]; col_um: the column size, when known (the x-axis label gives it
  and the scan's width in mm)."""
  from matplotlib.patches import Patch
  from octseg_jax.outputs.atomic import save_figure
  plt = _plt()
  thickness_um = np.asarray(thickness_um, np.float64)
  masked = unsupported_columns(thickness_um)
  if unsupported is not None:
    masked |= np.asarray(unsupported, bool)
  shown = np.where(masked[None], np.nan, thickness_um)
  cols = np.arange(thickness_um.shape[-1])
  fig, axes = plt.subplots(7, 1, figsize=(10, 9.5), sharex=True, layout="constrained")
  for k, ax in enumerate(axes):
    ax.plot(cols, shown[k], color="#0072b2", lw=1.2, ls=PRED_STYLE)
    if true_um is not None:
      ax.plot(cols, true_um[k], color="black", lw=1.0, dashes=TRUTH_DASHES)
    _shade_runs(ax, masked, color="0.85")
    if uncertain is not None:
      _shade_runs(ax, np.asarray(uncertain, bool) & ~masked, color=UNCERTAIN_COLOUR, alpha=0.25)
    # Zero-based: a few um of noise on a 30 um layer must not look like a change.
    top = np.nanmax([np.nanmax(v[k]) if np.isfinite(v[k]).any() else 0.0
                     for v in (shown, true_um) if v is not None] + [10.0])
    ax.set_ylim(0, 1.15 * top)
    ax.set_ylabel(f"{LAYER_NAMES[k + 1]}\n(um)", fontsize=8, rotation=0, ha="right",
                  va="center")
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
  width = thickness_um.shape[-1]
  axes[-1].set_xlabel("column (A-scan, pixels)" + ("" if col_um is None else
                      f"; {col_um:.4g} um each, {width * col_um / 1e3:.2f} mm across"))
  handles = [h for h in style_legend_handles(true_um is not None)]
  handles[0].set_color("#0072b2")
  if len(handles) > 1:
    handles[1].set_color("black")
  handles.append(Patch(facecolor="0.85", label=NO_SUPPORT))
  if uncertain is not None and np.any(uncertain):
    handles.append(uncertain_patch(uncertain_rule))
  detail = "thickness of each layer in um" + (
      "; NOTHING MEASURED: no column has every boundary in layer order" if masked.all() else "")
  fig.suptitle(heading(title or "layer thickness", model, detail), fontsize=9)
  fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
  save_figure(path, fig)


SCORE_LABELS = {"val_dice": "soft Dice, 8 classes pooled (paper)",
                "val_mean_layer_dice": "mean layer Dice (literature)",
                "val_iou": "soft IoU, 8 classes pooled (paper)"}   # training_curves legend


def training_curves(path: str, log: Union[str, Sequence[dict]], title: str = "",
                    kept_epoch: Optional[int] = None) -> None:
  """Paper Figure 3: losses, validation metrics and learning rate per epoch, with `kept_epoch`
  (the best checkpoint's) marked, or else the epoch of the lowest validation loss. `log`: the
  workdir's log.csv path or its rows; columns by name (epoch, lr, *_loss, val_*), those
  missing are left out."""
  from octseg_jax.outputs.atomic import save_figure
  plt = _plt()
  cols = training_log.as_columns(training_log.read_rows(log) if isinstance(log, str) else log)
  if "epoch" not in cols or not len(cols["epoch"]):
    raise ValueError(f"{log if isinstance(log, str) else 'log'}: no 'epoch' column or no rows")
  epoch = cols["epoch"]
  losses = [n for n in cols if n.endswith("_loss")]
  scores = [n for n in cols if n.startswith("val_") and n not in losses]
  fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
  for n in losses:
    axes[0].plot(epoch, cols[n], marker=".", label=n.replace("_loss", "").replace("val",
                                                                                "validation"))
  axes[0].set_title("hybrid loss (CE + Dice term)", fontsize=9)
  axes[0].set_ylabel("loss")
  for n in scores:
    axes[1].plot(epoch, cols[n], marker=".", label=SCORE_LABELS.get(n, n[4:].replace("_", " ")))
  axes[1].set_title("validation metrics (at the model's input resolution)", fontsize=9)
  axes[1].set_ylabel("score (0-1)")
  if "lr" in cols:
    lr = cols["lr"]
    axes[2].plot(epoch, lr, marker=".")
    known = lr[np.isfinite(lr)]
    if known.size and np.all(known > 0):
      from matplotlib.ticker import LogFormatterSciNotation, LogLocator
      axes[2].set_yscale("log")
      # a factor 3 of room each side: always several 1-2-5 ticks, even for a constant rate
      axes[2].set_ylim(known.min() / 3, known.max() * 3)
      axes[2].yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
      axes[2].yaxis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False))
      axes[2].set_title(f"learning rate: {known[0]:.2g} at epoch 1, {known[-1]:.2g} at the "
                        "last", fontsize=9)
  axes[2].set_ylabel("learning rate")
  from matplotlib.ticker import MaxNLocator
  val = cols.get("val_loss")
  best, what = kept_epoch, "checkpoint kept"
  if best is None and val is not None and np.isfinite(val).any():
    best, what = int(epoch[np.nanargmin(val)]), "lowest validation loss"
  for ax in axes:
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if best is not None:
      ax.axvline(best, color="0.4", ls=":", lw=1,
                 label=f"{what} (epoch {best})" if ax is axes[0] else None)
    if ax.get_legend_handles_labels()[0]:
      below = ax is axes[1]                     # below its axes: it would hide the curves
      ax.legend(fontsize=8, **({"loc": "upper center", "bbox_to_anchor": (0.5, -0.2),
                                 "ncol": 2} if below else {}))
  fig.suptitle(title or "training curves", fontsize=10)
  fig.tight_layout()
  save_figure(path, fig)


def class_bars(path: str, summary: dict, with_paper: bool = True, title: str = "") -> None:
  """Paper Figure 5: class-wise IoU and accuracy; the paper's IoU as markers only when
  `with_paper` (Duke data scored with the paper's protocol)."""
  from octseg_jax.outputs.atomic import save_figure
  plt = _plt()
  k = np.arange(len(LAYER_NAMES))
  fig, ax = plt.subplots(figsize=(9, 3.6))
  ax.bar(k - 0.2, np.nan_to_num(summary["paper"]["class_iou"]), 0.4, label="IoU",
         color=OKABE_ITO[4])
  ax.bar(k + 0.2, np.nan_to_num(summary["paper"]["class_accuracy"]), 0.4, label="accuracy",
         color=OKABE_ITO[0])
  if with_paper:
    ax.plot(k, PAPER_IOU, "k_", markersize=18, mew=2, label="paper IoU (Table 2)")
  ax.set_xticks(k, LAYER_NAMES, rotation=20, fontsize=8)
  ax.set_ylim(0, 1.05)
  ax.set_ylabel("score (0-1)")
  ax.legend(fontsize=8, loc="lower right")
  ax.set_title(title or "class-wise IoU and accuracy", fontsize=9)
  save_figure(path, fig)


CAM_COLUMNS = 3          # tiles per row of a CAM panel (input + K classes in a grid)
CAM_TILE_IN = 4.0        # inches per tile: 440 px wide at save_figure's 110 dpi


def network_layer_text(layer: str) -> str:
  """Plain words for a network layer name (models/segnet.py naming)."""
  import re
  if layer == CLASS_HEAD:
    return "the output layer (class scores)"
  m = re.fullmatch(r"(enc|dec)(\d+)_conv(\d+)", layer)
  if not m:
    return f"network layer {layer}"
  part = "encoder" if m.group(1) == "enc" else "decoder"
  return f"{part} level {m.group(2)}, convolution {m.group(3)} ({layer})"


def nice_length(limit: float) -> float:
  """The longest of 1, 2 or 5 times a power of ten that is at most `limit` (> 0): a scale
  bar's length."""
  power = 10.0 ** np.floor(np.log10(limit))
  return max(m * power for m in (1, 2, 5) if m * power <= limit * (1 + 1e-9))


def length_text(um: float) -> str:
  return f"{um / 1e3:g} mm" if um >= 1e3 else f"{um:g} um"


def draw_scale_bars(ax, shape, pixel_um) -> None:
  """Scale bars in the lower left of an image axis: a horizontal one (about a third of the
  width at most) when the column size is known, and a vertical one (half the height at most).
  shape (rows, columns) of the image; pixel_um (row um, column um or None) of one image pixel."""
  import matplotlib.patheffects as effects
  rows, cols = shape
  halo = [effects.withStroke(linewidth=3.5, foreground="black")]
  style = {"color": "white", "fontsize": 8, "path_effects": halo}
  x0, y0 = 0.04 * cols, 0.84 * rows
  tall = nice_length(0.5 * rows * pixel_um[0])
  ax.plot([x0, x0], [y0, y0 - tall / pixel_um[0]], color="white", lw=2, path_effects=halo,
          solid_capstyle="butt")
  ax.text(x0 + 0.015 * cols, y0 - tall / pixel_um[0] / 2, length_text(tall), va="center",
          **style)
  if pixel_um[1] is not None:
    wide = nice_length(cols * pixel_um[1] / 3)
    ax.plot([x0, x0 + wide / pixel_um[1]], [y0, y0], color="white", lw=2, path_effects=halo,
            solid_capstyle="butt")
    ax.text(x0 + wide / pixel_um[1] / 2, y0 + 0.03 * rows, length_text(wide), ha="center",
            va="top", **style)


def _input_tile_title(layer: str, pixel_um, unjudged: bool = False) -> str:
  """The input tile's title: the layer the maps come from, the scale bars and, where the maps
  have no held-out verdict (`unjudged`), that cam_stats.md says why."""
  text = f"input scan; the other maps come from\n{network_layer_text(layer)}"
  if unjudged:
    text += "\nno held-out verdict for these maps\n(cam_stats.md says why)"
  if pixel_um is None:
    return text
  return text + ("\nscale bars hold for every tile" if pixel_um[1] is not None else
                 "\nno column size (--pixel_um=ROW,COL):\nvertical scale bar only")


def _cam_figure(image: np.ndarray, layer_maps: dict, title: str, aspect=None, pixel_um=None,
                checks=None, box=()):
  """Per explained network layer a grid: the input, then for each class where the model
  looked to label it (its normalised map over the scan), with plain titles and a colour bar.
  image [h, w]; layer_maps {layer: [K, h, w]}. aspect: height / width of one image pixel
  (tiles keep the image's shape); None stretches every tile to the same box. pixel_um (row um,
  column um or None) of one image pixel: scale bars on the input tile. checks {layer: [K]
  (passed, folds passed, folds) or None}: whether each class's map beat random removal on
  held-out eyes, said under its title (in red where it did not). box (row0, col0, row1, col1)
  in image pixels: the --cam_box region the maps explain, dashed on every tile. A layer that
  checks (when given) holds no verdicts for says so on its input tile."""
  plt = _plt()
  layers = list(layer_maps)
  k = next(iter(layer_maps.values())).shape[0]
  rows_per = -(-(k + 1) // CAM_COLUMNS)
  ratio = 0.45 if aspect is None else aspect * image.shape[0] / image.shape[1]
  fig, axes = plt.subplots(rows_per * len(layers), CAM_COLUMNS, squeeze=False,
                           figsize=(CAM_TILE_IN * CAM_COLUMNS,
                                    (CAM_TILE_IN * ratio + 0.45) * rows_per * len(layers) + 0.8),
                           layout="constrained")
  aspect = "auto" if aspect is None else aspect
  im = None
  for r, layer in enumerate(layers):
    tiles = axes[r * rows_per:(r + 1) * rows_per].ravel()
    tiles[0].imshow(image, cmap="gray", aspect=aspect)
    _draw_box(tiles[0], box)
    unjudged = checks is not None and not checks.get(layer)
    tiles[0].set_title(_input_tile_title(layer, pixel_um, unjudged), fontsize=10)
    if pixel_um is not None:
      draw_scale_bars(tiles[0], image.shape, pixel_um)
    for c in range(k):
      ax = tiles[c + 1]
      ax.imshow(image, cmap="gray", aspect=aspect)
      im = ax.imshow(layer_maps[layer][c], cmap="viridis", alpha=0.55, vmin=0, vmax=1,
                     aspect=aspect)
      _draw_box(ax, box)
      name = LAYER_NAMES[c] if c < len(LAYER_NAMES) else f"class {c}"
      verdicts = (checks or {}).get(layer, ())
      found = verdicts[c] if c < len(verdicts) else None
      ax.set_title(f"where the model looked to label the {name}{_verdict_text(found)}",
                   fontsize=10, color="firebrick" if found and not found[0] else "black")
    for ax in tiles[k + 1:]:
      ax.set_visible(False)
    for ax in tiles:
      ax.set_xticks([])
      ax.set_yticks([])
  fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01, shrink=0.6,
               label="relevance, 0 (none) to 1 (the class's strongest), per class")
  fig.suptitle(title, fontsize=10)
  return fig


def _draw_box(ax, box) -> None:
  """The --cam_box region (row0, col0, row1, col1; end exclusive), dashed in white."""
  if len(box):
    from matplotlib.patches import Rectangle
    r0, c0, r1, c1 = box
    ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False, lw=1.2,
                           edgecolor="white", ls=(0, (4, 3)), zorder=3))


def _verdict_text(found) -> str:
  """A CAM tile's held-out verdict (cam_report.heldout_passed: passed on the fold-averaged ROAD
  areas, folds passed, folds), or nothing without one."""
  if found is None:
    return ""
  passed, folds_passed, folds = found
  if heldout_verdict(passed, folds_passed, folds) == "mixed":
    return (f"\non held-out eyes: mixed, beats random removal on the\nmean of {folds} folds, "
            f"in only {folds_passed} of {folds} alone")
  return (f"\non held-out eyes: {'beats random removal' if passed else 'NOT better than random'}"
          f"\n(mean of {folds} folds; better in {folds_passed} of {folds})")


def cam_panel(path: str, image: np.ndarray, layer_maps: dict, title: str = "",
              model: str = "", aspect=None, pixel_um=None, checks=None, box=()) -> None:
  """Paper Figure 6 as a file (see _cam_figure); title names the scan, `model` the workdir."""
  from octseg_jax.outputs.atomic import save_figure
  save_figure(path, _cam_figure(image, layer_maps, heading(title, model), aspect, pixel_um,
                                checks, box))


def labelled_cam_panel(image: np.ndarray, layer_maps: dict, title: str = "") -> np.ndarray:
  """Paper Figure 6 as RGB uint8 [h, w, 3] for TensorBoard: class names and a colour bar."""
  return figure_array(_cam_figure(image, layer_maps, title))
