"""The task definition: one loss formula for training and validation, losses by name."""

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np
import pytest

from octseg_jax.learning import losses
from octseg_jax.training import train
from octseg_jax.data import pipeline
from octseg_jax.errors import InputError
from octseg_jax.models import create_model
from octseg_jax.learning.task import Task
from conftest import tiny_config


@pytest.mark.parametrize("overrides", [
    {}, {"loss.name": "ce"}, {"loss.name": "weighted_hybrid"},
    {"loss.dice_mode": "class_mean"}])
def test_validation_loss_of_a_one_batch_split_equals_the_train_loss(overrides):
  config = tiny_config(**overrides)
  task = Task.from_config(config)
  model = create_model(config.model)
  rng = np.random.default_rng(0)
  x = rng.uniform(size=(4, 48, 64)).astype(np.float32)
  y = rng.integers(0, 8, size=(4, 48, 64)).astype(np.uint8)
  y[:, :5] = 255
  variables = model.init(jax.random.key(0), jnp.asarray(x[:1]), train=False)
  logits = model.apply(variables, jnp.asarray(x), train=False)
  # The split path: the batch's eval sums, accumulated in float64, then the loss of the sums.
  sums = jax.tree.map(np.asarray, task.eval_sums(logits, jnp.asarray(y)))
  val_loss = task.split_metrics(sums)["loss"]
  np.testing.assert_allclose(val_loss, float(task.train_loss(logits, jnp.asarray(y))),
                             rtol=1e-6)
  # And through the jitted evaluation loop (other reduction order: rtol 1e-5).
  data = pipeline.Prepared(x, y, [str(i) for i in range(4)], np.zeros(4))
  sharding = NamedSharding(train.make_mesh(1), P("data"))
  looped = task.split_metrics(train.evaluate(jax.jit(train.make_eval_step(model, task)),
                                             variables, data, 4, sharding))["loss"]
  np.testing.assert_allclose(looped, val_loss, rtol=1e-5)


def test_split_loss_does_not_depend_on_batching():
  config = tiny_config(**{"loss.name": "weighted_hybrid"})
  task = Task.from_config(config)
  model = create_model(config.model)
  rng = np.random.default_rng(1)
  x = rng.uniform(size=(4, 48, 64)).astype(np.float32)
  y = rng.integers(0, 8, size=(4, 48, 64)).astype(np.uint8)
  variables = model.init(jax.random.key(0), jnp.asarray(x[:1]), train=False)
  data = pipeline.Prepared(x, y, [str(i) for i in range(4)], np.zeros(4))
  sharding = NamedSharding(train.make_mesh(1), P("data"))
  eval_fn = jax.jit(train.make_eval_step(model, task))
  whole = task.split_metrics(train.evaluate(eval_fn, variables, data, 4, sharding))
  pairs = task.split_metrics(train.evaluate(eval_fn, variables, data, 2, sharding))
  np.testing.assert_allclose(whole["loss"], pairs["loss"], rtol=1e-5)


def test_pixel_weights_hand_computed():
  labels = jnp.array([[[0], [1], [1], [255], [2]]], jnp.uint8)          # one column, 5 rows
  w = np.asarray(losses.pixel_weights(labels, 8, boundary_weight=10.0, layer_weight=5.0))
  # row 0: label 0, below differs -> 1 + 10; row 1: layer, above differs -> 1 + 10 + 5;
  # row 2: layer, above same, below unlabelled (no boundary) -> 1 + 5; row 3: unlabelled -> 0;
  # row 4: layer, above unlabelled, no row below -> 1 + 5.
  np.testing.assert_array_equal(w[0, :, 0], [11, 16, 6, 0, 6])


def test_weighted_hybrid_hand_computed():
  # One column of 3 labelled rows and one ignored row, 2 classes.
  p1 = np.array([0.2, 0.7, 0.6, 0.5])                     # probability of class 1 per row
  logits = jnp.asarray(np.log(np.stack([1 - p1, p1], -1))[None, :, None, :], jnp.float32)
  labels = jnp.array([[[0], [1], [1], [255]]], jnp.uint8)
  cfg = tiny_config(**{"loss.name": "weighted_hybrid", "loss.dice_weight": 0.5,
                       "loss.boundary_weight": 10.0, "loss.layer_weight": 5.0})
  task = Task(cfg.loss, 2)
  nll = -np.log([0.8, 0.7, 0.6])
  w = np.array([11.0, 16.0, 6.0])
  wce = (w * nll).sum() / w.sum()
  inter = 0.8 + 0.7 + 0.6
  dice = (2 * inter + 1) / (3 + 3 + 1)                    # sum p = sum y = 3 labelled pixels
  np.testing.assert_allclose(float(task.train_loss(logits, labels)), wce + 0.5 * (1 - dice),
                             rtol=1e-6)
  # With zero weights it is the paper's hybrid loss.
  plain = Task(tiny_config(**{"loss.name": "weighted_hybrid", "loss.boundary_weight": 0.0,
                              "loss.layer_weight": 0.0}).loss, 2)
  np.testing.assert_allclose(float(plain.train_loss(logits, labels)),
                             float(losses.hybrid(logits, labels)), rtol=1e-6)


def test_pixel_weights_add_the_column_weight_on_labelled_pixels_of_flagged_columns():
  labels = jnp.array([[[0, 0], [1, 1], [1, 255]]], jnp.uint8)           # 3 rows, 2 columns
  columns = jnp.array([[False, True]])
  w = np.asarray(losses.pixel_weights(labels, 8, 10.0, 5.0, column_weight=3.0, columns=columns))
  # Column 0 as without columns: 11, 16, 6. Column 1: background 11 (not a layer pixel),
  # layer 16 + 3, and 0 (unlabelled).
  np.testing.assert_array_equal(w[0], [[11, 11], [16, 19], [6, 0]])


def test_fluid_column_weight_through_the_task_hand_computed():
  """Two columns of rows 0, 1, 1 (K = 2); grader fluid in column 1, row 2. With the fluid head
  the weighted CE adds loss.fluid_column_weight on every layer pixel of column 1, and the
  validation loss of the one-batch split stays the train loss."""
  from octseg_jax.data import preprocessing
  mask = np.array([[0, 0], [1, 1], [1, 1]], np.uint8)
  fluid = np.zeros_like(mask)
  fluid[2, 1] = 1
  labels = jnp.asarray(preprocessing.encode_fluid(mask, fluid)[None])
  outputs = {"classes": jnp.zeros((1, 3, 2, 2)), "fluid": jnp.zeros((1, 3, 2))}
  def task(weight):
    cfg = tiny_config(**{"loss.name": "weighted_hybrid", "model.fluid_head": True,
                         "loss.fluid_column_weight": weight})
    return Task(cfg.loss, 2, fluid_head=True)
  sums = task(3.0)._sums(outputs, labels)
  # Column 0: 11 + 16 + 6; column 1: 11 + 19 + 9. Uniform logits: every NLL is log 2.
  assert float(sums["weight_sum"]) == 72.0
  np.testing.assert_allclose(float(sums["weighted_nll_sum"]), 72 * np.log(2), rtol=1e-6)
  assert float(task(0.0)._sums(outputs, labels)["weight_sum"]) == 66.0
  split = jax.tree.map(np.asarray, task(3.0).eval_sums(outputs, labels))
  np.testing.assert_allclose(task(3.0).split_metrics(split)["loss"],
                             float(task(3.0).train_loss(outputs, labels)), rtol=1e-6)


def test_fluid_column_weight_needs_the_fluid_head_and_the_weighted_loss():
  from octseg_jax.config import checks as config_checks
  on = {"loss.fluid_column_weight": 2.0, "loss.name": "weighted_hybrid", "model.fluid_head": True}
  config_checks.validate(tiny_config(**on), check_files=False)
  for off in ({"model.fluid_head": False}, {"loss.name": "hybrid"}):
    with pytest.raises(InputError, match=r"^--config.loss.fluid_column_weight=2.0: needs "
                       r"model.fluid_head=True"):
      config_checks.validate(tiny_config(**(on | off)), check_files=False)


def test_unknown_names_are_one_line_errors():
  from octseg_jax.config import checks as config_checks
  for field, value in (("loss.name", "focal"), ("train.optimizer", "lamb"),
                       ("train.schedule", "step"), ("loss.dice_mode", "x")):
    with pytest.raises(InputError, match=rf"--config.{field}='{value}': ") as e:
      config_checks.validate(tiny_config(**{field: value}), check_files=False)
    assert "\n" not in str(e.value)
