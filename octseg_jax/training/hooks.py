"""What training does besides training: the metrics log and hooks.

MetricsLog is the one metrics writer: each epoch gives a keyed dict; the CSV header comes from
the keys (rows are aligned by name, so a resumed run whose columns changed rewrites the file
with the union of columns instead of misaligned rows), and TensorBoard gets the same keys as
scalar tags.

A hook has start(ctx), end_epoch(ctx, epoch, row) and end(ctx); each one checks at start what
it needs and, when the model lacks it, says so once and does nothing.
"""

import dataclasses
import os
from typing import Any, Dict, List

import jax
import jax.numpy as jnp
import numpy as np

from octseg_jax.cam import gradcam
from octseg_jax.data import preprocessing
from octseg_jax.layout import BEST_METRICS_FILE, CURVES_FILE, LOG_FILE, TENSORBOARD_DIR
from octseg_jax.outputs import training_log
from octseg_jax.outputs.atomic import write_csv
from octseg_jax.serving.workdir import read_json


class MetricsLog:
  """log.csv and TensorBoard scalars of a workdir, resumed after `epoch`. The TensorBoard
  writer (and its event file) is opened when first used, so a run with nothing left to train
  adds no file."""

  def __init__(self, workdir: str, resume_epoch: int):
    self.path = os.path.join(workdir, LOG_FILE)
    self.tensorboard_dir = os.path.join(workdir, TENSORBOARD_DIR)
    self._writer = None
    rows = training_log.read_rows(self.path)
    self.columns: List[str] = list(rows[0]) if rows else []
    # Rows after the restored checkpoint are dropped: those epochs run again.
    self.rows: List[Dict[str, str]] = [r for r in rows if r.get("epoch", "").isdigit()
                                       and int(r["epoch"]) <= resume_epoch]

  @property
  def writer(self):
    if self._writer is None:
      from tensorboardX import SummaryWriter   # heavy import, only when training
      self._writer = SummaryWriter(self.tensorboard_dir)
    return self._writer

  def write(self, row: Dict[str, Any]) -> None:
    """Appends one epoch's row (must have 'epoch') to the CSV and TensorBoard."""
    self.columns += [k for k in row if k not in self.columns]
    self.rows.append({k: str(v) for k, v in row.items()})
    write_csv(self.path, self.columns, [[r.get(k, "") for k in self.columns] for r in self.rows])
    for key, value in row.items():
      if key != "epoch":
        self.writer.add_scalar(key, value, int(row["epoch"]))
    self.writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()


@dataclasses.dataclass
class Context:
  """What hooks may read: the run's workdir, config, model, validation data, TensorBoard
  writer, the logged rows, and the current variables (a callable)."""
  workdir: str
  config: Any
  model: Any
  val_data: Any
  log: MetricsLog
  variables: Any            # () -> {'params', 'batch_stats'}


class Hook:
  def start(self, ctx: Context) -> None:
    pass

  def end_epoch(self, ctx: Context, epoch: int, row: Dict) -> None:
    pass

  def end(self, ctx: Context) -> None:
    pass


class ConfigText(Hook):
  """The resolved config as text in TensorBoard."""

  def start(self, ctx):
    from octseg_jax.serving.workdir import config_to_json
    ctx.log.writer.add_text("config", "```\n" + config_to_json(ctx.config) + "\n```", 0)


class ImageSummaries(Hook):
  """Every `train.image_summary_every` epochs (and after epoch 1): the first validation scan's
  input, truth and prediction, and per explained layer the K class Grad-CAM maps over it, over
  the scan's pixels only (its extent; the rest pads it to the split's input shape). The
  Grad-CAM part runs only when the model has the layers `explain.layers` names."""

  def start(self, ctx):
    self.layers = tuple(ctx.config.explain.layers)
    x = jnp.asarray(ctx.val_data.x[:1])
    try:
      gradcam.activation_shapes(ctx.model, ctx.variables(), x, self.layers)
    except ValueError as e:
      print(f"warning: TensorBoard Grad-CAM images skipped: {e}")
      self.layers = ()
    model, layers, method = ctx.model, self.layers, ctx.config.explain.method

    def summary(variables, x, extent):     # extent: the scan's part of x (None: all of it)
      if not layers:
        return model.apply(variables, x, train=False), {}
      out = gradcam.explain_batch(model, variables, x, layers, method, "all", extent=extent)
      return out["logits"], {l: out[l]["norm"] for l in layers}

    self.summary_fn = jax.jit(summary)

  def end_epoch(self, ctx, epoch, row):
    every = int(ctx.config.train.image_summary_every)
    if not every or (epoch % every and epoch != 1):      # 0 = no image summaries
      return
    from octseg_jax.outputs import plots
    data, writer = ctx.val_data, ctx.log.writer
    extent = None if data.extents is None else jnp.asarray(data.extents[0])
    logits, maps = self.summary_fn(ctx.variables(), jnp.asarray(data.x[:1]), extent)
    pred = np.asarray(jnp.argmax(logits, -1))[0].astype(np.uint8)
    name = data.names[0] if data.names else "validation scan"
    truth = preprocessing.decode_fluid(data.y[0])[0]      # layer labels (fluid codes removed)
    panel = plots.labelled_panel(data.x[0], truth, pred, title=f"{name}, epoch {epoch}")
    writer.add_image("val/input_truth_prediction", panel, epoch, dataformats="HWC")
    if maps:
      cams = {layer: np.asarray(m[:, 0]) for layer, m in maps.items()}
      writer.add_image("gradcam", plots.labelled_cam_panel(
          data.x[0], cams, title=f"{name}, epoch {epoch}: {ctx.config.explain.method}"),
          epoch, dataformats="HWC")


class TrainingCurves(Hook):
  """training_curves.png in the workdir at the end (the paper's Figure 3), titled with the
  workdir as the user named it (as predict's figures name the model)."""

  def end(self, ctx):
    from octseg_jax.outputs import plots
    if ctx.log.rows:
      best = os.path.join(ctx.workdir, BEST_METRICS_FILE)   # written at each improving epoch
      kept = read_json(best).get("epoch") if os.path.exists(best) else None
      plots.training_curves(os.path.join(ctx.workdir, CURVES_FILE), ctx.log.rows,
                            title=f"training curves of {ctx.workdir}",
                            kept_epoch=kept)


def default_hooks() -> List[Hook]:
  return [ConfigText(), ImageSummaries(), TrainingCurves()]
