"""Issue 13's training levers: each off is exactly today's model/augmentation, each on does what
its docstring says (hand-checked values)."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from octseg_jax.data import pipeline
from octseg_jax.errors import InputError
from octseg_jax.models import create_model
from octseg_jax.models.segnet import ConvBlock, with_position_channel

# pipeline.augment as training runs it, under jit (its options static); each option's test
# draws and checks one configuration, faster than op by op.
augment = jax.jit(pipeline.augment, static_argnames=(
    "flip", "max_shift", "intensity", "crop_width", "speckle", "column_shift", "shadows",
    "row_scale"))


def _shapes(config_model):
  model = create_model(config_model)
  v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32)), train=False))
  return {"/".join(k): tuple(a.shape) for k, a in
          flax.traverse_util.flatten_dict(flax.core.unfreeze(v["params"])).items()}


def test_levers_off_keep_the_parameter_tree_of_existing_configs():
  c = default.get_config()
  c.model.widths = (4, 8)
  legacy = {k: v for k, v in c.model.items() if k not in ("kernel", "position_channel")}
  import ml_collections
  assert _shapes(c.model) == _shapes(ml_collections.ConfigDict(legacy))
  assert _shapes(c.model)["enc0_conv0/Conv_0/kernel"] == (3, 3, 1, 4)


def test_tall_kernel_and_position_channel_change_only_their_shapes():
  c = default.get_config()
  c.model.widths = (4, 8)
  base = _shapes(c.model)
  c.model.kernel = [7, 3]                       # a list, as JSON stores it
  c.model.position_channel = True
  on = _shapes(c.model)
  assert on["enc0_conv0/Conv_0/kernel"] == (7, 3, 2, 4)    # rows, cols, image + position, out
  assert on["dec0_conv1/Conv_0/kernel"] == (7, 3, 4, 4)
  assert on["head/kernel"] == base["head/kernel"]
  assert set(on) == set(base)


def test_tall_kernel_impulse_response_is_a_7x3_box():
  block = ConvBlock(1, use_batchnorm=False, kernel=(7, 3))
  x = jnp.zeros((1, 11, 9, 1)).at[0, 5, 4, 0].set(1.0)
  params = {"params": {"Conv_0": {"kernel": jnp.ones((7, 3, 1, 1)), "bias": jnp.zeros(1)}}}
  out = np.asarray(block.apply(params, x, train=False))[0, :, :, 0]
  expected = np.zeros((11, 9))
  expected[2:9, 3:6] = 1.0                      # rows 5 +- 3, columns 4 +- 1
  np.testing.assert_array_equal(out, expected)


def test_position_channel_is_row_over_height_minus_one():
  x = jnp.full((2, 3, 2, 1), 7.0)
  out = np.asarray(with_position_channel(x))
  assert out.shape == (2, 3, 2, 2)
  np.testing.assert_array_equal(out[..., 0], 7.0)
  np.testing.assert_array_equal(out[0, :, :, 1], [[0, 0], [0.5, 0.5], [1, 1]])


def _image(b=2, h=6, w=8):
  x = np.tile(np.arange(w, dtype=np.float32) / (w - 1), (b, h, 1))        # value = column
  y = np.tile(np.arange(h, dtype=np.uint8)[:, None], (b, 1, w))          # label = row
  return x, y


@pytest.mark.parametrize("flip,shift,intensity", [(True, 2, True), (False, 0, False)])
def test_options_off_equal_todays_augmentation(flip, shift, intensity):
  x, y = _image()
  key = jax.random.key(3)
  old = augment(key, x, y, flip, shift, intensity)
  new = augment(key, x, y, flip, shift, intensity, crop_width=0, speckle=0.0,
                column_shift=0, shadows=0, row_scale=0.0)
  for a, b in zip(old, new):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  aug = default.get_config().data.augment
  aug.flip, aug.max_shift, aug.intensity = flip, shift, intensity
  via_config = jax.jit(lambda *a: pipeline.augment_from_config(*a, aug))(key, x, y)
  np.testing.assert_array_equal(np.asarray(old[0]), np.asarray(via_config[0]))


def test_column_crop_takes_consecutive_columns():
  x, y = _image(b=16, w=32)
  xa, ya = augment(jax.random.key(0), x, y, False, 0, False, crop_width=8)
  xa, ya = np.asarray(xa), np.asarray(ya)
  assert xa.shape == (16, 6, 8) and ya.shape == (16, 6, 8)
  cols = np.round(xa * 31).astype(int)                     # back to source column indices
  starts = cols[:, 0, 0]
  np.testing.assert_array_equal(cols, np.broadcast_to(
      starts[:, None, None] + np.arange(8)[None, None, :], cols.shape))
  assert starts.min() >= 0 and starts.max() <= 24 and len(set(starts)) > 1
  np.testing.assert_array_equal(ya, y[:, :, :8])           # labels (= rows) move with them


def test_column_shift_moves_each_column_by_a_smooth_bounded_offset():
  h, w = 20, 16
  x = np.tile((np.arange(h, dtype=np.float32) / 100)[:, None], (4, 1, w))   # value = row/100
  y = np.tile(np.arange(h, dtype=np.uint8)[:, None], (4, 1, w))
  xa, ya = augment(jax.random.key(1), x, y, False, 0, False, column_shift=3)
  xa, ya = np.asarray(xa), np.asarray(ya)
  for b in range(4):
    known = ya[b] != 255
    # The label (source row) at output row r of column c is r - d_c: one d per column.
    d = np.arange(h)[:, None] - ya[b].astype(int)
    offsets = [np.unique(d[known[:, c], c]) for c in range(w)]
    assert all(len(o) == 1 for o in offsets)
    offsets = np.array([o[0] for o in offsets])
    assert np.abs(offsets).max() <= 3 and np.abs(np.diff(offsets)).max() <= 1
    np.testing.assert_allclose(xa[b][known], ya[b][known] / 100, rtol=1e-6)
    np.testing.assert_array_equal(xa[b][~known], 0.0)
    assert (~known).sum() == np.abs(offsets).sum()         # rows shifted in are IGNORE


def test_shift_columns_by_hand():
  x = jnp.array([[1., 2.], [3., 4.], [5., 6.]])
  y = jnp.array([[1, 2], [3, 4], [5, 6]], jnp.uint8)
  xs, ys = pipeline.shift_columns(x, y, jnp.array([1, -1]))
  np.testing.assert_array_equal(np.asarray(xs), [[0, 4], [1, 6], [3, 0]])
  np.testing.assert_array_equal(np.asarray(ys), [[255, 4], [1, 6], [3, 255]])


def test_scale_rows_by_hand():
  """5 rows, middle row 2. Factor 2: source rows 1, 1.5, 2, 2.5, 3 (x interpolated, y from the
  nearest row, halves up); factor 0.5: source rows -2, 0, 2, 4, 6 (outside: 0 and IGNORE);
  factor 1: the scan itself."""
  x = jnp.array([[1.], [2.], [3.], [5.], [9.]])
  y = jnp.array([[0], [1], [2], [3], [4]], jnp.uint8)
  for factor, want_x, want_y in ((2.0, [2, 2.5, 3, 4, 5], [1, 2, 2, 3, 3]),
                                 (0.5, [0, 1, 3, 9, 0], [255, 0, 2, 4, 255]),
                                 (1.0, [1, 2, 3, 5, 9], [0, 1, 2, 3, 4])):
    xs, ys = pipeline.scale_rows(x, y, jnp.float32(factor))
    np.testing.assert_allclose(np.asarray(xs)[:, 0], want_x, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(ys)[:, 0], want_y)


def test_row_scale_stretches_every_layer_by_one_bounded_factor():
  """Through augment: each scan's band of label 1 (rows 20-39 of 60, about the middle) keeps
  its order and changes thickness by one factor per scan within 1 +- 0.2 (+-1 row of
  rounding), the same in every column; factors differ between scans."""
  h, w = 60, 8
  y = np.zeros((8, h, w), np.uint8)
  y[:, 20:40] = 1
  y[:, 40:] = 2
  x = y.astype(np.float32) / 2
  _, ya = augment(jax.random.key(5), x, y, False, 0, False, row_scale=0.2)
  ya = np.asarray(ya)
  assert (ya == ya[:, :, :1]).all()                          # one factor for a scan's columns
  thickness = (ya[:, :, 0] == 1).sum(axis=1)
  assert (thickness >= 20 * 0.8 - 1).all() and (thickness <= 20 * 1.2 + 1).all()
  assert len(set(thickness)) > 1
  for column in ya[:, :, 0]:
    known = np.flatnonzero(column != 255)
    np.testing.assert_array_equal(known, np.arange(known[0], known[-1] + 1))   # IGNORE at edges
    assert (np.diff(column[known].astype(int)) >= 0).all()


def test_row_scale_leaves_the_other_draws_unchanged():
  """The stretch draws from its own key: on scans whose value is their column (constant down
  each column), the flips and shifts with row_scale on move the columns exactly as without it
  (the middle row, inside the scan at any factor and shift, is the same)."""
  x, y = _image(b=8, h=40, w=16)
  key = jax.random.key(6)
  off = augment(key, x, y, True, 2, False)[0]
  on = augment(key, x, y, True, 2, False, row_scale=0.2)[0]
  np.testing.assert_allclose(np.asarray(on)[:, 20], np.asarray(off)[:, 20], rtol=1e-6)
  assert len({tuple(np.asarray(off)[b, 20]) for b in range(8)}) > 1    # the draws differ


def test_speckle_has_mean_one_and_the_given_log_sd():
  x = np.full((1, 100, 100), 0.25, np.float32)
  y = np.zeros((1, 100, 100), np.uint8)
  xa, ya = augment(jax.random.key(2), x, y, False, 0, False, speckle=0.3)
  ratio = np.log(np.asarray(xa, np.float64) / 0.25)        # no clipping: 0.25 * e^(5 sd) > 1 rare
  assert abs(ratio.std() - 0.3) < 0.3 * 5 / np.sqrt(2 * ratio.size)
  assert abs(ratio.mean() + 0.045) < 0.3 * 5 / np.sqrt(ratio.size)
  np.testing.assert_array_equal(np.asarray(ya), y)


def test_vessel_shadows_darken_whole_columns_from_the_ilm_down():
  h, w = 12, 40
  x = np.full((h, w), 0.5, np.float32)
  y = np.zeros((h, w), np.uint8)
  ilm = 2 + np.arange(w) % 5                                      # first layer row per column
  for c in range(w):
    y[ilm[c]:, c] = 3
  y[ilm[7], 7] = 16 + 1                                           # fluid-coded NFL pixel
  y[:, 30] = 255                                                  # no layer label at all
  shadows = jax.jit(pipeline.vessel_shadows, static_argnums=3)
  out = np.asarray(shadows(jax.random.key(4), jnp.asarray(x), jnp.asarray(y), 3), np.float64)
  keep = out / 0.5
  for c in range(w):
    if c == 30:
      np.testing.assert_array_equal(keep[:, c], 1.0)
      continue
    np.testing.assert_array_equal(keep[:ilm[c], c], 1.0)          # above the ILM: untouched
    np.testing.assert_allclose(keep[ilm[c]:, c], keep[-1, c], rtol=1e-6)   # one factor down
  factor = np.delete(keep[-1], 30)
  assert factor.min() >= (1 - pipeline.SHADOW_DEPTH[1]) ** 3 - 1e-6 and factor.max() <= 1
  # each shadow's centre column loses at least 0.84 of its smallest depth (width >= 2)
  assert factor.min() <= 1 - 0.84 * pipeline.SHADOW_DEPTH[0]
  x3, y3 = x[None], y[None]
  xa, ya = augment(jax.random.key(5), x3, y3, False, 0, False, shadows=2)
  np.testing.assert_array_equal(np.asarray(ya), y3)               # labels unchanged
  assert (np.asarray(xa) < 0.5).any()


def test_crop_width_is_checked():
  pipeline.check_crop_width(0, (32, 48), 16)
  pipeline.check_crop_width(32, (32, 48), 16)
  for bad in (24, 64):
    with pytest.raises(InputError, match="crop_width"):
      pipeline.check_crop_width(bad, (32, 48), 16)


LEVERS_ON = {"data.augment.crop_width": 32, "data.augment.speckle": 0.1,
             "data.augment.column_shift": 2, "data.augment.shadows": 2, "model.kernel": (5, 3),
             "loss.depth_weight": 0.1,
             "model.position_channel": True, "train.ema_decay": 0.9}


def _rows(workdir):
  import csv
  import os
  with open(os.path.join(workdir, "log.csv")) as f:
    return list(csv.DictReader(f))


def _best_is_the_weight_average(workdir):
  """With train.ema_decay the best checkpoint holds the average that the resumable checkpoint
  of its epoch holds beside the trained weights (which differ from it). After 2 epochs both
  resumable checkpoints are kept, so the best epoch's is there."""
  from octseg_jax.serving.checkpoints import Checkpoints
  ckpt = Checkpoints(workdir, read_only=True)
  epoch = ckpt.best.latest_step()
  assert sorted(ckpt.latest.all_steps()) == [1, 2] and epoch in (1, 2)
  latest, best = ckpt.latest.restore(epoch), ckpt.best.restore(epoch)
  ckpt.close()
  assert set(best) == {"params", "batch_stats"}
  jax.tree.map(np.testing.assert_array_equal, best, latest["ema"])
  assert any(jax.tree.leaves(jax.tree.map(lambda a, b: not np.array_equal(a, b),
                                          best["params"], latest["params"])))


def test_training_with_every_lever_on_resumes_bit_identically(tmp_path):
  from octseg_jax.training import train
  from conftest import tiny_config
  whole, resumed = str(tmp_path / "whole"), str(tmp_path / "resumed")
  train.train_and_evaluate(tiny_config(**LEVERS_ON), whole, hooks=[])
  train.train_and_evaluate(tiny_config(**LEVERS_ON, **{"train.num_epochs": 2}), resumed,
                           hooks=[])
  _best_is_the_weight_average(resumed)
  train.train_and_evaluate(tiny_config(**LEVERS_ON), resumed, hooks=[])   # after epoch 2
  a, b = _rows(whole), _rows(resumed)
  assert len(a) == len(b) == 3
  for key in ("train_loss", "val_loss", "val_mean_layer_dice"):
    assert [r[key] for r in a] == [r[key] for r in b], key       # the same decimal strings
  assert np.isfinite([float(r["train_loss"]) for r in a]).all()
