"""The task definition: what is optimised and how a split is scored, for one config.

The train step, the evaluation and the benchmark all go through a Task, so the training loss,
the validation loss (which drives the plateau schedule, early stopping and the best
checkpoint) and the metrics are computed by one formula: `losses.batch_sums` per batch, then
the configured loss of those sums (per batch for training; summed over the split for
validation).
"""

import dataclasses
from typing import Any, Dict

import jax
import jax.numpy as jnp
import numpy as np

from octseg_jax.learning import losses
from octseg_jax.learning import metrics
from octseg_jax.data import preprocessing
@dataclasses.dataclass(frozen=True)
class Task:
  """Loss and metrics of a config (`config.loss`, `config.model`): the class loss, plus the
  fluid and boundary heads' losses when the model has them (model.fluid_head,
  model.boundary_head), weighted by loss.fluid_weight and loss.boundary_head_weight, and the
  pixel head's depth loss weighted by loss.depth_weight (off at 0). With the fluid head, the
  weighted CE also weighs the columns with fluid (loss.fluid_column_weight, off at 0)."""
  loss_config: Any
  num_classes: int
  fluid_head: bool = False
  boundary_head: bool = False

  @classmethod
  def from_config(cls, config) -> "Task":
    losses.get_loss(config.loss.name)          # fails early on an unknown name
    return cls(config.loss, int(config.model.num_classes), bool(config.model.fluid_head),
               bool(config.model.boundary_head))

  @property
  def has_heads(self) -> bool:
    """The model's `outputs` dict (not its class logits alone) feeds the loss."""
    return self.fluid_head or self.boundary_head

  def _sums(self, outputs, labels) -> Dict[str, jax.Array]:
    """outputs: class logits [B, H, W, K], or the model's `outputs` dict with the heads."""
    logits = outputs["classes"] if isinstance(outputs, dict) else outputs
    columns = None
    if self.fluid_head:
      labels, fluid, known = preprocessing.decode_fluid(labels, jnp)
      columns = preprocessing.fluid_columns(fluid, jnp)      # [B, W]
    sums = losses.batch_sums(logits, labels, self.loss_config.boundary_weight,
                             self.loss_config.layer_weight,
                             self.loss_config.fluid_column_weight, columns)
    if self.fluid_head:
      sums.update(losses.fluid_sums(outputs["fluid"], fluid, known))
    if self.boundary_head:
      sums.update(losses.boundary_sums(outputs["boundary_logits"], outputs["boundaries"], labels,
                                       float(self.loss_config.boundary_target_sigma)))
    if self.loss_config.depth_weight:
      sums.update(losses.depth_sums(logits, labels))
    return sums

  def loss_of_sums(self, sums, xp=jnp):
    """The configured loss of (accumulated) sums; xp=np evaluates it in float64 on the host."""
    loss = losses.get_loss(self.loss_config.name)(sums, self.loss_config, xp)
    if self.fluid_head:
      loss = loss + self.loss_config.fluid_weight * losses.fluid_loss_from_sums(sums, xp)
    if self.boundary_head:
      loss = loss + (self.loss_config.boundary_head_weight
                     * losses.boundary_loss_from_sums(sums, xp))
    if self.loss_config.depth_weight:
      loss = loss + self.loss_config.depth_weight * losses.depth_loss_from_sums(sums, xp)
    return loss

  def train_loss(self, outputs, labels: jax.Array) -> jax.Array:
    """Scalar loss of one batch (differentiable)."""
    return self.loss_of_sums(self._sums(outputs, labels))

  def eval_sums(self, outputs, labels: jax.Array) -> Dict[str, jax.Array]:
    """Additive sums of one batch for `split_metrics`: the loss sums and the confusion matrix."""
    sums = self._sums(outputs, labels)
    logits = outputs["classes"] if isinstance(outputs, dict) else outputs
    if self.fluid_head:
      labels = preprocessing.decode_fluid(labels, jnp)[0]
    sums["confusion"] = metrics.confusion_matrix(labels, jnp.argmax(logits, -1),
                                                 self.num_classes)
    return sums

  def split_metrics(self, sums: Dict[str, np.ndarray]) -> Dict:
    """Loss and both metric protocols of a split from its accumulated sums (float64), with the
    heads' model-resolution numbers when present (fluid Dice, boundary-head MAE in pixels)."""
    sums = {k: np.asarray(v, np.float64) for k, v in sums.items()}
    summary = metrics.summarise(sums["confusion"], float(sums["inter"].sum()))
    summary["loss"] = float(self.loss_of_sums(sums, np))
    if self.fluid_head:
      summary["fluid_dice"] = metrics.dice_of_counts(sums["fluid_tp"], sums["fluid_fp"],
                                                     sums["fluid_fn"])
    if self.boundary_head:
      with np.errstate(invalid="ignore", divide="ignore"):
        mae = sums["boundary_abs_sum"] / sums["boundary_count"]
      summary["boundary_head_mae_px"] = [float(v) for v in mae]
    return summary
