"""Volumes: readers (eyepy fixtures, .npz, Duke .mat), en-face maps, fovea, ETDRS, .eye output.

Quantitative checks run the truth label maps of phantom volumes through the geometry path
(boundaries_from_labels -> thickness -> maps -> ETDRS) and compare with the phantom's
closed-form thickness averaged over each sector on a fine independent grid.
"""

import dataclasses
import json
import os

import numpy as np
import pytest
import scipy.io

from octseg_jax.geometry import enface
from octseg_jax.geometry import boundaries as geom
from octseg_jax.outputs import volume_report
from octseg_jax.data import inputs, synthetic, volumes
from octseg_jax.data.scans import bscan_name
from octseg_jax.errors import InputError

from conftest import ROOT  # noqa: E402
FIXTURES = os.path.join(ROOT, "..", "shared", "data", "eyepy_fixtures")
needs_fixtures = pytest.mark.skipif(
    not os.path.exists(os.path.join(FIXTURES, "heyex_vol", "test_volume.vol")),
    reason=f"eyepy fixtures not found at {FIXTURES} (only in the development checkout)")


def sector_reference(laterality, row_um, step=0.004):
  """Mean true thickness [9, 8] (7 layers, total) per ETDRS sector, from the phantom's closed
  form on a fine grid with sector membership by radius and angle."""
  g = np.arange(-3.0, 3.0 + step / 2, step)
  x, y = np.meshgrid(g, g)
  t = synthetic.volume_thickness_rows(x, y, laterality, row_um) * row_um       # [7, ...]
  t = np.concatenate([t, t.sum(0)[None]])
  r = np.hypot(x, y)
  angle = np.degrees(np.arctan2(y, x if laterality == "OD" else -x)) % 360     # 0 = nasal
  quadrant = np.select([(angle >= 45) & (angle < 135), (angle >= 135) & (angle < 225),
                        (angle >= 225) & (angle < 315)], ["S", "T", "I"], "N")
  ring = np.select([r < 0.5, r < 1.5, r < 3.0], [0, 1, 2], -1)
  out = []
  for name in enface.ETDRS_SECTORS:
    sel = ring == 0 if name == "C0" else (ring == int(name[1])) & (quadrant == name[0])
    out.append(t[:, sel].mean(axis=1))
  return np.array(out)


def analyse_truth(vol, fovea=None):
  bounds = geom.boundaries_from_labels(vol.masks)                              # [N, 8, W]
  return volume_report.analyse(vol, bounds, fovea), bounds


@pytest.mark.parametrize("shape,laterality,tol", [("flat", "OD", 1.0), ("curved", "OS", 3.0)])
def test_phantom_etdrs_and_fovea_match_truth(shape, laterality, tol):
  vol, truth = synthetic.generate_volume(61, 160, 256, shape=shape, laterality=laterality,
                                         render_images=False)
  result, bounds = analyse_truth(vol)
  # Whole rows of thickness: the label maps measure it exactly per column.
  np.testing.assert_array_equal(np.diff(bounds, axis=1), truth["thickness_rows"])
  assert result["fovea_found"]
  assert np.hypot(*(result["fovea_mm"] - truth["fovea_mm"])) < 0.1
  np.testing.assert_allclose(result["etdrs_coverage"], 1.0)
  reference = sector_reference(laterality, vol.scale_mm[1] * 1000)
  err = np.abs(result["etdrs_um"] - reference)
  assert err.max() < tol, (shape, err.max(axis=1))
  # Nasal sectors carry the thicker NFL whatever the eye: the side is right for OD and OS.
  nfl = dict(zip(enface.ETDRS_SECTORS, result["etdrs_um"][:, 0]))
  assert nfl["N2"] > nfl["T2"] + 10


def test_fovea_override_moves_the_grid():
  vol, truth = synthetic.generate_volume(31, 160, 128, scale_mm=(0.25, 0.00387, None),
                                         render_images=False)
  shifted = truth["fovea_mm"] + np.array([1.0, 0.0])
  result, _ = analyse_truth(vol, fovea=tuple(shifted))
  np.testing.assert_allclose(result["fovea_mm"], shifted)
  assert not result["fovea_found"]
  centre_total = result["etdrs_um"][0, -1]
  assert centre_total > sector_reference("OD", 3.87)[0, -1] + 20   # off the pit: thicker


def test_enface_maps_interpolate_linear_fields_exactly():
  positions = np.array([0.0, 0.1, 0.35, 0.5])            # uneven spacing
  col_mm, width = 0.05, 21
  xs = np.arange(width) * col_mm
  values = (2.0 + 3.0 * xs[None, :] - 4.0 * positions[:, None])[:, None, :]    # [N, 1, W]
  x_mm, y_mm = enface.grid_axes((0.5, 0.25), 26, 0.02)
  maps, covered = enface.enface_maps(values, positions, col_mm, x_mm, y_mm, reach_mm=1.0)
  expected = 2.0 + 3.0 * x_mm[None, :] - 4.0 * np.clip(y_mm, 0, 0.5)[:, None]
  np.testing.assert_allclose(maps[0][covered], np.broadcast_to(expected, covered.shape)[covered],
                             rtol=1e-12, atol=1e-12)
  # Covered: inside the columns' extent and within reach of the B-scans.
  assert covered.sum() == ((x_mm >= 0) & (x_mm <= xs[-1])).sum() * len(y_mm)
  _, near = enface.enface_maps(values, positions, col_mm, x_mm, y_mm, reach_mm=0.05)
  distance = np.abs(y_mm[:, None] - positions[None, :]).min(axis=1)
  np.testing.assert_array_equal(near.any(axis=1), distance <= 0.05 + 1e-9)


def test_etdrs_masks_follow_anatomy_and_area():
  step = enface.GRID_STEP_MM
  for laterality, nasal in (("OD", 1), ("OS", -1)):
    masks = enface.etdrs_masks(laterality, step)
    m = masks["C0"].shape[0]
    c = m // 2
    px = lambda mm: int(round(mm / step))
    probes = {"C0": (0, 0), "S1": (0, 1.0), "I1": (0, -1.0), "N1": (nasal, 0),
              "T1": (-nasal, 0), "S2": (0, 2.2), "N2": (2.2 * nasal, 0), "T2": (-2.2 * nasal, 0),
              "I2": (0.3, -2.5)}
    for name, (x, y) in probes.items():
      row, col = c - px(y), c + px(x)
      assert masks[name][row, col] == 1, (laterality, name)
      assert sum(v[row, col] for v in masks.values()) == 1
    area = sum(v.sum() for v in masks.values()) * step ** 2
    assert abs(area - np.pi * 9.0) / (np.pi * 9.0) < 0.01


def test_sparse_stack_reports_partial_coverage():
  """The 11 annotated Duke positions (subject 1) out of 61: strips, not the whole grid."""
  vol, truth = synthetic.generate_volume(61, 160, 192, scale_mm=(0.123, 0.00387, None),
                                         render_images=False)
  index = np.array([10, 15, 20, 25, 28, 30, 32, 35, 40, 45, 50])
  sparse = volumes.Volume(vol.images[index], vol.masks[index], vol.annotated[index],
                          vol.positions_mm[index], vol.scale_mm, "OD",
                          [vol.names[i] for i in index], "sparse")
  result, _ = analyse_truth(sparse, fovea=tuple(truth["fovea_mm"]))
  # Independent coverage: share of each sector within REACH_MM of a B-scan row.
  step = 0.004
  g = np.arange(-3.0, 3.0 + step / 2, step)
  x, y = np.meshgrid(g, g)
  near = np.abs((y + truth["fovea_mm"][1])[..., None] - sparse.positions_mm).min(-1) \
      <= enface.REACH_MM
  r, angle = np.hypot(x, y), np.degrees(np.arctan2(y, x)) % 360
  superior = (r >= 1.5) & (r < 3.0) & (angle >= 45) & (angle < 135)
  central = r < 0.5
  cov = dict(zip(enface.ETDRS_SECTORS, result["etdrs_coverage"]))
  assert abs(cov["S2"] - near[superior].mean()) < 0.03
  assert abs(cov["C0"] - near[central].mean()) < 0.03
  assert 0 < cov["S2"] < 0.9


def test_eye_output_round_trips_through_eyepy(tmp_path):
  import eyepy
  vol, _ = synthetic.generate_volume(9, 160, 64, seed=3, laterality="OS")
  bounds = geom.boundaries_from_labels(vol.masks) + 0.25
  bounds[2, 3, 10:20] = np.nan
  path = str(tmp_path / "vol.eye")
  volume_report.write_eye(path, vol, bounds)
  ev = eyepy.EyeVolume.load(path)
  np.testing.assert_array_equal(ev.data, vol.images)
  assert ev.laterality == "OS"
  np.testing.assert_allclose(ev.scale, vol.scale_mm)
  assert list(ev.layers) == list(volumes.HEYEX_NAMES)
  for k, name in enumerate(volumes.HEYEX_NAMES):
    np.testing.assert_array_equal(ev.layers[name].data, bounds[:, k])
  again = volumes.read_volume(path)
  np.testing.assert_allclose(again.positions_mm, vol.positions_mm, atol=1e-9)
  assert again.laterality == "OS" and again.annotated.all()


@needs_fixtures
def test_eye_output_of_a_scanner_file_keeps_its_fundus_image_and_bscan_placement(tmp_path):
  """The .eye written for a HEYEX .vol carries the file's own fundus (NIR) image, not eyepy's
  projection of the B-scans, and each B-scan where the file places it on that image."""
  import eyepy
  source = os.path.join(FIXTURES, "heyex_vol", "test_volume.vol")
  vol, original = volumes.read_volume(source), eyepy.import_heyex_vol(source)
  n, _, w = vol.images.shape
  bounds = np.broadcast_to(np.arange(20.0, 100.0, 10.0)[None, :, None], (n, 8, w))
  volume_report.write_eye(str(tmp_path / "v.eye"), vol, bounds)
  ev = eyepy.EyeVolume.load(str(tmp_path / "v.eye"))
  np.testing.assert_array_equal(ev.localizer.data, original.localizer.data)
  assert ev.localizer.data.shape != (n, w)                 # eyepy's projection would be [N, W]
  assert [(m["start_pos"], m["end_pos"]) for m in ev.meta["bscan_meta"]] == [
      (m["start_pos"], m["end_pos"]) for m in original.meta["bscan_meta"]]
  np.testing.assert_allclose(ev.localizer_transform.params,       # layers' en-face projections
                             original.localizer_transform.params)
  np.testing.assert_allclose(volumes.read_volume(str(tmp_path / "v.eye")).positions_mm,
                             vol.positions_mm)


@needs_fixtures
def test_heyex_vol_and_xml_fixtures_read_with_scale_and_laterality(caplog):
  vol = volumes.read_volume(os.path.join(FIXTURES, "heyex_vol", "test_volume.vol"))
  # eyepy's log line about the .vol's layer count becomes a note, not a console log line
  assert [n for n in vol.notes if n.startswith("eyepy: ") and "layers" in n] == vol.notes != []
  assert all(n.endswith("(about the file's own layer annotations: the predictions do not use "
                        "them; where they can be read, eval scores against them and predict "
                        "draws them)") for n in vol.notes)
  assert not [r for r in caplog.records if r.name.startswith("eyepy")]
  vol.notes.clear()
  xml = volumes.read_volume(os.path.join(FIXTURES, "heyex_xml", "test_volume"))
  xml_file = volumes.read_volume(os.path.join(FIXTURES, "heyex_xml", "test_volume",
                                              "test_dummy.xml"))
  np.testing.assert_array_equal(xml_file.images, xml.images)
  for v in (vol, xml):
    assert v.images.shape == (10, 40, 50) and v.images.dtype == np.uint8
    np.testing.assert_allclose(v.scale_mm, (0.0314444, 0.003872, 0.011819), rtol=1e-5)
    assert v.laterality == "OD" and not v.notes
    # Positions from the file: 10 B-scans from 6.807 mm up to 6.524 mm on the fundus image.
    np.testing.assert_allclose(v.positions_mm[[0, -1]], [0.0, 6.807 - 6.524], atol=1e-6)
  assert vol.masks is None                                # the .vol has no layers
  assert xml.masks is not None and xml.annotated.sum() > 0
  # eval reads the annotated B-scans of the XML export with masks from its 8 mapped layers.
  (scans,) = inputs.load_path(os.path.join(FIXTURES, "heyex_xml", "test_volume"), True)
  assert len(scans) == xml.annotated.sum() and scans.masks.shape[1:] == (40, 50)
  assert set(np.unique(scans.masks)) <= set(range(8)) | {255}
  # ... at the export's own pixel size (eval's um errors), not the model config's default
  scale = inputs.resolve_scale(scans, None, 3.87)
  assert scale["source"] == "file"
  np.testing.assert_allclose([scale["row_um"], scale["col_um"]], [3.872, 11.819], rtol=1e-5)
  with pytest.raises(InputError, match="no layer annotations"):
    inputs.load_path(os.path.join(FIXTURES, "heyex_vol", "test_volume.vol"), True)


def test_map_colour_limits_are_percentiles_at_least_min_span_apart():
  wide = np.concatenate([np.linspace(100.0, 300.0, 101), [np.nan, 1e4]])   # one outlier
  lo, hi = volume_report.robust_limits(wide)
  np.testing.assert_allclose((lo, hi), np.percentile(wide[:-2].tolist() + [1e4], [2, 98]))
  thin = 30.0 + np.linspace(-3.0, 3.0, 50)                    # an even layer: 6 um of noise
  assert volume_report.robust_limits(thin) == pytest.approx((20.0, 40.0))
  assert volume_report.robust_limits(np.array([2.0, 3.0])) == (0.0, 20.0)   # not below 0
  assert volume_report.robust_limits(np.full(4, np.nan)) == (0.0, 20.0)


def test_npz_volume_scale_positions_and_bad_input(tmp_path):
  images = np.zeros((3, 32, 40), np.uint8)
  plain, scaled, duke_like, bad = (str(tmp_path / f) for f in
                                   ("plain.npz", "scaled.npz", "duke.npz", "bad.npz"))
  np.savez(plain, images=images)
  np.savez(scaled, images=images, scale_mm=np.array([0.2, 0.004, 0.01]))
  np.savez(duke_like, images=images, bscan_index=np.array([10, 15, 28]))
  np.savez(bad, images=images, scale_mm=np.array([0.2, -1.0, 0.01]))
  assert not volumes.is_volume(plain) and volumes.is_volume(plain, force=True)
  assert volumes.is_volume(scaled)
  v = volumes.read_volume(scaled, "OS")
  assert v.scale_mm == (0.2, 0.004, 0.01) and v.laterality == "OS"
  labelled = dataclasses.replace(v, masks=synthetic.generate(3, 32, 40, seed=0).masks,
                                 annotated=np.ones(3, bool))          # eval: annotated B-scans
  assert inputs.resolve_scale(labelled.to_scanset(annotated_only=True), None, 3.87) == {
      "row_um": 4.0, "col_um": 10.0, "source": "file"}
  np.testing.assert_allclose(v.positions_mm, [0.0, 0.2, 0.4])
  d = volumes.read_volume(duke_like)
  np.testing.assert_allclose(d.positions_mm, np.array([10, 15, 28]) * 0.123)
  assert d.laterality == "OD" and any("OD assumed (the file has none" in n for n in d.notes)
  assert (d.laterality_source, v.laterality_source) == (volumes.LATERALITY_ASSUMED,
                                                        "--laterality")
  with pytest.raises(InputError, match="scale_mm must be 3 positive"):
    volumes.read_volume(bad)
  with pytest.raises(InputError, match="--fovea"):
    volume_report.parse_fovea("1.0;2")
  # scanned: x 0 to 0.39 mm (40 columns of 0.01), y 0 to 0.4 mm, which the maps widen by
  # their 0.15 mm reach in y only; refused where the 3 mm grid reaches none of it
  assert enface.distance_to_scan_mm((0.2, 0.3), v.positions_mm, 40, 0.01) == 0.0
  assert enface.distance_to_scan_mm((-3.0, 4.4), v.positions_mm, 40, 0.01) == pytest.approx(5.0)
  assert enface.distance_to_scan_mm((-3.0, 4.55), v.positions_mm, 40, 0.01,
                                    0.15) == pytest.approx(5.0)
  for near in ((0.39 + 2.9, 0.2), (0.2, 0.4 + 0.15 + 2.9), None):
    volume_report.check_fovea(v, near)
  with pytest.raises(InputError, match=r"--fovea: \(3.49, 0.2\) mm is 3.10 mm from the area"):
    volume_report.check_fovea(v, (3.49, 0.2))
  with pytest.raises(InputError, match=r"is 3.05 mm from .* y -0.15 to 0.55 mm"):
    volume_report.check_fovea(v, (0.2, 3.6))
  # the Duke-like volume's B-scans lie at 1.23 to 3.44 mm, not from 0
  volume_report.check_fovea(d, (0.2, 0.0))
  with pytest.raises(InputError, match="is 3.08 mm from"):
    volume_report.check_fovea(d, (0.2, -2.0))
  assert volume_report.parse_fovea("1.5,-0.25") == (1.5, -0.25)


def test_duke_mat_volume_predicts_every_bscan(trained_workdir, tmp_path, monkeypatch):
  """A Duke-style .mat (images [H, W, S], 2 of 6 B-scans annotated) and a scaled .npz volume
  through predict (one folder input)."""
  from octseg_jax.modes import predict
  workdir, _ = trained_workdir
  vol, _ = synthetic.generate_volume(6, 128, 96, seed=5, scale_mm=(0.123, 0.00387, 0.0113))
  bounds = geom.boundaries_from_labels(vol.masks)                              # [S, 8, W]
  layers = np.full((8, 96, 6), np.nan)
  layers[..., [1, 4]] = np.moveaxis(bounds[[1, 4]], 0, -1)
  (tmp_path / "in").mkdir()
  mat = str(tmp_path / "in" / "Subject_03.mat")
  scipy.io.savemat(mat, {"images": np.moveaxis(vol.images, 0, -1), "manualLayers1": layers})
  # Beside it an .npz volume with its own axial scale (6 um rows): thickness follows the file.
  np.savez(tmp_path / "in" / "scaled.npz", images=vol.images[:2],
           scale_mm=np.array([0.25, 0.006, 0.02]))
  out = tmp_path / "out"
  kept = []                                   # the scans whose fluid waits for the figures
  real = predict.write_predictions
  def recording(trained, scans, *args, keep=(), **kwargs):
    kept.append((scans.names[0], dict(keep)))
    return real(trained, scans, *args, keep=keep, **kwargs)
  monkeypatch.setattr(predict, "write_predictions", recording)
  predict.run(workdir, str(tmp_path / "in"), str(out), laterality="OS", fovea="0.5,0.25")
  assert [(name, list(keep)) for name, keep in kept] == [      # --fovea: only its B-scans
      (bscan_name("Subject_03", 0), [2]), ("scaled_000", [1])]
  with np.load(out / "scaled.npz") as d:
    np.testing.assert_allclose(d["thickness_um"], np.diff(d["boundaries"], axis=1) * 6.0)
    np.testing.assert_allclose(d["scale_mm"], [0.25, 0.006, 0.02])
  with np.load(out / "Subject_03.npz") as d:
    assert d["pred"].shape == (6, 128, 96)
    assert d["thickness_maps_um"].shape[0] == 8 and str(d["laterality"]) == "OS"
    np.testing.assert_allclose(d["bscan_positions_mm"], np.arange(6) * 0.123)
    np.testing.assert_allclose(d["scale_mm"], volumes.DUKE_DME_SCALE_MM)
    assert str(d["fovea_source"]) == volume_report.FOVEA_GIVEN
  # the default figures: of each volume, the B-scan nearest its fovea (y 0.25 mm: B-scan 2 of
  # Subject_03, at 0.246 mm; B-scan 1 of scaled.npz, at 0.25 mm)
  assert sorted(f for f in os.listdir(out) if f.endswith(("_overlay.png", "_thickness.png"))) \
      == [f"{scan}_{kind}.png" for scan in (bscan_name("Subject_03", 2), "scaled_001")
          for kind in ("overlay", "thickness")]
  rows = (out / "Subject_03_etdrs.csv").read_text().splitlines()
  assert rows[0].split(",")[0] == "sector" and rows[0].split(",")[-5:] == [
      "coverage", "measured", "supported", "laterality", "laterality_source"]
  assert [r.split(",")[0] for r in rows[1:]] == list(enface.ETDRS_SECTORS)
  assert {tuple(r.split(",")[-2:]) for r in rows[1:]} == {("OS", "--laterality")}
  manifest = json.loads((out / "manifest.json").read_text())
  assert manifest["lateralities"] == {mat: {"laterality": "OS", "source": "--laterality"},
                                      str(tmp_path / "in" / "scaled.npz"):
                                      {"laterality": "OS", "source": "--laterality"}}
  assert (out / "Subject_03.eye").exists() and (out / "Subject_03_thickness_maps.png").exists()


@needs_fixtures
def test_a_heyex_xml_folder_is_one_input_even_inside_a_folder(tmp_path):
  xml = os.path.join(FIXTURES, "heyex_xml", "test_volume")
  assert inputs.list_inputs(xml) == ([xml], [])
  import shutil
  shutil.copytree(xml, tmp_path / "eye1")
  shutil.copy(os.path.join(FIXTURES, "heyex_vol", "test_volume.vol"), tmp_path / "eye2.vol")
  (tmp_path / "notes.txt").write_text("not a scan")
  files, skipped = inputs.list_inputs(str(tmp_path))
  assert files == [str(tmp_path / "eye1"), str(tmp_path / "eye2.vol")]
  assert skipped == [str(tmp_path / "notes.txt")]
  sets = [inputs.load_file(f, volume_options={}) for f in files]
  assert [len(s) for s in sets] == [10, 10] and all(s.volume is not None for s in sets)


@needs_fixtures
def test_a_damaged_heyex_xml_folder_is_refused_in_one_line_as_its_xml_file(trained_workdir,
                                                                           tmp_path, capsys):
  """--input=XML_FOLDER names one volume, as --input=its .xml does: read before anything is
  written, and a missing B-scan image is one line and status 2, with no output folder (it ran
  as a folder of inputs: three lines, errors.csv and manifest.json)."""
  import shutil
  import main
  damaged = tmp_path / "export"
  shutil.copytree(os.path.join(FIXTURES, "heyex_xml", "test_volume"), damaged)
  os.remove(damaged / "B5.tif")
  assert inputs.is_one_input(str(damaged)) and not inputs.is_one_input(str(tmp_path))
  for given in (damaged, damaged / "test_dummy.xml"):
    capsys.readouterr()
    status = main.run_command(["main.py", "--mode=predict", f"--workdir={trained_workdir[0]}",
                               f"--input={given}", f"--output={tmp_path / 'out'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "B5." in err[0], err      # long paths are cut
    assert not (tmp_path / "out").exists()


CYST = (0.0, 1.0, 0.4, 0.4, 5.0)      # 1 mm superior of the fovea (sector S1), in the ONL


def test_phantom_cysts_give_etdrs_fluid_volumes_and_areas_within_5_percent():
  vol, truth = synthetic.generate_volume(121, 496, 512, scale_mm=(0.05, 0.00387, None),
                                         render_images=False, cysts=[CYST])
  fluid = truth["fluid"]
  assert (vol.masks[fluid > 0] == 5).all()                          # inside the ONL only
  row_mm, col_mm = vol.scale_mm[1], vol.scale_mm[2]
  # Areas per B-scan: pixels x pixel area against the ellipse cut at that B-scan.
  dy = (vol.positions_mm - truth["fovea_mm"][1] - CYST[1]) / CYST[3]
  central = np.abs(dy) < 0.7
  area_true = np.pi * CYST[2] * np.sqrt(1 - dy[central] ** 2) * CYST[4] * row_mm \
      * np.sqrt(1 - dy[central] ** 2)
  area = fluid[central].sum(axis=(1, 2)) * row_mm * col_mm
  np.testing.assert_allclose(area, area_true, rtol=0.05)
  bounds = np.stack([geom.boundaries_from_labels(m) for m in vol.masks])
  result = volume_report.analyse(vol, bounds, truth["fovea_mm"],
                                 volume_report.fluid_height_um(fluid, row_mm * 1e3))
  want = synthetic.cyst_volume_mm3(CYST, row_mm)
  sectors = dict(zip(enface.ETDRS_SECTORS, result["etdrs_fluid_mm3"]))
  assert sectors["S1"] == pytest.approx(want, rel=0.05)
  assert result["fluid_mm3_total"] == pytest.approx(want, rel=0.05)
  assert all(v == 0 for k, v in sectors.items() if k != "S1")
  assert np.nanmax(result["fluid_map_um"]) == pytest.approx(2 * CYST[4] * row_mm * 1e3, rel=0.1)


def test_a_one_bscan_mat_volume_predicts_without_an_eye_file(trained_workdir, tmp_path):
  import json
  from octseg_jax.modes import predict
  b = synthetic.generate(1, 96, 64, seed=22)
  scipy.io.savemat(str(tmp_path / "Subject_01.mat"), {"images": np.moveaxis(b.images, 0, -1)})
  predict.run(trained_workdir[0], str(tmp_path / "Subject_01.mat"), str(tmp_path / "out"))
  assert (tmp_path / "out" / "Subject_01_etdrs.csv").exists()
  assert (tmp_path / "out" / "Subject_01_b00_overlay.png").exists()   # default: its fovea's
  assert not (tmp_path / "out" / "Subject_01.eye").exists()
  manifest = json.load(open(tmp_path / "out" / "manifest.json"))
  assert "Subject_01.eye" not in manifest["outputs"]


def _pit_volume(positions, pit, nan_columns=slice(0, 0), width=151, col_mm=0.02):
  """enface.analyse_volume of B-scans at `positions` (mm) whose inner retina is 100 um,
  thinning to 20 um in a Gaussian pit (sd 0.3 mm) at `pit` (x, y mm); the B-scan nearest the
  pit has no values in `nan_columns`."""
  positions = np.asarray(positions, np.float64)
  x = np.arange(width) * col_mm
  r2 = (x[None, :] - pit[0]) ** 2 + (positions[:, None] - pit[1]) ** 2
  inner = 100.0 - 80.0 * np.exp(-r2 / (2 * 0.3 ** 2))
  inner[np.argmin(np.abs(positions - pit[1])), nan_columns] = np.nan
  return enface.analyse_volume(inner[:, None], inner, positions, col_mm, "OD")


@pytest.mark.parametrize("positions, pit, nan_columns, within_mm", [
    (np.arange(31) * 0.1, (1.6, 1.4), slice(0, 0), 0.05),       # a dense volume
    (np.arange(7) * 0.5, (1.5, 1.25), slice(0, 0), 0.3),        # sparse: the pit in a gap
    (np.arange(31) * 0.1, (1.5, 1.5), slice(76, 80), 0.1),      # no values beside the pit
    (np.arange(3) * 0.1, (1.5, 0.9), slice(0, 0), None),        # a strip 0.7 mm beside it
    (np.arange(16) * 0.1, (1.5, 1.5), slice(0, 0), None),       # the pit on the last B-scan
])
def test_the_fovea_is_a_pit_inside_the_scanned_area(positions, pit, nan_columns, within_mm):
  result = _pit_volume(positions, pit, nan_columns)
  assert result["fovea_found"] == (within_mm is not None)
  if within_mm is not None:
    assert np.hypot(*(result["fovea_mm"] - np.array(pit))) <= within_mm


def test_a_pit_beyond_the_search_radius_is_not_found():
  x_mm, y_mm = enface.grid_axes((0.0, 0.0), 251, 0.02)         # +-2.5 mm
  image = 100.0 - 80.0 * np.exp(-((x_mm[None, :] - 1.4) ** 2 + y_mm[:, None] ** 2) / 0.18)
  assert enface.find_fovea(image, x_mm, y_mm, (0.0, 0.0), search_mm=1.0) is None
  np.testing.assert_allclose(enface.find_fovea(image, x_mm, y_mm, (0.0, 0.0), search_mm=1.5),
                             (1.4, 0.0), atol=1e-9)


def test_the_maps_draw_the_etdrs_grid_on_the_total_and_fluid_panels(monkeypatch, capsys,
                                                                     tmp_path):
  """The total map gets the grid in black with each sector's mean; the fluid map the grid
  alone, white with a dark edge: 3 circles and 4 diagonals each, on no other panel. The
  console line names an assumed laterality once (its note), not also as 'OD ASSUMED'."""
  import dataclasses
  vol, _ = synthetic.generate_volume(9, 256, 64, seed=2, scale_mm=(0.3, 0.0039, 0.05),
                                     render_images=False)
  note = "laterality OD assumed (the file has none; set --laterality)"
  vol = dataclasses.replace(vol, laterality_source=volumes.LATERALITY_ASSUMED, notes=[note])
  bounds = geom.boundaries_from_labels(vol.masks)
  figures = []
  monkeypatch.setattr(volume_report, "save_figure", lambda path, fig: figures.append(fig))
  monkeypatch.setattr(volume_report, "write_eye", lambda *args: None)
  fluid_um = np.zeros(bounds[:, 0].shape)
  fluid_um[:, 20:40] = 50.0                               # a band of fluid 50 um high
  keys = volume_report.write(str(tmp_path), "v", vol, bounds, fluid_um=fluid_um)
  panels = {ax.get_title().split(" ")[0]: ax for ax in figures[0].axes if ax.get_title()}
  grids = {name: [line.get_color() for line in ax.get_lines()] for name, ax in panels.items()}
  assert grids.pop("total") == ["k"] * 7 and grids.pop("fluid") == ["white"] * 7
  written = [t.get_text() for t in panels["fluid"].texts if "\n" in t.get_text()]
  expected = [f"{name}\n{v:.3f}" if np.isfinite(v) else f"{name}\n-" for name, v in
              zip(enface.ETDRS_SECTORS, keys["etdrs_fluid_mm3"])]       # the CSV's volumes
  assert sorted(written) == sorted(expected) and any(v > 0 for v in keys["etdrs_fluid_mm3"])
  assert "fluid map: fluid volume (mm3)" in figures[0]._suptitle.get_text()
  assert set(map(len, grids.values())) == {0} and len(grids) == 7       # the 7 layer maps
  (line,) = [l for l in capsys.readouterr().out.splitlines() if l.startswith("v: ")]
  assert line.endswith(note) and line.lower().count("assumed") == 1
  # where the fovea came from, for the prediction file and the figures' B-scan title
  given = volume_report.write(str(tmp_path), "v", vol, bounds, tuple(keys["fovea_mm"]))
  assert [str(k["fovea_source"]) for k in (keys, given)] == [volume_report.FOVEA_FOUND,
                                                             volume_report.FOVEA_GIVEN]


def test_the_total_map_stars_the_sectors_the_model_did_not_order_itself(monkeypatch, tmp_path):
  """With the model's own layer order in the scan's left half only, the sectors under half
  supported (etdrs_supported, as NAME_etdrs.csv) get a '*' after their thickness and the title
  says what it means; all columns supported: no star, no footnote."""
  vol, _ = synthetic.generate_volume(9, 256, 64, seed=2, scale_mm=(0.3, 0.0039, 0.05),
                                     render_images=False)
  bounds = geom.boundaries_from_labels(vol.masks)
  figures = []
  monkeypatch.setattr(volume_report, "save_figure", lambda path, fig: figures.append(fig))
  monkeypatch.setattr(volume_report, "write_eye", lambda *args: None)
  half = np.zeros(bounds[:, 0].shape, bool)
  half[:, :32] = True
  keys = [volume_report.write(str(tmp_path), "v", vol, bounds, supported=s)
          for s in (half, np.ones_like(half))]
  total = [k["etdrs_um"][:, -1] for k in keys]
  low = [n for n, s, t in zip(enface.ETDRS_SECTORS, keys[0]["etdrs_supported"], total[0])
         if s < 0.5 and np.isfinite(t)]
  assert 0 < len(low) < np.isfinite(total[0]).sum()         # some sectors, not all
  for fig, k, t, starred in zip(figures, keys, total, (low, [])):
    (ax,) = [ax for ax in fig.axes if ax.get_title().startswith("total")]
    written = sorted(x.get_text() for x in ax.texts if "\n" in x.get_text())
    assert written == sorted(f"{n}\n{v:.0f}" + ("*" if n in starred else "") if np.isfinite(v)
                             else f"{n}\n-" for n, v in zip(enface.ETDRS_SECTORS, t))
    assert ("'*' = the model's own layer order in under 50%" in fig._suptitle.get_text()) \
        == bool(starred)
