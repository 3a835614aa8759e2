import numpy as np

from octseg_jax.geometry import boundaries as geom
def _column_map(bounds, height):
  """Label map [H, W] from integer boundaries [8, W] (layer k in rows [b_k, b_k+1))."""
  rows = np.arange(height)[:, None]
  m = np.zeros((height, bounds.shape[1]), np.uint8)
  for k in range(7):
    m[(rows >= bounds[k]) & (rows < bounds[k + 1])] = k + 1
  return m


B = np.array([[10, 11, 12], [13, 13, 15], [17, 18, 18], [20, 20, 22], [22, 24, 24],
              [30, 31, 33], [33, 34, 35], [36, 38, 40]])   # [8, 3]; column 0 has NFL/GCL... etc


def test_exact_boundaries_and_thickness_um():
  m = _column_map(B, 50)
  np.testing.assert_array_equal(geom.boundaries_from_labels(m), B)
  t = geom.thickness_um(geom.boundaries_from_labels(m), 3.87)
  np.testing.assert_allclose(t, np.diff(B, axis=0) * 3.87)


def test_zero_thickness_layer_and_one_hot_probs_agree():
  b = B.copy()
  b[2, 1] = b[3, 1] = 20           # INL absent in column 1 (as at the fovea)
  b[1, 1] = 20
  m = _column_map(b, 50)
  np.testing.assert_array_equal(geom.boundaries_from_labels(m), b)
  probs = (m[..., None] == np.arange(8)).astype(float)
  np.testing.assert_allclose(geom.boundaries_from_probs(probs), b)


def test_subpixel_boundary_from_soft_probabilities():
  # A column whose ILM row is half background, half NFL: the ILM moves up by half a pixel.
  m = _column_map(B[:, :1], 50)
  probs = (m[..., None] == np.arange(8)).astype(float)
  probs[B[0, 0] - 1, 0] = [0.5, 0.5, 0, 0, 0, 0, 0, 0]
  got = geom.boundaries_from_probs(probs)[:, 0]
  assert got[0] == B[0, 0] - 0.5 and got[1] == B[1, 0]   # NFL thicker by 0.5, rest unchanged


def test_boundary_position_sd_of_one_hot_and_of_a_half_pixel_is_closed_form():
  m = _column_map(B, 50)
  probs = (m[..., None] == np.arange(8)).astype(float)
  np.testing.assert_array_equal(geom.boundary_position_sd(probs), 0.0)
  probs[B[0, 0] - 1, 0] = [0.5, 0.5, 0, 0, 0, 0, 0, 0]    # the ILM at row 9 or 10, 1:1
  sd = geom.boundary_position_sd(probs)
  assert sd[0, 0] == 0.5 and np.all(sd[1:, 0] == 0) and np.all(sd[:, 1:] == 0)


def test_boundary_position_sd_of_shifted_maps_averaged_is_their_spread():
  # Averaged probabilities of one labelling shifted by d_i rows with weights w_i (as members
  # of an ensemble): every boundary lies at b + d_i with probability w_i, so its sd is the
  # weighted sd of the shifts and its position (boundaries_from_probs) the weighted mean.
  shifts, weights = np.array([0, 2, 3, -1]), np.array([0.4, 0.3, 0.2, 0.1])
  maps = [_column_map(B + d, 60) for d in shifts]
  probs = sum(w * (m[..., None] == np.arange(8)) for w, m in zip(weights, maps))
  mean = np.dot(weights, shifts)
  sd = np.sqrt(np.dot(weights, (shifts - mean) ** 2))
  np.testing.assert_allclose(geom.boundary_position_sd(probs, maps[0]), sd, rtol=1e-12)
  np.testing.assert_allclose(geom.boundaries_from_probs(probs, maps[0]), B + mean, rtol=1e-12)


def test_boundary_position_sd_is_nan_where_the_boundary_is_unknown():
  m = _column_map(B, 50)
  m[:, 1] = 0                                              # no retina in column 1
  probs = (m[..., None] == np.arange(8)).astype(float)
  sd = geom.boundary_position_sd(probs, m)
  assert np.isnan(sd[:, 1]).all() and np.all(sd[:, [0, 2]] == 0)


def test_boundary_error_zero_and_signed_shift():
  m = _column_map(B, 50)
  true = geom.boundaries_from_labels(m)
  e = geom.boundary_error(true, true, 3.87)
  np.testing.assert_array_equal(e["mae_px"], 0)
  shifted = geom.boundaries_from_labels(np.roll(m, 2, axis=0))   # everything 2 rows deeper
  e = geom.boundary_error(shifted, true, 3.87)
  np.testing.assert_allclose(e["signed_px"], 2.0)
  np.testing.assert_allclose(e["mae_um"], 2 * 3.87)
  np.testing.assert_array_equal(e["columns"], 3)


def test_unlabelled_columns_and_unknown_boundaries_are_skipped():
  m = _column_map(B, 50)
  m[:, 2] = 255                    # column 2 unlabelled
  m[12:14, 0] = 255                # fluid across the NFL/GCL boundary (row 13) in column 0
  true = geom.boundaries_from_labels(m)
  assert np.isnan(true[:, 2]).all()
  assert np.isnan(true[1, 0]) and np.isfinite(true[0, 0]) and np.isfinite(true[2, 0])
  pred = geom.boundaries_from_labels(_column_map(B, 50))
  e = geom.boundary_error(pred + 1, true, 1.0)
  np.testing.assert_array_equal(e["columns"], [2, 1, 2, 2, 2, 2, 2, 2])
  np.testing.assert_allclose(e["mae_px"], 1.0)


def test_topology_fix_on_hand_made_broken_columns():
  m = _column_map(B, 50)
  broken = m.copy()
  broken[5, 0] = 3                 # a stray INL pixel in the vitreous
  broken[25, 1] = 1                # an NFL pixel inside the ONL
  broken[14, 2] = 7                # RPE above the GCL
  assert geom.column_is_ordered(m).all()
  np.testing.assert_array_equal(geom.column_is_ordered(broken), [False, False, False])
  # Confident probabilities that follow the broken map, slightly less sure on stray pixels.
  probs = np.full(broken.shape + (8,), 0.01)
  np.put_along_axis(probs, broken[..., None].astype(int), 0.9, axis=-1)
  for r, c in ((5, 0), (25, 1), (14, 2)):
    probs[r, c, m[r, c]] = 0.5
  fixed, changed = geom.enforce_topology(np.log(probs))
  np.testing.assert_array_equal(changed, [True, True, True])
  np.testing.assert_array_equal(fixed, m)          # the MAP valid labelling is the clean map
  assert geom.column_is_ordered(fixed).all()


def test_topology_is_map_among_valid_labellings_brute_force():
  # One column of 5 rows and 3 layers' worth of classes: enumerate all valid labellings.
  rng = np.random.default_rng(0)
  h = 5
  logp = np.log(rng.dirichlet(np.ones(8), size=(h, 1)))
  fixed, _ = geom.enforce_topology(logp)
  best, best_label = -np.inf, None
  import itertools
  # Valid labellings: non-decreasing state sequences over states 0..8 (8 = bottom background).
  for states in itertools.combinations_with_replacement(range(9), h):
    labels = np.array([0 if s == 8 else s for s in states])
    score = logp[np.arange(h), 0, labels].sum()
    if score > best:
      best, best_label = score, labels
  np.testing.assert_array_equal(fixed[:, 0], best_label)


def test_running_argmax_is_first_index_of_the_running_maximum():
  rng = np.random.default_rng(3)
  score = rng.integers(0, 4, size=(200, 9)).astype(float)        # many ties
  expected = np.array([[int(np.argmax(row[:s + 1])) for s in range(9)] for row in score])
  best = np.maximum.accumulate(score.T, axis=0)                     # states first
  np.testing.assert_array_equal(geom._running_argmax(best), expected.T)


def test_topology_skips_certain_background_rows_with_the_same_labels():
  # Rows certain to be background (P = 1, as predict's rows outside the band) above and below
  # a band of random, heavily tied probabilities: the pass over the band alone gives the labels
  # of the plain pass over every row, ties included.
  rng = np.random.default_rng(5)
  probs = np.zeros((2, 40, 30, 8))
  probs[..., 0] = 1.0
  band = rng.integers(0, 3, size=(2, 22, 30, 8)).astype(float) + 1e-3   # many equal scores
  band[:, :, :4] = 0.0
  band[:, :, :4, 0] = 1.0                    # certain background columns inside the band too
  probs[:, 9:31] = band / band.sum(-1, keepdims=True)
  logp = np.log(np.clip(probs, 1e-7, 1))
  assert geom.certain_background_rows(logp) == (9, 31)
  fixed, changed = geom.enforce_topology(logp)
  np.testing.assert_array_equal(fixed, geom._viterbi(logp))
  assert (fixed[:, :9] == 0).all() and (fixed[:, 31:] == 0).all() and fixed.max() > 0
  np.testing.assert_array_equal(changed, ~geom.column_is_ordered(np.argmax(logp, -1)))
  everywhere = np.log(np.clip(np.eye(8)[np.zeros((5, 3), int)], 1e-7, 1))
  assert geom.certain_background_rows(everywhere) == (5, 5)
  np.testing.assert_array_equal(geom.enforce_topology(everywhere)[0], 0)


def _gaussian_reference(values, sd):
  """float64 Gaussian smoothing of a 1-D sequence written out: weights exp(-j^2 / 2 sd^2) for
  |j| <= round(4 sd), normalised, the ends extended by their own value."""
  radius = int(4 * sd + 0.5)
  j = np.arange(-radius, radius + 1)
  w = np.exp(-0.5 * (j / sd) ** 2)
  w /= w.sum()
  padded = np.concatenate([[values[0]] * radius, values, [values[-1]] * radius])
  return np.array([np.dot(w, padded[i:i + 2 * radius + 1]) for i in range(len(values))])


def test_labels_from_boundaries_round_trips_ordered_labellings():
  """Random ordered boundaries (with absent layers and a column without retina) -> labels ->
  boundaries -> labels gives the same labels and boundaries."""
  rng = np.random.default_rng(0)
  for _ in range(20):
    w = 9
    steps = rng.integers(0, 4, size=(8, w)) * (rng.random((8, w)) > 0.2)
    b = (rng.integers(1, 6, size=(1, w)) + np.cumsum(steps, axis=0)).astype(float)
    m = _column_map(b.astype(int), 40)
    m[:, 4] = 0                                                     # no retina here
    got = geom.labels_from_boundaries(geom.boundaries_from_labels(m), 40)
    np.testing.assert_array_equal(got, m)
    expect = b.copy()
    expect[:, 4] = np.nan
    np.testing.assert_array_equal(geom.boundaries_from_labels(got), expect)


def test_labels_from_boundaries_rounds_each_boundary_to_the_nearest_row():
  b = np.array([[1.4], [1.6], [2.0], [2.49], [3.51], [4.0], [5.2], [6.7]])   # [8, 1]
  # rounded: 1, 2, 2, 2, 4, 4, 5, 7: NFL is row 1, GCL+IPL and INL are empty, OPL rows 2-3,
  # ONL+ISM empty, ISE row 4, OS-RPE rows 5-6, background from row 7.
  np.testing.assert_array_equal(geom.labels_from_boundaries(b, 9)[:, 0],
                                [0, 1, 4, 4, 6, 7, 7, 0, 0])
  # Halves round up (floor(b + 0.5)), never to even: a one-row retina at 1.5 .. 2.5 keeps
  # its row 2 (round-half-even would give 2 .. 2, an empty column).
  one_row = np.array([[1.5]] * 7 + [[2.5]])
  np.testing.assert_array_equal(geom.labels_from_boundaries(one_row, 4)[:, 0], [0, 0, 7, 0])


def test_smooth_boundaries_equals_a_written_out_gaussian_within_each_known_run():
  rng = np.random.default_rng(1)
  b = np.sort(rng.normal(50, 10, size=(8, 30)), axis=0)
  b[:, 12] = np.nan                                                 # splits two runs
  b[3, 25] = np.nan                                                 # one unknown boundary
  got = geom.smooth_boundaries(b[None], 2.5)[0]
  for start, stop in ((0, 12), (13, 25), (26, 30)):
    for k in range(8):
      np.testing.assert_allclose(got[k, start:stop], _gaussian_reference(b[k, start:stop], 2.5),
                                 rtol=1e-12)
  np.testing.assert_array_equal(got[:, [12, 25]], b[:, [12, 25]])
  assert geom.known_runs(np.isfinite(b).all(axis=0)) == [(0, 12), (13, 25), (26, 30)]
  np.testing.assert_array_equal(geom.smooth_boundaries(b, 0), b)


def test_smoothing_keeps_order_and_leaves_straight_boundaries_straight():
  rng = np.random.default_rng(2)
  b = 20 + np.cumsum(rng.integers(0, 5, size=(4, 8, 60)), axis=1).astype(float)
  for sd in (0.7, 3.0, 12.0):
    s = geom.smooth_boundaries(b, sd)
    assert (np.diff(s, axis=-2) >= -1e-9).all()
  line = 30.0 + 0.25 * np.arange(60)
  straight = np.broadcast_to(line + 4 * np.arange(8)[:, None], (8, 60))
  np.testing.assert_allclose(geom.smooth_boundaries(straight, 3.0)[:, 12:-12], straight[:, 12:-12],
                             rtol=1e-12)


def test_smoothing_removes_column_jitter_from_the_ordered_labelling():
  """Straight true boundaries, predicted one row too deep and too shallow in turn: the
  smoothed labelling (sd 3) is the truth away from the scan's ends; predicted_geometry with
  smooth_sd is smooth_labelling of the unsmoothed labelling and smooth_boundaries of its
  sub-pixel boundaries, and without it the order fix alone."""
  w = 60
  truth = np.repeat(np.array([[10], [14], [18], [22], [26], [30], [34], [38]]), w, axis=1)
  jitter = truth + np.where(np.arange(w) % 2 == 0, 1, -1)
  m = _column_map(truth, 50)
  probs = (_column_map(jitter, 50)[..., None] == np.arange(8)).astype(np.float32)
  plain, _ = geom.ordered_labels(probs)
  smoothed, changed, bounds = geom.predicted_geometry(probs, smooth_sd=3.0)
  assert not changed.any() and (plain[:, 15:-15] != m[:, 15:-15]).any()
  np.testing.assert_array_equal(smoothed[:, 15:-15], m[:, 15:-15])
  np.testing.assert_array_equal(smoothed, geom.smooth_labelling(plain, 3.0))
  np.testing.assert_array_equal(bounds, geom.smooth_boundaries(jitter.astype(float), 3.0))
  np.testing.assert_allclose(bounds[:, 15:-15], truth[:, 15:-15], atol=0.02)
  unsmoothed = geom.predicted_geometry(probs)
  np.testing.assert_array_equal(unsmoothed[0], plain)
  np.testing.assert_array_equal(unsmoothed[2], jitter)
  later = geom.smooth_geometry(unsmoothed, 3.0)              # smoothing without a second order fix
  for got, want in zip(later, (smoothed, changed, bounds)):
    np.testing.assert_array_equal(got, want)
  assert geom.smooth_geometry(unsmoothed, 0.0) is unsmoothed
  assert geom.smooth_labelling(plain, 0.0) is plain
  blank = plain.copy()
  blank[:, 7] = 0                                                   # a column without retina
  assert (geom.smooth_labelling(blank, 3.0)[:, 7] == 0).all()
