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


def test_unknown_names_are_one_line_errors():
  from octseg_jax.config import checks as config_checks
  for field, value in (("loss.name", "focal"), ("train.optimizer", "lamb"),
                       ("train.schedule", "step"), ("loss.dice_mode", "x")):
    with pytest.raises(InputError, match=rf"--config.{field}='{value}': ") as e:
      config_checks.validate(tiny_config(**{field: value}), check_files=False)
    assert "\n" not in str(e.value)
