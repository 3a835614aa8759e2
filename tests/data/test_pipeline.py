import jax
import numpy as np
import pytest

from configs import default
from octseg_jax.data import pipeline
from octseg_jax.errors import InputError


def _data_cfg(**kw):
  c = default.get_config().data
  with c.unlocked():
    for k, v in kw.items():
      c[k] = v
  return c


def test_subject_split_named_and_kfold_partition():
  subjects = np.repeat(np.arange(1, 9), 3)
  tr, va = pipeline.split_indices(subjects, _data_cfg(val_subjects=(2, 5)), 0)
  assert set(subjects[va]) == {2, 5} and not set(subjects[tr]) & {2, 5}
  seen = []
  for f in range(4):
    tr, va = pipeline.split_indices(subjects, _data_cfg(fold=f), 0)
    assert not set(subjects[tr]) & set(subjects[va])
    seen += sorted(set(subjects[va]))
  assert seen == list(range(1, 9))           # every subject validated exactly once
  with pytest.raises(InputError, match="val_subjects"):
    pipeline.split_indices(subjects, _data_cfg(val_subjects=(11,)), 0)
  for fields, message in (({"num_folds": 9}, "--config.data.num_folds=9: need 2 to 8 folds, at "
                                               "least one of the data's 8 subjects each"),
                          ({"num_folds": 1, "fold": 0}, "--config.data.num_folds=1: need 2 to 8"),
                          ({"num_folds": 3, "fold": 3},
                           "--config.data.fold=3: must be below data.num_folds=3")):
    with pytest.raises(InputError) as e:
      pipeline.split_indices(subjects, _data_cfg(**fields), 0)
    assert str(e.value).startswith(message)


def test_random_split_deterministic_and_sized():
  subjects = np.repeat(np.arange(1, 5), 5)
  a = pipeline.split_indices(subjects, _data_cfg(split="random"), 7)
  b = pipeline.split_indices(subjects, _data_cfg(split="random"), 7)
  c = pipeline.split_indices(subjects, _data_cfg(split="random"), 8)
  np.testing.assert_array_equal(a[1], b[1])
  assert len(a[1]) == 4 and len(a[0]) == 16 and not set(a[0]) & set(a[1])
  assert not np.array_equal(a[1], c[1])


def test_epoch_batches():
  t1 = pipeline.epoch_batches(10, 4, seed=0, epoch=3, shuffle=True)
  t2 = pipeline.epoch_batches(10, 4, seed=0, epoch=3, shuffle=True)
  np.testing.assert_array_equal(t1, t2)
  assert t1.shape == (3, 4) and set(t1.ravel()) == set(range(10))
  assert not np.array_equal(t1, pipeline.epoch_batches(10, 4, seed=0, epoch=4, shuffle=True))
  ev = pipeline.epoch_batches(10, 4, 0, 0, shuffle=False)
  np.testing.assert_array_equal(ev.ravel(), list(range(10)) + [-1, -1])


def test_gather_marks_empty_slots_ignored():
  data = pipeline.Prepared(np.ones((2, 4, 4), np.float32), np.zeros((2, 4, 4), np.uint8),
                           ["a", "b"], np.array([1, 2]))
  x, y = pipeline.gather(data, np.array([1, -1]))
  assert (y[0] == 0).all() and (y[1] == 255).all()


def test_augment_flip_shift_and_intensity():
  x = np.tile(np.linspace(0, 1, 8, dtype=np.float32), (2, 6, 1))        # [2, 6, 8]
  y = np.tile(np.arange(8, dtype=np.uint8), (2, 6, 1))
  key = jax.random.key(0)
  xa, ya = pipeline.augment(key, x, y, flip=True, max_shift=2, intensity=False)
  xa, ya = np.asarray(xa), np.asarray(ya)
  for b in range(2):
    known = ya[b] != 255
    # Labels still equal the (possibly flipped, shifted) column index they came with.
    assert known.any()
    cols = np.round(xa[b][known] * 7).astype(int)
    np.testing.assert_array_equal(ya[b][known], cols)
  xb, yb = pipeline.augment(key, x, y, flip=False, max_shift=0, intensity=True)
  np.testing.assert_array_equal(np.asarray(yb), y)
  assert np.asarray(xb).min() >= 0 and np.asarray(xb).max() <= 1
  assert not np.allclose(np.asarray(xb), x)
  # Same key, same result.
  np.testing.assert_array_equal(xa, np.asarray(pipeline.augment(key, x, y, True, 2, False)[0]))


def test_the_split_record_keeps_a_digest_of_the_validation_scans():
  """scans_digest changes with one pixel and with the shape alone; build's record holds it for
  the validation scans' images and plain masks (the fluid encoding of a fluid-head model's
  training labels does not enter it)."""
  from conftest import tiny_config
  a, m = np.zeros((4, 6), np.uint8), np.ones((4, 6), np.uint8)
  b = a.copy()
  b[1, 2] = 7
  assert pipeline.scans_digest([a], [m]) == pipeline.scans_digest([a.copy()], [m.copy()])
  assert pipeline.scans_digest([a], [m]) != pipeline.scans_digest([b], [m])
  assert pipeline.scans_digest([a], [m]) != pipeline.scans_digest([a.reshape(6, 4)],
                                                                  [m.reshape(6, 4)])
  for fluid_head in (False, True):
    config = tiny_config(**{"model.fluid_head": fluid_head})
    _, _, record = pipeline.build(config)
    sets = pipeline.load_scans(config.data)
    images, masks, _, names = pipeline.flatten(sets)
    idx = [names.index(n) for n in record["val"]["names"]]
    assert record["val"]["sha256"] == pipeline.scans_digest([images[i] for i in idx],
                                                            [masks[i] for i in idx])


def test_prepared_scans_record_the_part_of_the_padded_input_that_holds_each():
  """Two scans of different widths padded to one input shape: each scan's extent is what
  preprocessing.prepare places it in alone, and the labels beyond it are padding (ignore)."""
  from octseg_jax.data import preprocessing, synthetic
  config = default.get_config()
  config.data.recipe.band_height = 32
  recipe = pipeline.recipe_from_config(config)
  narrow, wide = synthetic.generate(1, 64, 40, seed=1), synthetic.generate(1, 64, 72, seed=2)
  data = pipeline.prepare_scans([narrow.images[0], wide.images[0]],
                                [narrow.masks[0], wide.masks[0]], ["n", "w"], np.zeros(2),
                                recipe, (32, 80))
  alone = [preprocessing.prepare(s.images[0], s.masks[0], recipe)[2] for s in (narrow, wide)]
  assert data.extents.tolist() == [[p.model_rows, p.model_cols] for p in alone] == [[32, 40],
                                                                                     [32, 72]]
  assert (data.y[0][:, 40:] == 255).all() and (data.y[1][:, 72:] == 255).all()
