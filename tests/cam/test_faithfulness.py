"""ROAD imputation, removal curves, the randomisation sanity check and explain's summary."""

import json
import os
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import sparse, stats
from scipy.sparse import linalg

from octseg_jax.modes import explain
from octseg_jax.outputs import cam_report
from octseg_jax.cam import faithfulness
from octseg_jax.cam import gradcam
from octseg_jax.data import preprocessing
from octseg_jax.data import synthetic
from octseg_jax.errors import InputError
from octseg_jax.outputs.atomic import write_npz
from octseg_jax.models.segnet import SegNet


def ramp(h, w):
  rows, cols = np.mgrid[0:h, 0:w]
  return (0.1 + 0.01 * rows + 0.02 * cols).astype(np.float32)


def test_road_fills_a_ramp_with_its_linear_interpolation_plus_noise_of_the_stated_scale():
  image = ramp(32, 40)
  removed = np.zeros((32, 40), bool)
  removed[8:24, 10:30] = True                           # 320 interior pixels
  removed[3, 3] = removed[28, 35] = True
  keys = jax.random.split(jax.random.key(0), 1)
  # The stencil's weights are symmetric, so a linear function is its own weighted mean.
  exact = np.asarray(faithfulness.road_impute(image, removed[None], keys, noise=0.0))[0]
  np.testing.assert_allclose(exact, image, atol=2e-4)
  noisy = np.asarray(faithfulness.road_impute(image, removed[None], keys, noise=0.05))[0]
  np.testing.assert_array_equal(noisy[~removed], image[~removed])
  residual = (noisy - image)[removed].astype(np.float64)
  assert abs(residual.mean()) < 4 * 0.05 / np.sqrt(residual.size)
  assert 0.88 * 0.05 < residual.std() < 1.12 * 0.05


def direct_solve(image, removed):
  """The ROAD system built entry by entry and solved by a sparse LU (float64)."""
  h, w = image.shape
  idx = -np.ones((h, w), int)
  idx[removed] = np.arange(removed.sum())
  a = sparse.lil_matrix((removed.sum(),) * 2)
  b = np.zeros(removed.sum())
  for r, c in zip(*np.nonzero(removed)):
    i = idx[r, c]
    for dr, dc, wt in faithfulness.NEIGHBOURS:
      rr, cc = r + dr, c + dc
      if 0 <= rr < h and 0 <= cc < w:
        a[i, i] += wt
        if removed[rr, cc]:
          a[i, idx[rr, cc]] -= wt
        else:
          b[i] += wt * image[rr, cc]
  out = image.astype(np.float64).copy()
  out[removed] = linalg.spsolve(a.tocsc(), b)
  return out


def test_road_imputation_matches_a_direct_sparse_solve_including_borders():
  rng = np.random.default_rng(3)
  image = rng.uniform(size=(2, 14, 18)).astype(np.float32)
  removed = rng.uniform(size=(2, 14, 18)) < np.array([0.6, 0.9])[:, None, None]
  keys = jax.random.split(jax.random.key(1), 2)
  got = np.asarray(faithfulness.road_impute(image, removed, keys, noise=0.0, tol=1e-6))
  for n in range(2):
    np.testing.assert_allclose(got[n], direct_solve(image[n], removed[n]), atol=2e-4)


def test_removal_masks_count_pixels_and_break_ties_by_the_tiebreak_not_position():
  ranking = jnp.zeros((6, 5)).at[0, :2].set(1.0)       # two top pixels, the rest tied at 0
  tiebreak = jnp.asarray(np.random.default_rng(0).permutation(30).reshape(6, 5), jnp.float32)
  masks = np.asarray(faithfulness.removal_masks(ranking, tiebreak, jnp.array([0.0, 0.2, 0.5])))
  assert [int(m.sum()) for m in masks] == [0, 6, 15]
  assert masks[1][0, :2].all()
  tied = np.asarray(tiebreak).ravel()[2:]              # the 28 tied pixels, by tiebreak
  expected = np.sort(tied)[::-1][:4]
  removed_tied = np.asarray(tiebreak)[masks[1] & (np.asarray(ranking) == 0)]
  np.testing.assert_array_equal(np.sort(removed_tied)[::-1], expected)


def test_removal_masks_within_a_valid_region_count_and_remove_only_its_pixels():
  """A padded input: fractions count the valid pixels, and a pixel outside is never removed,
  even the one ranked highest; within the region the order is the ranking's."""
  ranking = jnp.asarray(np.random.default_rng(1).uniform(size=(6, 5)), jnp.float32)
  ranking = ranking.at[5, 4].set(9.0)                      # the top pixel lies in the padding
  valid = np.zeros((6, 5), bool)
  valid[:4, :3] = True                                     # 12 pixels hold the scan
  masks = np.asarray(faithfulness.removal_masks(ranking, jnp.zeros((6, 5)),
                                                jnp.array([0.25, 0.5, 1.0]), jnp.asarray(valid)))
  assert [int(m.sum()) for m in masks] == [3, 6, 12]
  assert not masks[:, ~valid].any() and masks[2][valid].all()
  top = np.sort(np.asarray(ranking)[valid])[::-1]
  np.testing.assert_array_equal(np.sort(np.asarray(ranking)[masks[1]])[::-1], top[:6])


def test_curve_area_closed_forms_and_spearman_against_scipy():
  f = np.linspace(0, 0.9, 4)
  np.testing.assert_allclose(faithfulness.curve_area(f, [[2.0, 2.0, 2.0, 2.0],
                                                         [1.0, 2 / 3, 1 / 3, 0.0]]), [1.0, 0.5])
  with warnings.catch_warnings():
    warnings.simplefilter("error")                      # an absent class is NaN, silently
    assert np.isnan(faithfulness.curve_area(f, [0.0, 0.0, 0.0, 0.0]))
  rng = np.random.default_rng(0)
  a = np.round(rng.normal(size=500), 1)                 # ties
  b = a + rng.normal(size=500)
  assert faithfulness.map_similarity(a, b) == pytest.approx(stats.spearmanr(a, b)[0], rel=1e-12)
  assert faithfulness.map_similarity(a, np.ones(500)) == 0.0
  assert np.isnan(faithfulness.map_similarity(np.ones(500), b))


def test_cascade_groups_run_from_the_head_down_and_randomised_replaces_only_them():
  names = ["enc0_conv0", "enc0_conv1", "enc1_conv0", "dec1_conv0", "dec0_conv1", "dec0_conv0",
           "head"]
  assert faithfulness.cascade_groups(names) == [["head"], ["dec0_conv0", "dec0_conv1"],
                                                ["dec1_conv0"], ["enc1_conv0"],
                                                ["enc0_conv0", "enc0_conv1"]]
  v = {"params": {"a": 1, "b": 2}, "batch_stats": {"a": 3}}
  fresh = {"params": {"a": 10, "b": 20}, "batch_stats": {"a": 30}}
  assert faithfulness.randomised(v, fresh, ["a"]) == {"params": {"a": 10, "b": 2},
                                                     "batch_stats": {"a": 30}}


class Region(nn.Module):
  """The explained layer: the input inside a fixed region, zero elsewhere."""
  mask: np.ndarray

  def __call__(self, x):
    return (x * self.mask[None])[..., None]


class RegionModel(nn.Module):
  """Class 1's logit (at every pixel) depends only on the mean brightness of a known region."""
  mask: np.ndarray

  @nn.compact
  def __call__(self, x, train=False):
    feat = Region(self.mask, name="feat")(x)
    level = jnp.sum(feat, axis=(1, 2, 3)) / self.mask.sum()           # [B]
    logit1 = 8.0 * (level - 0.5)
    ones = jnp.ones(x.shape)
    return jnp.stack([jnp.zeros(x.shape), logit1[:, None, None] * ones], axis=-1)


def test_a_model_that_reads_one_region_gets_morf_below_random_under_road():
  rng = np.random.default_rng(0)
  mask = np.zeros((24, 32), np.float32)
  mask[8:14, 4:28] = 1.0
  x = np.where(mask > 0, 0.9, 0.1 + 0.05 * rng.uniform(size=mask.shape)).astype(np.float32)
  model = RegionModel(mask)
  ex = explain.Explainer([(model, {})], ("feat",), "gradcam", "all", road_steps=4, road_noise=0.01)
  out = ex.explain(x[None])
  maps = np.asarray(out["feat"]["norm"][:, 0])
  assert maps[1][mask == 0].max() == 0 and maps[1][mask > 0].min() > 0
  weights = np.ones((24, 32, 2), np.float32)
  base = np.asarray(faithfulness.class_probability(out["logits"], weights[None]))[0]
  r = ex.removal("road", x, maps, weights, base, jax.random.key(0))
  assert r["morf_area"][1] < 0.7 < r["random_area"][1]
  assert r["morf_area"][1] < r["lerf_area"][1]


@pytest.fixture(scope="module")
def tiny():
  model = SegNet(widths=(4, 8), num_classes=8)
  x = np.random.default_rng(0).uniform(size=(16, 24)).astype(np.float32)
  v = model.init(jax.random.key(0), jnp.asarray(x[None]), train=False)
  return model, v, x


@pytest.mark.parametrize("kind", ["road", "deletion"])
def test_batched_removal_gives_the_curves_of_the_unbatched_loop(tiny, kind):
  model, v, x = tiny
  ex = explain.Explainer([(model, v)], ("dec0_conv1",), "gradcam", "all", deletion_steps=3,
                         road_steps=3)
  out = ex.explain(x[None])
  maps = np.asarray(out["dec0_conv1"]["norm"][:, 0])
  weights = np.ones((16, 24, 8), np.float32)
  base = np.asarray(faithfulness.class_probability(out["logits"], weights[None]))[0]
  key = jax.random.key(5)
  batched = ex.removal(kind, x, maps, weights, base, key, batch=7)
  # The loop: one image per forward pass, built from the same rankings, tiebreak and keys.
  k_tie, k_rand, k_noise = jax.random.split(key, 3)
  tiebreak = jax.random.uniform(k_tie, x.shape)
  rankings, orders = explain.removal_orders(kind, maps,
                                            np.asarray(jax.random.uniform(k_rand, x.shape)))
  fractions = ex.fractions[kind]
  @jax.jit
  def one_image(ranking, fraction, job):
    removed = faithfulness.removal_masks(ranking, tiebreak, fraction[None])
    if kind == "road":
      return faithfulness.road_impute(x, removed, jax.random.fold_in(k_noise, job)[None], 0.01)
    return faithfulness.deletion_images(x, removed, np.mean(x))

  score = jax.jit(lambda img: faithfulness.class_probability(model.apply(v, img, train=False),
                                                             weights[None]))
  probs = np.zeros((len(rankings), len(fractions) - 1, 8))
  for r in range(len(rankings)):
    for s, f in enumerate(fractions[1:]):
      img = one_image(jnp.asarray(rankings[r]), jnp.float32(f), r * (len(fractions) - 1) + s)
      probs[r, s] = np.asarray(score(img))[0]
  for order, rows in orders.items():
    curves = np.concatenate([base[:, None], probs[rows, :, np.arange(8)]], axis=1)
    np.testing.assert_allclose(batched[f"{order}_probability"], curves, rtol=1e-5, atol=1e-6)


def test_randomised_weights_give_low_similarity_on_a_trained_tiny_model(trained_workdir):
  from octseg_jax.serving.inference import load_trained
  trained = load_trained(trained_workdir[0])
  s = synthetic.generate(1, 96, 64, seed=9)
  x, _, place = preprocessing.prepare(s.images[0], None, trained.recipe)
  ex = explain.make_explainer(trained, ("dec0_conv1",), "gradcam", "all")
  maps = {"dec0_conv1": np.asarray(ex.explain(x[None])["dec0_conv1"]["raw"][:, 0])}
  region = (place.model_rows, place.model_cols)
  result = ex.sanity(x, (), maps, region, jax.random.key(3))
  cascade = result["dec0_conv1"]["cascade"]                             # [stages, K]
  assert cascade.shape == (len(result["stages"]), 8) and result["stages"][0] == "head"
  assert np.nanmean(cascade[:, 1:]) < 0.5
  # Control: re-initialising nothing keeps the map (similarity 1).
  same = ex.explain(x[None], (), [faithfulness.randomised(trained.variables, trained.variables, [])])
  for c in range(1, 8):
    rho = faithfulness.map_similarity(maps["dec0_conv1"][c], np.asarray(same["dec0_conv1"]["raw"][c, 0]))
    assert np.isnan(rho) or rho == pytest.approx(1.0)


def test_explain_writes_the_summary_npz_per_scan_and_readable_report(trained_workdir, tmp_path):
  workdir, _ = trained_workdir
  s = synthetic.generate(2, 96, 64, seed=4)
  write_npz(str(tmp_path / "scan.npz"), images=s.images, masks=s.masks)
  out = tmp_path / "out"
  with pytest.raises(InputError, match="cam_faithfulness"):
    explain.run(workdir, str(tmp_path / "scan.npz"), str(out), faithfulness_flag="blur")
  result = explain.run(workdir, str(tmp_path / "scan.npz"), str(out),
                       layers=["dec1_conv1", "dec0_conv1"], faithfulness_flag="all", sanity=True)
  saved = json.loads((out / "cam_stats.json").read_text())
  assert list(saved["summary"]) == ["dec1_conv1", "dec0_conv1"]
  for layer, entry in saved["summary"].items():
    assert set(entry) == {"faithful_classes", "randomisation_similarity"}
    m = result["mean"][layer]
    assert entry["faithful_classes"] == int(np.sum(m["road_morf_area"][1:]
                                                   < m["road_random_area"][1:]))
    cascade = np.asarray(saved["sanity"][layer]["cascade"], np.float64)
    assert entry["randomisation_similarity"] == pytest.approx(np.nanmean(cascade[:, 1:]))
  assert sorted(p.name for p in out.glob("*_cam.npz")) == ["scan_000_cam.npz", "scan_001_cam.npz"]
  md = (out / "cam_stats.md").read_text()
  assert "feeds the linear 1x1 head" in md and "## Summary" in md and "ROAD MoRF" in md
  # Without removal or sanity there is no summary object.
  plain = cam_report.summarise(result["per_scan"], None,
                                   dict(result["settings"], faithfulness=[]))
  assert "summary" not in plain


def _compare(morf, random, faithful, similarity=None):
  layer = {"morf_mean": morf, "random_mean": random, "faithful_classes": faithful}
  if similarity is not None:
    layer["randomisation_similarity"] = similarity
  return layer


def test_heldout_evidence_pools_folds_and_keeps_what_every_fold_ran():
  k3 = [1.0, 0.5, 0.9]        # background, two layer classes: MoRF areas of fold a
  runs = {"fold0": {"methods": {"gradcam": {"layers": {
              "dec2_conv1": _compare(k3, [1.0, 0.8, 0.8], 1, 0.2),
              "head": _compare(k3, [1.0, 1.0, 1.0], 2)}},
          "ablation": {"layers": {"head": _compare(k3, k3, 0)}}}},
          "fold1": {"methods": {"gradcam": {"layers": {
              "dec2_conv1": _compare([1.0, 0.7, 0.6], [1.0, 0.8, 0.8], 2, 0.4)}}}}}
  ev = cam_report.heldout_evidence(runs)
  assert list(ev) == ["gradcam"] and list(ev["gradcam"]) == ["dec2_conv1"]
  e = ev["gradcam"]["dec2_conv1"]
  assert e["per_fold_faithful"] == [1, 2]
  np.testing.assert_allclose(e["morf"], [1.0, 0.6, 0.75])
  np.testing.assert_allclose(e["random"], [1.0, 0.8, 0.8])
  assert e["passed"] == [False, True, True]       # pooled: 0.6 < 0.8, 0.75 < 0.8
  assert e["folds_passed"] == [0, 2, 1]           # class 2 only in fold 1 (0.9 vs 0.8 in fold 0)
  assert e["similarity"] == pytest.approx(0.3)


def test_explain_says_per_class_whether_the_map_passed_on_heldout_evidence(
    trained_workdir, tmp_path):
  import shutil
  workdir = str(tmp_path / "w")
  shutil.copytree(trained_workdir[0], workdir)
  s = synthetic.generate(1, 96, 64, seed=4)
  write_npz(str(tmp_path / "scan.npz"), images=s.images)
  morf, rand = [1.0, 0.5, 0.6, 0.9, 0.5, 0.5, 0.5, 0.5], [1.0] + [0.8] * 7
  layer = {"per_fold_faithful": [6, 7], "morf": morf, "random": rand,
           "passed": [m < r for m, r in zip(morf, rand)],
           "folds_passed": [0, 2, 2, 1, 2, 2, 2, 2], "similarity": 0.05}
  evidence = {"models": "2 hand-made folds", "source": [],
              "methods": {"gradcam": {"dec0_conv1": layer, "head": layer},
                          "hirescam": {"dec0_conv1": layer}}}
  with open(os.path.join(workdir, cam_report.EVIDENCE_FILE), "w") as f:
    f.write("{not json")
  with pytest.raises(InputError, match=r"cam_evidence.json: not readable JSON"):
    explain.run(workdir, str(tmp_path / "scan.npz"), str(tmp_path / "bad"))
  assert not os.path.exists(tmp_path / "bad")
  with open(os.path.join(workdir, cam_report.EVIDENCE_FILE), "w") as f:
    json.dump(evidence, f)
  result = explain.run(workdir, str(tmp_path / "scan.npz"), str(tmp_path / "out"),
                       layers=["dec0_conv1", "dec1_conv1"], method="gradcam")
  assert result["heldout"]["methods"] == {"gradcam": {"dec0_conv1": layer}}
  md = (tmp_path / "out" / "cam_stats.md").read_text()
  assert "| 3 | INL | 0.900 | 0.800 | **no** | 1 of 2 |" in md
  assert "| 2 | GCL+IPL | 0.600 | 0.800 | yes | 2 of 2 |" in md
  assert "| 0 | background |" not in md.split("Held-out evidence for")[1].split("##")[0]
  assert "Held-out evidence: gradcam at dec1_conv1 was not measured (2 hand-made folds)." in md
  assert explain.workdir_evidence(trained_workdir[0], "gradcam", ["dec0_conv1"]) is None
  assert cam_report.heldout_markdown(None, "gradcam", "dec0_conv1", "all").startswith(
      "Held-out evidence: none for this model")                   # a workdir without the file


def test_ablation_cam_ablates_as_many_channels_per_pass_as_the_memory_limit_allows(tiny,
                                                                                   monkeypatch):
  """explain passes explain_batch the channels per pass that removal_batch_mb allows (images
  per pass / batch), and the maps do not depend on it."""
  model, v, x = tiny
  batch = np.stack([x, x[::-1]])

  class Traced(Exception):
    pass

  seen = []
  def spy(*args, **kwargs):                    # records the chunk, stops before compiling
    seen.append(kwargs["ablation_chunk"])
    raise Traced
  monkeypatch.setattr(gradcam, "explain_batch", spy)
  for mb in (1e-6, 1e6):                       # one channel per pass; every channel at once
    ex = explain.Explainer([(model, v)], ("dec1_conv0",), "ablation", "all", batch_mb=mb)
    with pytest.raises(Traced):
      ex.explain(batch)
    budget = mb * 2 ** 20 // explain.per_image_bytes(model, v, x.shape)
    assert seen[-1] == max(1, int(budget) // 2)
  monkeypatch.undo()
  maps = [gradcam.explain_batch(model, v, jnp.asarray(batch), ("dec1_conv0",), "ablation",
                                ablation_chunk=c)["dec1_conv0"] for c in seen]
  assert seen[0] == 1 and seen[1] > maps[0]["alpha"].shape[-1]     # more than the channels
  assert float(np.max(maps[1]["raw"])) > 0
  for key in ("raw", "alpha"):
    np.testing.assert_allclose(maps[0][key], maps[1][key], rtol=1e-5, atol=1e-6)
