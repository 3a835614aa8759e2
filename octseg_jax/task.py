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

from octseg_jax import losses, metrics


@dataclasses.dataclass(frozen=True)
class Task:
  """Loss and metrics of a config (`config.loss`, `config.model.num_classes`)."""
  loss_config: Any
  num_classes: int

  @classmethod
  def from_config(cls, config) -> "Task":
    losses.get_loss(config.loss.name)          # fails early on an unknown name
    return cls(config.loss, int(config.model.num_classes))

  def _sums(self, logits, labels) -> Dict[str, jax.Array]:
    return losses.batch_sums(logits, labels, self.loss_config.boundary_weight,
                             self.loss_config.layer_weight)

  def loss_of_sums(self, sums, xp=jnp):
    """The configured loss of (accumulated) sums; xp=np evaluates it in float64 on the host."""
    return losses.get_loss(self.loss_config.name)(sums, self.loss_config, xp)

  def train_loss(self, logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Scalar loss of one batch (differentiable)."""
    return self.loss_of_sums(self._sums(logits, labels))

  def eval_sums(self, logits: jax.Array, labels: jax.Array) -> Dict[str, jax.Array]:
    """Additive sums of one batch for `split_metrics`: the loss sums and the confusion matrix."""
    sums = self._sums(logits, labels)
    sums["confusion"] = metrics.confusion_matrix(labels, jnp.argmax(logits, -1),
                                                 self.num_classes)
    return sums

  def split_metrics(self, sums: Dict[str, np.ndarray]) -> Dict:
    """Loss and both metric protocols of a split from its accumulated sums (float64)."""
    sums = {k: np.asarray(v, np.float64) for k, v in sums.items()}
    summary = metrics.summarise(sums["confusion"], float(sums["inter"].sum()))
    summary["loss"] = float(self.loss_of_sums(sums, np))
    return summary
