"""The optional heads: the boundary head (ordered soft-argmax rows) and the fluid head (a
sigmoid channel), their labels, losses, training and evaluation."""

import csv
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_config
from octseg_jax.anatomy import IGNORE
from octseg_jax.learning import scoring
from octseg_jax.modes import evaluate
from octseg_jax.learning import losses
from octseg_jax.data import preprocessing
from octseg_jax.geometry import boundaries as geom
from octseg_jax.data import pipeline, synthetic, volumes
from octseg_jax.models import create_model, heads
from octseg_jax.learning.task import Task


def _model(**fields):
  cfg = tiny_config(**{f"model.{k}": v for k, v in fields.items()})
  return cfg, create_model(cfg.model)


def test_boundary_head_is_ordered_for_random_parameters_and_has_finite_gradients():
  cfg, model = _model(boundary_head=True, fluid_head=True)
  x = jax.random.uniform(jax.random.key(1), (2, 32, 32))
  init = jax.jit(lambda key: model.init(key, x, train=False))
  boundaries = jax.jit(lambda v: model.apply(v, x, train=False, method="outputs")["boundaries"])
  for seed in range(3):
    v = init(jax.random.key(seed))
    b = np.asarray(boundaries(v))
    assert b.shape == (2, 8, 32)
    assert (np.diff(b, axis=1) >= 0).all()
    assert ((b >= 0) & (b <= 31)).all()
  y = np.asarray(synthetic.label_map(synthetic.boundaries(np.random.default_rng(0), 32, 32), 32))
  labels = jnp.asarray(np.stack([y, y]))
  task = Task.from_config(cfg)

  def loss(params):
    out = model.apply({**v, "params": params}, x, train=False, method="outputs")
    return task.train_loss(out, labels)

  grads = jax.jit(jax.grad(loss))(v["params"])
  leaves = jax.tree.leaves(grads)
  assert all(np.isfinite(np.asarray(g)).all() for g in leaves)
  assert np.abs(np.asarray(grads["boundary_head"]["kernel"])).sum() > 0


def test_order_boundaries_is_a_running_maximum():
  s = jnp.asarray([[[3.0, 1.0], [2.0, 4.0], [5.0, 0.5]]])          # [1, 3, 2]
  np.testing.assert_allclose(np.asarray(heads.order_boundaries(s)),
                             [[[3.0, 1.0], [3.0, 4.0], [5.0, 4.0]]])


def test_soft_argmax_of_one_hot_rows_is_the_row():
  logits = jnp.full((1, 6, 2, 8), -1e4).at[0, 4, 0, :].set(0.0).at[0, 1, 1, :].set(0.0)
  np.testing.assert_allclose(np.asarray(heads.soft_argmax_rows(logits))[0, :, 0], 4.0)
  np.testing.assert_allclose(np.asarray(heads.soft_argmax_rows(logits))[0, :, 1], 1.0)


def _random_masks(rng, n=6, h=40, w=24):
  masks = []
  for _ in range(n):
    m = synthetic.label_map(synthetic.boundaries(rng, h, w), h).astype(np.uint8)
    holes = rng.random((h, w)) < 0.05                              # fluid of unknown layer
    m[holes] = IGNORE
    m[:, rng.integers(0, w)] = IGNORE                # an unannotated column
    masks.append(m)
  return np.stack(masks)


def test_boundary_targets_equal_the_numpy_boundaries_of_the_masks():
  rng = np.random.default_rng(3)
  for _ in range(3):
    masks = _random_masks(rng)
    rows, known = losses.boundary_targets(jnp.asarray(masks))
    ref = geom.boundaries_from_labels(masks)                         # [N, 8, W]
    ref_known = np.isfinite(ref) & (np.nan_to_num(ref) < masks.shape[1])
    np.testing.assert_array_equal(np.asarray(known), ref_known)
    np.testing.assert_array_equal(np.asarray(rows)[ref_known], ref[ref_known])


def test_boundary_labels_round_trip_through_a_label_map():
  rng = np.random.default_rng(5)
  b = synthetic.boundaries(rng, 64, 40)                                # float rows [8, W]
  mask = synthetic.label_map(b, 64)
  rows, known = losses.boundary_targets(jnp.asarray(mask[None]))
  assert np.asarray(known).all()
  np.testing.assert_array_equal(np.asarray(rows)[0], np.floor(b))
  np.testing.assert_array_equal(synthetic.label_map(np.asarray(rows)[0], 64), mask)


def test_fluid_loss_against_a_hand_computed_case():
  z = jnp.asarray([[[0.0, 2.0], [-1.0, 5.0]]])                         # logits [1, 2, 2]
  t = jnp.asarray([[[1, 0], [0, 1]]])
  known = jnp.asarray([[[True, True], [True, False]]])                 # last pixel unknown
  sums = losses.fluid_sums(z, t, known)
  bce = [np.log(2.0), np.log1p(np.exp(2.0)), np.log1p(np.exp(-1.0))]  # -log p(t) per pixel
  p = 1 / (1 + np.exp(-np.array([0.0, 2.0, -1.0])))
  dice = (2 * p[0] + 1.0) / (p.sum() + 1.0 + 1.0)
  want = np.mean(bce) + 1 - dice
  np.testing.assert_allclose(float(losses.fluid_loss_from_sums(sums)), want, rtol=1e-5)
  # Hard counts at p > 0.5: pixel (0,1) is a false positive, (0,0) (p = 0.5) a false negative.
  assert (float(sums["fluid_tp"]), float(sums["fluid_fp"]), float(sums["fluid_fn"])) == (0, 1, 1)


def test_fluid_encoding_round_trips_and_keeps_layers():
  mask = np.array([[0, 3, 3, 255], [5, 5, 255, 7]], np.uint8)
  fluid = np.array([[0, 1, 0, 1], [0, 1, 0, 0]], np.uint8)
  code = preprocessing.encode_fluid(mask, fluid)
  layers, f, known = preprocessing.decode_fluid(code)
  np.testing.assert_array_equal(layers, mask)
  np.testing.assert_array_equal(f, fluid.astype(bool))
  np.testing.assert_array_equal(known, [[True] * 4, [True, True, False, True]])
  np.testing.assert_array_equal(preprocessing.decode_fluid(mask)[0], mask)   # plain masks


def test_augmentation_moves_fluid_exactly_with_the_image():
  rng = np.random.default_rng(0)
  masks = _random_masks(rng, n=4, h=32, w=32)
  fluid = (rng.random(masks.shape) < 0.2).astype(np.uint8)
  code = np.stack([preprocessing.encode_fluid(m, f) for m, f in zip(masks, fluid)])
  x = fluid.astype(np.float32)                                         # the image IS the fluid
  xa, ya = pipeline.augment(jax.random.key(7), jnp.asarray(x), jnp.asarray(code), flip=True,
                            max_shift=5, intensity=False, column_shift=3)
  _, fa, known = preprocessing.decode_fluid(np.asarray(ya))
  xa = np.asarray(xa)
  assert known.sum() > 0.5 * known.size and fa.any()
  np.testing.assert_array_equal(fa[known], xa[known] > 0.5)


def test_restore_rows_maps_band_rows_back():
  p = preprocessing.Placement(top=10, band_rows=20, width=8, height=60, model_rows=40,
                              model_cols=4)
  rows = np.array([[4.0, 4.0, 8.0, 8.0, 99.0]])                        # a padded column at the end
  out = preprocessing.restore_rows(rows, p)
  assert out.shape == (1, 8)
  np.testing.assert_allclose(out[0, [0, 1, 6, 7]], [12.0, 12.0, 14.0, 14.0])


def test_score_fluid_counts_globally():
  f1 = np.zeros((4, 4), np.uint8); f1[1, 1:3] = 1                     # noqa: E702
  f2 = np.zeros((4, 4), np.uint8)
  p1 = np.zeros((4, 4)); p1[1, 1] = 0.9; p1[2, 2] = 0.8               # noqa: E702
  p2 = np.zeros((4, 4)); p2[0, 0] = 0.7                                # noqa: E702
  masks = [np.zeros((4, 4), np.uint8)] * 2
  out = scoring.score_fluid([p1, p2], [f1, f2], masks, [1, 2])
  # tp 1, fp 2 (one per scan), fn 1 -> 2 / (2 + 2 + 1)
  assert out["dice"] == pytest.approx(2 / 5)
  assert out["dice_scans_with_fluid"] == pytest.approx(2 / 4)
  assert out["per_subject_dice"] == {1: pytest.approx(0.5), 2: pytest.approx(0.0)}
  assert out["area_abs_error_px"]["per_scan"] == [0.0, 1.0]


@pytest.fixture(scope="module")
def heads_workdir(tmp_path_factory):
  """A tiny model with both heads, trained for two epochs (one training for this module)."""
  from octseg_jax.training import train
  workdir = str(tmp_path_factory.mktemp("heads") / "w")
  train.train_and_evaluate(tiny_config(**{"model.fluid_head": True, "model.boundary_head": True,
                                          "train.num_epochs": 2}), workdir, hooks=[])
  return workdir


def test_training_with_both_heads_logs_and_scores_them(heads_workdir, tmp_path):
  workdir = heads_workdir
  header = open(f"{workdir}/log.csv").readline().strip().split(",")
  assert {"val_fluid_dice", "val_boundary_head_mae_px"} <= set(header)
  result = evaluate.run(workdir, None, str(tmp_path / "eval"))
  stored = json.load(open(tmp_path / "eval" / "metrics.json"))
  assert stored["heads"]["fluid"]["scans_with_fluid"] >= 1
  mae = stored["heads"]["boundary_head"]["geometry"]["mae_px"]
  assert len(mae) == 8 and all(np.isfinite(mae))
  assert result["heads"]["fluid"]["dice"] == stored["heads"]["fluid"]["dice"]


def test_fluid_head_refuses_data_without_fluid():
  with pytest.raises(Exception, match="fluid annotation"):
    pipeline.with_fluid([np.zeros((2, 2), np.uint8)], [None], "folder")


def _predict(workdir, path, out, *extra):
  import main
  assert main.run_command(["main.py", "--mode=predict", f"--workdir={workdir}", f"--input={path}",
                           f"--output={out}", "--figures=none", *extra]) == 0


def test_predict_writes_the_heads_outputs(heads_workdir, tmp_path):
  from octseg_jax.outputs.atomic import write_npz
  scans = synthetic.generate(2, 96, 64, seed=5)
  write_npz(str(tmp_path / "scans.npz"), images=scans.images)
  _predict(heads_workdir, tmp_path / "scans.npz", tmp_path / "out")
  with np.load(tmp_path / "out" / "scans.npz") as out:
    assert out["fluid"].shape == (2, 96, 64) and out["fluid"].dtype == np.uint8
    assert out["fluid_prob"].dtype == np.float16
    p = out["fluid_prob"].astype(np.float32)
    clear = np.abs(p - 0.5) > 1e-3
    np.testing.assert_array_equal(out["fluid"][clear], (p > 0.5)[clear])
    b = out["boundaries_head"]
    assert b.shape == (2, 8, 64) and (np.diff(b, axis=1) >= 0).all()
    # rows outside the 48-row band of the 96-row scans: probability exactly 0
    assert ((p == 0).all(axis=2).sum(axis=1) >= 96 - 48).all()
    fluid = out["fluid"]
    found = geom.retina_found(out["boundaries"])                      # [2, 64]
  rows = list(csv.DictReader(open(tmp_path / "out" / "scans_thickness.csv")))
  cells = np.array([r["fluid_um"] for r in rows]).reshape(2, 64)
  np.testing.assert_array_equal(cells == "", ~found)       # no retina: fluid unknown, not 0
  fluid_um = np.array([float(c) if c else np.nan for c in cells.ravel()]).reshape(2, 64)
  np.testing.assert_allclose(fluid_um[found], (fluid.sum(axis=1) * 3.87)[found], atol=0.006)
  assert "fluid_area_mm2" not in rows[0]                # a per-scan value: summary.csv's
  summary = list(csv.DictReader(open(tmp_path / "out" / "summary.csv")))
  assert [r["fluid_area_mm2"] for r in summary] == ["", ""]   # no lateral scale for B-scans
  assert {(r["row_um"], r["scale_source"]) for r in rows} == {("3.87", "default (data.pixel_um)")}


def test_predict_volume_writes_fluid_volumes(heads_workdir, tmp_path):
  from octseg_jax.outputs.atomic import write_npz
  vol, _ = synthetic.generate_volume(5, 96, 64, scale_mm=(0.2, 0.0155, 0.03),
                                     cysts=[(0.0, 0.2, 0.3, 0.3, 2.0)])
  write_npz(str(tmp_path / "vol.npz"), images=vol.images, scale_mm=np.array(vol.scale_mm))
  _predict(heads_workdir, tmp_path / "vol.npz", tmp_path / "out", "--volume")
  rows = list(csv.reader(open(tmp_path / "out" / "vol_etdrs.csv")))
  assert rows[0][-6:] == ["coverage", "measured", "supported", "laterality",
                         "laterality_source", "fluid_mm3"] and rows[-1][0] == "total"
  assert {tuple(r[-3:-1]) for r in rows[1:]} == {("OD", volumes.LATERALITY_ASSUMED)}
  with np.load(tmp_path / "out" / "vol.npz") as out:
    fluid_um = out["fluid"].sum(axis=1) * 15.5                      # [N, W]
    assert out["fluid_map_um"].shape == out["thickness_maps_um"].shape[1:]
    sectors = [float(r[-1]) if r[-1] else np.nan for r in rows[1:-1]]
    np.testing.assert_allclose(sectors, out["etdrs_fluid_mm3"], atol=5e-5)
    # 5 B-scans 0.2 mm apart reach few sectors: the 6 mm disc has no total
    assert np.isnan(out["fluid_mm3_total"]) and rows[-1][-1] == ""
    assert np.nanmax(out["fluid_map_um"]) <= fluid_um.max() + 1e-6
    found = geom.retina_found(out["boundaries"])
  rows = list(csv.DictReader(open(tmp_path / "out" / "summary.csv")))
  area = float(rows[0]["fluid_area_mm2"])                             # B-scan 0
  assert rows[0]["scale_source"] == "file"
  assert area == pytest.approx(fluid_um[0][found[0]].sum() * 1e-3 * 0.03, abs=1e-5)


def test_windowed_soft_argmax_ignores_a_distant_second_mode():
  """Column logits: 3 at rows 4 and 5, 2 at row 20 (a second mode), very negative elsewhere.
  All rows: the expectation is pulled towards 20; window 2: only rows 2..6 count."""
  z = np.full(24, -50.0)
  z[[4, 5]], z[20] = 3.0, 2.0
  logits = jnp.asarray(np.broadcast_to(z[None, :, None, None], (1, 24, 1, 8)))
  e3, e2 = np.exp(3.0), np.exp(2.0)
  full = (4 * e3 + 5 * e3 + 20 * e2) / (2 * e3 + e2)
  np.testing.assert_allclose(np.asarray(heads.soft_argmax_rows(logits))[0, :, 0], full,
                             rtol=1e-5)
  np.testing.assert_allclose(np.asarray(heads.soft_argmax_rows(logits, window=2))[0, :, 0],
                             4.5, rtol=1e-5)
  grad = jax.grad(lambda l: heads.ordered_boundaries(l, window=2).sum())(logits)
  g = np.asarray(grad)[0, :, 0, 0]
  assert np.isfinite(g).all() and g[20] == 0 and np.abs(g[4:6]).sum() > 0


def test_gaussian_boundary_target_is_the_cross_entropy_to_a_normalised_gaussian():
  """Hand-computed in float64: one column, the ILM at row 3 of 8 rows (labels 0 above, 1..7
  below), other boundaries too; sigma 1.5 weights every row by exp(-(r - t)^2 / (2 sigma^2))."""
  h = 16
  labels = np.zeros((1, h, 1), np.int32)
  labels[0, 3:10, 0] = np.arange(1, 8)                       # boundaries at rows 3..10
  logits = np.random.default_rng(0).normal(size=(1, h, 1, 8))
  bounds = jnp.asarray(np.arange(3, 11, dtype=np.float32)[None, :, None])
  sums = losses.boundary_sums(jnp.asarray(logits, jnp.float32), bounds, jnp.asarray(labels),
                              target_sigma=1.5)
  logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))   # [1, H, 1, 8]
  rows = np.arange(h)[:, None]
  w = np.exp(-0.5 * ((rows - np.arange(3, 11)[None]) / 1.5) ** 2)    # [H, 8]
  w /= w.sum(axis=0)
  expected = -(w * logp[0, :, 0]).sum()
  np.testing.assert_allclose(float(sums["boundary_nll_sum"]), expected, rtol=1e-5)
  one_hot = losses.boundary_sums(jnp.asarray(logits, jnp.float32), bounds, jnp.asarray(labels))
  np.testing.assert_allclose(float(one_hot["boundary_nll_sum"]),
                             -sum(logp[0, 3 + k, 0, k] for k in range(8)), rtol=1e-5)


def test_own_boundary_convs_take_no_gradient_from_the_class_loss():
  cfg, model = _model(boundary_head=True, boundary_head_convs=2, boundary_window=3)
  x = jax.random.uniform(jax.random.key(2), (2, 32, 32))
  v = jax.jit(lambda key: model.init(key, x, train=False))(jax.random.key(0))
  assert {"boundary_conv0", "boundary_conv1", "boundary_head"} <= set(v["params"])
  plain = jax.eval_shape(lambda: _model(boundary_head=True)[1].init(jax.random.key(0), x,
                                                                    train=False))
  assert "boundary_conv0" not in plain["params"]          # 0 convs: the variables of before
  y = np.asarray(synthetic.label_map(synthetic.boundaries(np.random.default_rng(0), 32, 32), 32))
  labels = jnp.asarray(np.stack([y, y]))

  def class_loss(params):
    logits = model.apply({**v, "params": params}, x, train=False)
    return losses.cross_entropy_from_sums(losses.batch_sums(logits, labels, 0.0, 0.0))

  grads = jax.jit(jax.grad(class_loss))(v["params"])
  assert all(not np.asarray(g).any() for g in jax.tree.leaves(grads["boundary_conv0"]))
  out = jax.jit(lambda v: model.apply(v, x, train=False, method="outputs"))(v)
  assert (np.diff(np.asarray(out["boundaries"]), axis=1) >= 0).all()
