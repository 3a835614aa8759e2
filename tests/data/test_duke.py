import os
import re

import numpy as np
import pytest
import scipy.io

from octseg_jax.data import duke, pipeline
from octseg_jax.errors import InputError
from conftest import DUKE_DIR, needs_duke, tiny_config


def _volume(tmp_path, name="Subject_03.mat", grader=1):
  """A small original-format volume: 40 rows, 12 columns, 3 B-scans, scan 1 annotated."""
  rng = np.random.default_rng(0)
  images = rng.integers(0, 255, size=(40, 12, 3)).astype(np.uint8)
  layers = np.full((8, 12, 3), np.nan)
  b = np.array([10.2, 12.7, 15.0, 17.9, 20.0, 25.5, 27.0, 30.4])
  layers[:, 2:10, 1] = b[:, None]            # columns 2..9 annotated
  layers[3, 5, 1] = 0                        # a missing inner boundary (zero-thickness layer)
  fluid = np.zeros((40, 12, 3), np.uint8)
  fluid[13:16, 4, 1] = 1                     # spans the 2|3 boundary at row 15 -> unknown
  fluid[21:23, 6, 1] = 1                     # inside layer 5 -> stays 5
  path = os.path.join(tmp_path, name)
  scipy.io.savemat(path, {"images": images, f"manualLayers{grader}": layers,
                          f"manualFluid{grader}": fluid})
  return path, images, b


def test_mat_round_trip(tmp_path):
  path, images, b = _volume(tmp_path)
  s = duke.load_mat(path)
  assert s.images.shape == (1, 40, 8) and s.names == ["Subject_03_b01"]
  np.testing.assert_array_equal(s.images[0], images[:, 2:10, 1])
  assert (s.subjects == 3).all()
  col = s.masks[0, :, 0]                     # column 2 of the original: plain layers
  expected = np.zeros(40, np.uint8)
  fb = np.floor(b).astype(int)
  for k in range(7):
    expected[fb[k]:fb[k + 1]] = k + 1
  np.testing.assert_array_equal(col, expected)
  col5 = s.masks[0, :, 3]                    # boundary 4 missing: layer 3 has zero thickness
  assert (col5 == 3).sum() == 0 and (col5 == 4).sum() == fb[4] - fb[2]
  col4 = s.masks[0, :, 2]                    # fluid across a boundary -> 255
  np.testing.assert_array_equal(col4[13:16], 255)
  col6 = s.masks[0, :, 4]                    # fluid inside layer 5 -> 5
  np.testing.assert_array_equal(col6[21:23], 5)


def test_a_volume_read_from_a_mat_or_npz_keeps_the_graders_fluid(tmp_path):
  """Read as a volume (predict's reading of a .mat, or .npz with --volume), the grader's fluid
  reaches the scans predict draws: every B-scan's, and the annotated ones' with annotated_only."""
  from octseg_jax.data import volumes
  from octseg_jax.outputs.atomic import write_npz
  path, _, _ = _volume(tmp_path)
  want = np.moveaxis(scipy.io.loadmat(path)["manualFluid1"], -1, 0)          # [3, 40, 12]
  vol = volumes.read_duke_mat_volume(path)
  np.testing.assert_array_equal(vol.fluid, want)
  np.testing.assert_array_equal(vol.to_scanset().fluid, want)
  np.testing.assert_array_equal(vol.to_scanset(annotated_only=True).fluid, want[1:2])
  npz = str(tmp_path / "eye.npz")
  write_npz(npz, images=vol.images, masks=vol.masks, fluid=want)
  np.testing.assert_array_equal(volumes.read_npz_volume(npz).to_scanset().fluid, want)
  write_npz(npz, images=vol.images, masks=vol.masks)
  assert volumes.read_npz_volume(npz).to_scanset().fluid is None        # no annotation: None


def test_mat_without_a_fluid_annotation_has_none_rather_than_no_fluid(tmp_path):
  """A .mat with the grader's layers but no manualFluid: fluid is unknown (None), so eval
  neither scores a fluid head against it nor counts its columns as dry; the layers read as
  with an empty fluid annotation."""
  path, _, _ = _volume(tmp_path)
  data = scipy.io.loadmat(path)
  bare = os.path.join(tmp_path, "Subject_04.mat")
  scipy.io.savemat(bare, {"images": data["images"], "manualLayers1": data["manualLayers1"]})
  s = duke.load_mat(bare)
  assert s.fluid is None and pipeline.fluid_of([s]) == [None]
  with_empty = os.path.join(tmp_path, "Subject_05.mat")
  scipy.io.savemat(with_empty, {"images": data["images"], "manualLayers1": data["manualLayers1"],
                                "manualFluid1": np.zeros_like(data["manualFluid1"])})
  np.testing.assert_array_equal(s.masks, duke.load_mat(with_empty).masks)
  assert duke.load_mat(with_empty).fluid.shape == s.masks.shape


def test_mat_ignore_mode_grader2_and_errors(tmp_path):
  path, _, _ = _volume(tmp_path, "Subject_07.mat", grader=2)
  s = duke.load_mat(path, grader=2, unannotated="ignore")
  assert s.images.shape == (1, 40, 12)
  assert (s.masks[0][:, [0, 1, 10, 11]] == 255).all()
  with pytest.raises(InputError, match="manualLayers1"):
    duke.load_mat(path, grader=1)
  bad = os.path.join(tmp_path, "broken.mat")
  with open(bad, "wb") as f:
    f.write(b"MATLAB 5.0 MAT-file, truncated")
  with pytest.raises(InputError, match="broken.mat"):
    duke.load_mat(bad)


def test_npz_format_round_trip(tmp_path):
  images = np.random.default_rng(1).integers(0, 255, (2, 32, 24)).astype(np.uint8)
  masks = np.zeros((2, 32, 24), np.uint8)
  masks[:, 10:20] = 3
  path = os.path.join(tmp_path, "subject_05.npz")
  np.savez(path, images=images, masks=masks, subject=np.array([5, 5]),
           bscan_index=np.array([10, 15]))
  s = duke.load_npz(path, require_masks=True)
  np.testing.assert_array_equal(s.images, images)
  np.testing.assert_array_equal(s.masks, masks)
  assert s.names == ["subject_05_b10", "subject_05_b15"] and (s.subjects == 5).all()


@needs_duke
def test_shared_duke_data_reads_and_splits_subject_wise():
  sets = duke.load_dir(DUKE_DIR, (1, 2, 3, 4))
  assert [int(s.subjects[0]) for s in sets] == [1, 2, 3, 4]
  assert all(len(s) == 11 and s.images.shape[1] == 496 for s in sets)
  _, _, subjects, _ = pipeline.flatten(sets)
  from configs import default
  cfg = default.get_config().data
  for fold in range(4):
    with cfg.unlocked():
      cfg.fold = fold
    train, val = pipeline.split_indices(subjects, cfg, seed=0)
    assert not set(subjects[train]) & set(subjects[val])
    assert set(subjects[val]) == {fold + 1}


@needs_duke
def test_reference_model_inputs_are_the_data_s_scan_widths_padded():
  widths = [s.images.shape[2] for s in duke.load_dir(DUKE_DIR, range(1, 9))]
  commonest = max(set(widths), key=widths.count)
  assert (commonest, max(widths)) == (542, 548)
  pad = lambda w: -(-w // 16) * 16
  assert duke.MODEL_INPUT == (224, pad(commonest))
  assert duke.TRAINING_INPUT == (224, pad(max(widths)))


@needs_duke
def test_the_band_of_a_duke_scan_survives_jpeg_gain_and_16_bit_export():
  """The retina band of Duke B-scans whose padding a JPEG (quality 50, 75), a gain of 0.9 or a
  16-bit round trip moves below 255 is where it is on the original (within a row)."""
  import io
  from PIL import Image
  from octseg_jax.data import preprocessing
  for subject, scan in ((1, 0), (3, 7), (4, 9), (8, 8)):
    x = duke.load_dir(DUKE_DIR, (subject,))[0].images[scan]
    variants = [x * 0.9, np.floor(x.astype(np.float32) * 256 / 257)]
    for quality in (50, 75):
      buf = io.BytesIO()
      Image.fromarray(x).save(buf, "JPEG", quality=quality)
      variants.append(np.asarray(Image.open(buf)))
    top = preprocessing.find_retina_band(x, 224)
    assert [abs(preprocessing.find_retina_band(v, 224) - top) <= 1 for v in variants] == [True] * 4


def test_a_folder_s_files_are_chosen_by_the_last_number_of_their_names(tmp_path):
  """subject_files: sorted .npz and .mat files whose name's last number (9 digits at most) is a
  listed subject; all of them for none listed; one line naming the folder otherwise."""
  for name in ("subject_03.npz", "Subject_10.mat", "scan_v2_04.npz", "notes.txt", "x.npz"):
    (tmp_path / name).write_text("")
  got = lambda subjects: [os.path.basename(f) for f in duke.subject_files(str(tmp_path), subjects)]
  assert got((3, 4)) == ["scan_v2_04.npz", "subject_03.npz"]
  assert got(()) == ["Subject_10.mat", "scan_v2_04.npz", "subject_03.npz", "x.npz"]
  assert [duke.subject_number(n) for n in ("Subject_10.mat", "x.npz", "p_1234567890123")] == [
      10, None, 567890123]
  with pytest.raises(InputError, match=re.escape(f"{tmp_path}: no files for subjects [7]")):
    duke.subject_files(str(tmp_path), (7,))
  with pytest.raises(InputError, match=re.escape("none: no such folder (set --config.data.")):
    duke.subject_files(str(tmp_path / "none"), (7,))
  with pytest.raises(InputError, match=re.escape("no such folder (set the plan's duke_dir)")):
    duke.subject_files(str(tmp_path / "none"), (7,), option="the plan's duke_dir")
  with pytest.raises(InputError, match=re.escape(
      "subject_03.npz: is a file, expected a folder (set --config.data.duke_dir)")):
    duke.subject_files(str(tmp_path / "subject_03.npz"), (3,))


def test_config_grader_reaches_the_mat_reader(tmp_path):
  from octseg_jax.data import pipeline
  _volume(tmp_path, "Subject_07.mat", grader=2)            # only grader 2's annotations
  config = tiny_config(**{"data.source": "duke", "data.duke_dir": str(tmp_path),
                          "data.grader": 2})
  sets = pipeline.load_scans(config.data)
  assert len(sets) == 1 and sets[0].masks is not None and sets[0].names[0].startswith("Subject_07")
  with pytest.raises(InputError, match="manualLayers1"):
    pipeline.load_scans(tiny_config(**{"data.source": "duke",
                                       "data.duke_dir": str(tmp_path)}).data)
  np.savez(tmp_path / "subject_01.npz", images=np.zeros((1, 8, 8), np.uint8),
           masks=np.zeros((1, 8, 8), np.uint8))
  with pytest.raises(InputError, match="grader 1's annotations only"):
    pipeline.load_scans(config.data)
