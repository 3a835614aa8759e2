import numpy as np

from octseg_jax.geometry import boundaries as geom
from octseg_jax.data import synthetic


def test_labels_ordered_in_every_column():
  s = synthetic.generate(6, 128, 96, seed=3)
  assert geom.column_is_ordered(s.masks).all()
  # Every layer is present somewhere and the retina never touches the image border rows.
  assert set(np.unique(s.masks)) == set(range(8))
  assert (s.masks[:, 0] == 0).all() and (s.masks[:, -1] == 0).all()


def test_same_seed_same_images_and_prefix_stable():
  a = synthetic.generate(3, 64, 48, seed=5)
  b = synthetic.generate(5, 64, 48, seed=5)
  np.testing.assert_array_equal(a.images, b.images[:3])
  np.testing.assert_array_equal(a.masks, b.masks[:3])
  c = synthetic.generate(3, 64, 48, seed=6)
  assert not np.array_equal(a.images, c.images)


def test_thickness_close_to_duke_medians_at_496_rows():
  s = synthetic.generate(8, 496, 256, seed=0, cysts=False)
  counts = np.stack([(s.masks == k).sum(axis=1) for k in range(1, 8)], 1)   # [N, 7, W]
  gap = np.median(counts, axis=(0, 2)) - synthetic.DUKE_THICKNESS_496      # rows
  # The foveal pit thins GCL+IPL, INL and OPL (indices 1-3) in part of each scan, so their
  # medians lie at or below Duke's, by at most 3 rows; the other layers' within a row.
  assert np.all(gap[1:4] <= 0) and np.all(gap[1:4] >= -3), gap
  assert np.all(np.abs(gap[[0, 4, 5, 6]]) <= 1), gap


def test_layers_have_their_reflectivity_order():
  s = synthetic.generate(4, 256, 128, seed=1, cysts=False)
  mean = [s.images[s.masks == k].mean() for k in range(8)]
  assert mean[7] > mean[5] and mean[1] > mean[3] and mean[4] > mean[5]   # RPE>ONL, NFL>INL, OPL>ONL
