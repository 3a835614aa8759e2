"""Streaming predict: the same arrays as a whole-file pass, figures on demand, bounded batches."""

import os

import numpy as np
import pytest

from octseg_jax.geometry import boundaries as geom
from octseg_jax.modes import predict
from octseg_jax.data import synthetic
from octseg_jax.errors import InputError
from octseg_jax.outputs.atomic import StreamingNpz, write_npz


def _whole_file_reference(trained, images, batch_size, smooth_sd=0.0):
  """The computation without the streaming path: each scan preprocessed by hand, the model's
  jitted forward pass on zero-padded batches of the same size, softmax, every probability map
  held at once and mapped back, geometry scan by scan (the ordered labels smoothed along the
  B-scan with smooth_sd)."""
  import jax
  from octseg_jax.data import preprocessing
  prepared = [preprocessing.prepare(im, None, trained.recipe) for im in images]
  probs = []
  for start in range(0, len(images), batch_size):
    chunk = prepared[start:start + batch_size]
    x = np.zeros((batch_size,) + chunk[0][0].shape, np.float32)
    x[:len(chunk)] = [c[0] for c in chunk]
    p = np.asarray(jax.nn.softmax(trained.logits_fn(trained.variables, x), axis=-1))
    probs += [preprocessing.restore(p[j], c[2]) for j, c in enumerate(chunk)]
  pred = np.stack([np.argmax(p, -1) for p in probs]).astype(np.uint8)
  plain = [geom.enforce_topology(np.log(np.clip(p, 1e-7, 1)))[0] for p in probs]
  bounds = np.stack([geom.smooth_boundaries(geom.boundaries_from_probs(p, o), smooth_sd)
                     for p, o in zip(probs, plain)])
  ordered = np.stack([geom.smooth_labelling(o, smooth_sd) for o in plain])
  position_sd = np.stack([geom.smooth_boundaries(geom.boundary_position_sd(p, o), smooth_sd)
                          for p, o in zip(probs, plain)])
  pixel_um = float(trained.config.data.pixel_um)
  return {"pred": pred, "pred_ordered": ordered, "boundaries": bounds,
          "thickness_um": geom.thickness_um(bounds, pixel_um),
          "boundary_position_sd_um": position_sd * pixel_um,
          "supported": geom.column_is_ordered(pred) & np.isfinite(bounds).all(axis=-2)}


@pytest.mark.parametrize("overrides, batch_size", [
    ({"train.eval_batch_size": 8}, 8),     # the user's batch: 3 batches of 8, 8, 3 scans
    (None, 1),                             # predict's own on CPU: one scan per network call
    ({"predict.smooth_sd_columns": 2.5}, 1),   # boundaries smoothed along the B-scan
])
def test_streamed_outputs_equal_a_whole_file_pass(trained_workdir, tmp_path, overrides,
                                                  batch_size):
  from octseg_jax.serving.inference import load_trained
  workdir, _ = trained_workdir
  s = synthetic.generate(19, 100, 70, seed=3)
  write_npz(str(tmp_path / "in" / "vol.npz"), images=s.images)
  write_npz(str(tmp_path / "in" / "small.npz"), images=s.images[:2, :90, :60])
  summary = predict.run(workdir, str(tmp_path / "in"), str(tmp_path / "out"), figures="none",
                        overrides=overrides)
  assert summary["scans"] == 21 and summary["scans_per_second"] > 0
  smooth_sd = (overrides or {}).get("predict.smooth_sd_columns", 0.0)
  assert summary["batch_size"] == batch_size and summary["smooth_sd_columns"] == smooth_sd
  trained = load_trained(workdir)
  for name, images in (("vol", s.images), ("small", s.images[:2, :90, :60])):
    expected = _whole_file_reference(trained, images, batch_size, smooth_sd)
    if smooth_sd and name == "vol":                 # the setting changes the labels here
      plain = _whole_file_reference(trained, images, batch_size)
      assert (plain["pred_ordered"] != expected["pred_ordered"]).any()
    with np.load(tmp_path / "out" / f"{name}.npz") as d:
      assert sorted(d.files) == ["boundaries", "boundary_position_sd_um", "names", "pred",
                                 "pred_ordered", "supported", "thickness_um"]
      for key, value in expected.items():
        np.testing.assert_array_equal(d[key], value, err_msg=f"{name}: {key}")
  assert not [f for f in os.listdir(tmp_path / "out") if f.endswith(".png")]   # --figures=none


def test_batch_size_does_not_change_the_geometry():
  """Vectorised geometry of a batch equals scan-by-scan geometry of the same probabilities."""
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(5, 30, 12, 8))
  probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  batched = predict.batch_geometry(probs.astype(np.float32))
  for i in range(5):
    one = predict.batch_geometry(probs[i:i + 1].astype(np.float32))
    for key in batched:
      np.testing.assert_array_equal(batched[key][i], one[key][0], err_msg=key)


def test_figure_scans_of_a_volume_wait_for_its_fovea():
  """--figures=fovea: a volume keeps every B-scan until its fovea is found, then draws the one
  nearest it (positions 0.1 mm apart, fovea at y 0.17 mm: B-scan 2); other files their first."""
  positions = np.array([0.0, 0.1, 0.2, 0.3])
  assert list(predict.figure_scans("fovea", 4, positions)) == [0, 1, 2, 3]
  assert predict.figure_scans("fovea", 4, positions, ((1.0, 0.17), "found")) == {
      2: "\nthe B-scan nearest the fovea (found; y 0.17 mm)"}
  assert predict.figure_scans("fovea", 4) == predict.figure_scans("first", 4) == {0: ""}
  assert predict.figure_scans("fovea", 0) == predict.figure_scans("none", 4) == {}
  assert predict.figure_scans("first", 4, positions, ((1.0, 0.17), "found")) == {0: ""}
  with pytest.raises(InputError, match="--figures=middle: valid values are none, first, fovea"):
    predict.figure_scans("middle", 4)
  mask = np.random.default_rng(0).integers(0, 2, (5, 61)).astype(np.uint8)   # 61: not 8k wide
  np.testing.assert_array_equal(predict.unpacked(np.packbits(mask, axis=-1), 61), mask)
  assert predict.unpacked(None, 61) is None


@pytest.mark.parametrize("figures, expected", [
    ("none", []),
    ("first", ["a_000_overlay.png", "a_000_thickness.png"]),
    ("all", ["a_000_overlay.png", "a_000_thickness.png", "a_001_overlay.png",
             "a_001_thickness.png"]),
])
def test_figures_on_demand(trained_workdir, tmp_path, figures, expected):
  workdir, _ = trained_workdir
  s = synthetic.generate(2, 96, 64, seed=1)
  write_npz(str(tmp_path / "a.npz"), images=s.images)
  predict.run(workdir, str(tmp_path / "a.npz"), str(tmp_path / "out"), figures=figures)
  out = sorted(os.listdir(tmp_path / "out"))
  assert [f for f in out if f.endswith(".png")] == expected
  assert "a.npz" in out and "a_thickness.csv" in out                  # always written


def test_streaming_npz_round_trip_and_incomplete_arrays(tmp_path):
  a = np.arange(60, dtype=np.uint8).reshape(5, 3, 4)
  w = StreamingNpz(str(tmp_path / "x.npz"), {"a": ((5, 3, 4), np.uint8)}, {"n": np.arange(2)})
  for start in range(0, 5, 2):
    w.append("a", a[start:start + 2])
  w.close()
  with np.load(tmp_path / "x.npz") as d:
    np.testing.assert_array_equal(d["a"], a)
    np.testing.assert_array_equal(d["n"], np.arange(2))
  w = StreamingNpz(str(tmp_path / "y.npz"), {"a": ((5, 3, 4), np.uint8)})
  w.append("a", a[:2])
  with pytest.raises(ValueError, match="a: 2 of 5 rows written"):
    w.close()
  z = StreamingNpz(str(tmp_path / "z.npz"), {"a": ((1, 3, 4), np.uint8)})
  with pytest.raises(ValueError, match="does not fit"):
    z.append("a", a[:2])
  z.abort()
  assert os.listdir(tmp_path) == ["x.npz"]                # no temporary file is left


def test_the_figures_name_the_smoothing():
  import types

  def trained(sd):
    return types.SimpleNamespace(workdir="pretrained", config=types.SimpleNamespace(
        predict=types.SimpleNamespace(smooth_sd_columns=sd)))
  assert predict.model_label(trained(0.0)) == "pretrained"
  assert predict.model_label(trained(6.0)) == \
      "pretrained (boundaries smoothed along the B-scan, sd 6 columns)"
