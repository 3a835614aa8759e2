"""Figures (matplotlib, imported lazily) and label colouring. All files written atomically."""

import numpy as np

# Background black, then one colour per layer NFL..RPE; IGNORE grey.
LABEL_COLOURS = np.array([
    [0, 0, 0], [230, 25, 75], [245, 130, 48], [255, 225, 25], [60, 180, 75],
    [66, 212, 244], [67, 99, 216], [145, 30, 180]], np.uint8)
IGNORE_COLOUR = np.array([128, 128, 128], np.uint8)


def colorize(labels: np.ndarray) -> np.ndarray:
  """uint8 label map [H, W] -> RGB uint8 [H, W, 3] (ids >= 8 shown grey)."""
  labels = np.asarray(labels)
  out = np.broadcast_to(IGNORE_COLOUR, labels.shape + (3,)).copy()
  known = labels < len(LABEL_COLOURS)
  out[known] = LABEL_COLOURS[labels[known]]
  return out


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.4) -> np.ndarray:
  """Grey uint8 scan [H, W] with layers tinted; background left untinted."""
  grey = np.repeat(np.asarray(image, np.float32)[..., None], 3, axis=-1)
  colour = colorize(labels).astype(np.float32)
  tint = ((labels > 0) & (labels < len(LABEL_COLOURS)))[..., None]
  out = np.where(tint, (1 - alpha) * grey + alpha * colour, grey)
  return np.clip(out, 0, 255).astype(np.uint8)


def _plt():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


BOUNDARY_COLOURS = ("#e6194b", "#f58231", "#ffe119", "#3cb44b", "#42d4f4", "#4363d8", "#911eb4",
                    "#f032e6")


def boundary_overlay(path: str, image: np.ndarray, pred_bounds: np.ndarray,
                     true_bounds=None, title: str = "") -> None:
  """Scan with predicted boundaries as solid lines and true ones dashed. bounds [8, W]."""
  from octseg_jax.data.scans import BOUNDARY_NAMES
  from octseg_jax.io_utils import save_figure
  plt = _plt()
  h, w = image.shape
  fig, ax = plt.subplots(figsize=(min(14, 2 + w / 60), min(8, 1 + h / 70)))
  ax.imshow(image, cmap="gray", vmin=0, vmax=255, aspect="auto")
  cols = np.arange(w)
  for b in range(8):
    ax.plot(cols, pred_bounds[b] - 0.5, color=BOUNDARY_COLOURS[b], lw=0.9,
            label=BOUNDARY_NAMES[b])
    if true_bounds is not None:
      ax.plot(cols, true_bounds[b] - 0.5, color=BOUNDARY_COLOURS[b], lw=0.9, ls="--")
  finite = pred_bounds[np.isfinite(pred_bounds)]
  if finite.size:
    ax.set_ylim(min(h, finite.max() + 40), max(0, finite.min() - 40))
  ax.set_title(title + ("  (solid: predicted, dashed: truth)" if true_bounds is not None else ""),
               fontsize=9)
  ax.legend(loc="lower right", fontsize=6, ncol=4)
  ax.set_xlabel("column")
  ax.set_ylabel("row")
  save_figure(path, fig)


def training_curves(path: str, rows: list) -> None:
  """Paper Figure 3: losses, validation accuracy/Dice and learning rate per epoch.
  rows: dicts of the CSV log (strings or numbers)."""
  from octseg_jax.io_utils import save_figure
  plt = _plt()
  get = lambda k: np.array([float(r[k]) for r in rows])
  epoch = get("epoch")
  fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
  axes[0].plot(epoch, get("train_loss"), label="train")
  axes[0].plot(epoch, get("val_loss"), label="validation")
  axes[0].set_title("hybrid loss")
  axes[0].legend()
  for k, label in (("val_accuracy", "accuracy"), ("val_dice", "global Dice (soft)"),
                   ("val_mean_layer_dice", "mean layer Dice")):
    axes[1].plot(epoch, get(k), label=label)
  axes[1].set_title("validation")
  axes[1].legend()
  axes[2].semilogy(epoch, get("lr"))
  axes[2].set_title("learning rate")
  for ax in axes:
    ax.set_xlabel("epoch")
  save_figure(path, fig)


def side_by_side(path: str, images, truths, preds, names) -> None:
  """Paper Figure 4: input, ground truth and prediction per scan (label colours)."""
  from octseg_jax.io_utils import save_figure
  plt = _plt()
  n = len(images)
  fig, axes = plt.subplots(n, 3, figsize=(12, 2.6 * n), squeeze=False)
  for i in range(n):
    for j, (panel, title) in enumerate(((images[i], "input"), (truths[i], "truth"),
                                        (preds[i], "prediction"))):
      ax = axes[i, j]
      if j == 0:
        ax.imshow(panel, cmap="gray", vmin=0, vmax=255, aspect="auto")
      else:
        ax.imshow(colorize(panel), aspect="auto", interpolation="nearest")
      ax.set_title(f"{names[i]}: {title}", fontsize=8)
      ax.axis("off")
  save_figure(path, fig)


def class_bars(path: str, summary: dict) -> None:
  """Paper Figure 5: class-wise IoU and accuracy, with the paper's IoU as markers."""
  from octseg_jax.data.scans import LAYER_NAMES
  from octseg_jax.io_utils import save_figure
  from octseg_jax.report import PAPER_IOU
  plt = _plt()
  k = np.arange(len(LAYER_NAMES))
  fig, ax = plt.subplots(figsize=(9, 3.4))
  ax.bar(k - 0.2, np.nan_to_num(summary["paper"]["class_iou"]), 0.4, label="IoU")
  ax.bar(k + 0.2, np.nan_to_num(summary["paper"]["class_accuracy"]), 0.4, label="accuracy")
  ax.plot(k, PAPER_IOU, "k_", markersize=18, label="paper IoU")
  ax.set_xticks(k, LAYER_NAMES, rotation=20, fontsize=8)
  ax.set_ylim(0, 1.05)
  ax.legend(fontsize=8)
  save_figure(path, fig)


def thickness_profile(path: str, thickness_um: np.ndarray, true_um=None, title: str = "") -> None:
  """Thickness of each layer along the scan (um); truth dashed when given. [7, W]."""
  from octseg_jax.data.scans import LAYER_NAMES
  from octseg_jax.io_utils import save_figure
  plt = _plt()
  fig, ax = plt.subplots(figsize=(10, 3.6))
  cols = np.arange(thickness_um.shape[-1])
  for k in range(7):
    ax.plot(cols, thickness_um[k], color=BOUNDARY_COLOURS[k], lw=1, label=LAYER_NAMES[k + 1])
    if true_um is not None:
      ax.plot(cols, true_um[k], color=BOUNDARY_COLOURS[k], lw=1, ls="--")
  ax.set_xlabel("column")
  ax.set_ylabel("thickness (um)")
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=7, ncol=4)
  save_figure(path, fig)


def heat_colours(maps: np.ndarray) -> np.ndarray:
  """[..., H, W] in [0, 1] -> RGB uint8 [..., H, W, 3] with the 'jet' colour map."""
  from matplotlib import colormaps
  return (colormaps["jet"](np.clip(maps, 0, 1))[..., :3] * 255).astype(np.uint8)


def cam_grid(image: np.ndarray, maps: np.ndarray, alpha: float = 0.5) -> np.ndarray:
  """Input then K heatmaps blended over it, in one row: image [H, W] in [0, 1], maps [K, H, W]
  normalised -> RGB uint8 [H, (K + 1) W, 3] (for TensorBoard)."""
  grey = np.repeat((np.clip(image, 0, 1) * 255)[..., None], 3, axis=-1)
  tiles = [grey] + [(1 - alpha) * grey + alpha * heat_colours(m) for m in maps]
  return np.concatenate(tiles, axis=1).astype(np.uint8)


def cam_panel(path: str, image: np.ndarray, layer_maps: dict, title: str = "",
              aspect=None) -> None:
  """Paper Figure 6: the input, then for each explained layer a row of the K class maps
  (normalised) over the input, with a colour bar. aspect: height / width of one image pixel
  (tiles keep the image's shape); None stretches every tile to the same box."""
  from octseg_jax.data.scans import LAYER_NAMES
  from octseg_jax.io_utils import save_figure
  plt = _plt()
  layers = list(layer_maps)
  k = next(iter(layer_maps.values())).shape[0]
  tile_h = 1.9 if aspect is None else 2.1 * aspect * image.shape[0] / image.shape[1] + 0.25
  fig, axes = plt.subplots(len(layers), k + 1, squeeze=False,
                           figsize=(2.1 * (k + 1), tile_h * len(layers) + 0.6))
  aspect = "auto" if aspect is None else aspect
  im = None
  for r, layer in enumerate(layers):
    axes[r, 0].imshow(image, cmap="gray", aspect=aspect)
    axes[r, 0].set_title("input" if r == 0 else "", fontsize=8)
    axes[r, 0].set_ylabel(layer, fontsize=8)
    for c in range(k):
      ax = axes[r, c + 1]
      ax.imshow(image, cmap="gray", aspect=aspect)
      im = ax.imshow(layer_maps[layer][c], cmap="jet", alpha=0.5, vmin=0, vmax=1, aspect=aspect)
      if r == 0:
        ax.set_title(LAYER_NAMES[c] if c < len(LAYER_NAMES) else f"class {c}", fontsize=8)
    for ax in axes[r]:
      ax.set_xticks([])
      ax.set_yticks([])
  fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.015, pad=0.01, label="normalised Grad-CAM")
  fig.suptitle(title, fontsize=9)
  save_figure(path, fig)
