"""Every reader answers bad input with an InputError naming the file and the problem."""

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.io

from octseg_jax.data import inputs
from octseg_jax.data.scans import ScanSet
from octseg_jax.errors import InputError
from octseg_jax.outputs.atomic import atomic_path, write_npz, write_png
from conftest import ROOT


def _npz(tmp_path, name="scan.npz", **arrays):
  path = str(tmp_path / name)
  np.savez(path, **arrays)
  return path


IMG = np.random.default_rng(0).integers(0, 255, (2, 32, 24)).astype(np.uint8)


@pytest.mark.parametrize("make, message", [
    (lambda t: str(t / "missing.npz"), "no such file or folder"),
    (lambda t: str(t), "folder holds no scans"),
    (lambda t: _npz(t, images=np.zeros((2, 3, 4, 5))), "expected \\[H, W\\] or \\[N, H, W\\]"),
    (lambda t: _npz(t, pixels=IMG), "no 'images' array"),
    (lambda t: _npz(t, images=IMG, masks=np.full(IMG.shape, 9, np.uint8)),
     "mask values \\[9\\] are outside"),
    (lambda t: _npz(t, images=IMG, masks=np.zeros((2, 32, 20), np.uint8)), "masks have shape"),
    (lambda t: _npz(t, images=np.where(IMG > 100, np.nan, IMG / 255.0)), "NaN or infinite"),
    (lambda t: _npz(t, images=np.full((1, 16, 16), np.inf)), "NaN or infinite"),
    (lambda t: _npz(t, images=IMG.astype(float) * 3), "expected 0..1 or 0..255"),
    (lambda t: _npz(t, images=np.zeros((1, 4, 4))), "too small"),
    (lambda t: _npz(t, images=np.array(["a", "b"])), "expected real numbers"),
])
def test_bad_npz_inputs(tmp_path, make, message):
  path = make(tmp_path)
  with pytest.raises(InputError, match=message) as e:
    inputs.load_path(path, require_masks=False)
  assert "\n" not in str(e.value)
  assert str(e.value).startswith(str(path).rstrip("/")) or "missing" in str(e.value)


def test_truncated_and_garbage_files(tmp_path):
  good = _npz(tmp_path, images=IMG, masks=np.zeros_like(IMG))
  data = open(good, "rb").read()
  for name, content in (("cut.npz", data[: len(data) // 2]), ("junk.mat", b"\x00" * 300),
                        ("junk.png", b"\x89PNG\r\n\x1a\n" + b"\x01" * 50),
                        ("empty.npz", b"")):
    path = tmp_path / name
    path.write_bytes(content)
    expected = "not an .npz archive" if name == "empty.npz" else "not a readable"
    with pytest.raises(InputError, match=f"{name}: {expected}"):
      inputs.load_file(str(path))


def test_mat_without_expected_keys(tmp_path):
  path = str(tmp_path / "Subject_01.mat")
  scipy.io.savemat(path, {"volume": np.zeros((8, 8, 2))})
  with pytest.raises(InputError, match=r"Subject_01.mat: missing \['images', 'manualLayers1'\]"):
    inputs.load_path(path, require_masks=True)
  with pytest.raises(InputError, match=r"Subject_01.mat: missing \['images'\] \(keys: \['volume'\]\)"):
    inputs.load_path(path)                         # prediction needs the images only


def test_masks_required_for_eval(tmp_path):
  path = _npz(tmp_path, images=IMG)
  with pytest.raises(InputError, match="no 'masks' array, and this mode needs masks"):
    inputs.load_path(path, require_masks=True)
  write_png(str(tmp_path / "one.png"), IMG[0])
  with pytest.raises(InputError) as e:
    inputs.load_path(str(tmp_path / "one.png"), require_masks=True)
  assert str(e.value) == (f"{tmp_path}/one.png: has no mask (masks are read from "
                          "DIR/masks/NAME for an image DIR/images/NAME; this image is not in an "
                          "images/ folder)")
  write_png(str(tmp_path / "images" / "two.png"), IMG[0])
  with pytest.raises(InputError) as e:
    inputs.load_path(str(tmp_path / "images" / "two.png"), require_masks=True)
  assert str(e.value) == (f"{tmp_path}/images/two.png: has no mask ({tmp_path}/masks/two.png "
                          "does not exist)")


def test_obvious_fixes_colour_to_grey_floats_and_constant(tmp_path):
  rgb = np.stack([IMG[0]] * 3, axis=-1)
  write_png(str(tmp_path / "colour.png"), rgb)
  s = inputs.load_path(str(tmp_path / "colour.png"))[0]
  np.testing.assert_array_equal(s.images[0], IMG[0])            # grey channels: exact
  path = _npz(tmp_path, "float.npz", images=IMG / 255.0, masks=np.zeros(IMG.shape, np.float32))
  s = inputs.load_path(path, require_masks=True)[0]
  np.testing.assert_array_equal(s.images, IMG)
  assert s.masks.dtype == np.uint8
  path = _npz(tmp_path, "flat.npz", images=np.full((1, 32, 32), 80, np.uint8))
  from octseg_jax.data import preprocessing as pp
  x, _, _ = pp.prepare(inputs.load_path(path)[0].images[0], None, pp.Recipe(band_height=16))
  assert x.shape == (16, 32) and (x == 0).all()


def test_folder_of_pairs_and_unsupported_file(tmp_path):
  os.makedirs(tmp_path / "d" / "images")
  write_png(str(tmp_path / "d" / "images" / "a.png"), IMG[0])
  write_png(str(tmp_path / "d" / "masks" / "a.png"), np.zeros((32, 24), np.uint8))
  sets = inputs.load_path(str(tmp_path / "d"), require_masks=True)
  assert len(sets) == 1 and sets[0].masks.shape == (1, 32, 24)
  (tmp_path / "notes.txt").write_text("hello")
  with pytest.raises(InputError, match="notes.txt: unsupported file type"):
    inputs.load_path(str(tmp_path / "notes.txt"))


def test_fuzz_corrupted_files_end_in_result_or_clear_error(tmp_path):
  rng = np.random.default_rng(0)
  originals = {}
  originals["a.npz"] = open(_npz(tmp_path, "a.npz", images=IMG, masks=(IMG % 8)), "rb").read()
  scipy.io.savemat(str(tmp_path / "Subject_02.mat"), {
      "images": IMG.transpose(1, 2, 0),
      "manualLayers1": np.tile(np.arange(3, 27, 3, dtype=float)[:, None, None], (1, 24, 2))})
  originals["Subject_02.mat"] = open(tmp_path / "Subject_02.mat", "rb").read()
  write_png(str(tmp_path / "c.png"), IMG[0])
  originals["c.png"] = open(tmp_path / "c.png", "rb").read()
  outcomes = {"ok": 0, "error": 0}
  for i in range(300):
    name = list(originals)[i % 3]
    data = bytearray(originals[name])
    if rng.uniform() < 0.5:
      data = data[: rng.integers(0, len(data))]                  # truncated
    else:
      for pos in rng.integers(0, len(data), size=rng.integers(1, 20)):
        data[pos] = rng.integers(0, 256)                         # flipped bytes
    path = tmp_path / "fuzz" / f"{i:03d}_{name}"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(bytes(data))
    try:
      result = inputs.load_file(str(path))
      assert isinstance(result, ScanSet) and result.images.dtype == np.uint8
      outcomes["ok"] += 1
    except InputError as e:
      assert str(e).startswith(str(path)) and "\n" not in str(e)
      outcomes["error"] += 1
  # Both outcomes occur (the damage is not always fatal, nor always harmless).
  assert outcomes["error"] > 100 and outcomes["ok"] > 0, outcomes


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
  target = tmp_path / "out.npz"
  with pytest.raises(RuntimeError):
    with atomic_path(str(target)) as tmp:
      with open(tmp, "wb") as f:
        f.write(b"half")
      raise RuntimeError("interrupted")
  assert os.listdir(tmp_path) == []
  write_npz(str(target), a=np.arange(3))
  assert os.listdir(tmp_path) == ["out.npz"]


def _main(*args, cwd=ROOT, timeout=240):
  return subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), *args], cwd=cwd,
                        capture_output=True, text=True, timeout=timeout)


def test_cli_one_line_errors_and_exit_codes(tmp_path, capsys, monkeypatch):
  """In process (the entry point's own exit codes: test_fuzz_cli), then --debug's traceback
  from the real entry point."""
  import main
  monkeypatch.chdir(ROOT)
  assert main.run_command(["main.py", "--mode=predict", f"--workdir={tmp_path}",
                           "--input=nothing.npz", "--output=o"]) == 2
  assert capsys.readouterr().err.strip() == (f"error: {tmp_path}: no config.json (not a "
                                             "training workdir?)")
  assert main.run_command(["main.py", "--config=configs/tiny.py", "--config.train.num_epoch=3",
                           f"--workdir={tmp_path}"]) != 0
  err = capsys.readouterr().err
  assert "num_epoch" in err and "Traceback" not in err
  r = _main("--mode=predict", f"--workdir={tmp_path}", "--input=x", "--output=o", "--debug")
  assert r.returncode != 0 and "Traceback" in r.stderr


def test_cli_bad_input_file_against_a_workdir(trained_workdir, tmp_path):
  workdir, _ = trained_workdir
  bad = tmp_path / "broken.npz"
  bad.write_bytes(b"PK\x03\x04 not really")
  r = _main("--mode=predict", f"--workdir={workdir}", f"--input={bad}", f"--output={tmp_path}/o")
  assert r.returncode == 2
  lines = r.stderr.strip().splitlines()
  assert lines[-1].startswith(f"error: {bad}: not a readable .npz file")
  assert not any("Traceback" in l for l in lines)
  assert not os.path.exists(tmp_path / "o" / "broken.npz")


@pytest.mark.parametrize("name, message", [
    ("notes.npz", "not an .npz archive (no zip header; save with np.savez(path, images=...))"),
    ("notes.png", "not a readable image (no image format Pillow knows: another kind of file "
                  "under an image suffix, or damaged from its first bytes)")])
def test_a_text_file_under_a_scan_suffix_is_named_in_plain_words(tmp_path, name, message):
  path = tmp_path / name
  path.write_text("a text file, not a scan")
  with pytest.raises(InputError) as e:
    inputs.load_file(str(path))
  assert str(e.value) == f"{path}: {message}"


@pytest.mark.parametrize("mode, flag", [("eval", "--fovea=1,1"), ("explain", "--volume"),
                                        ("eval", "--laterality=OS"), ("explain", "--figures=all")])
def test_eval_and_explain_refuse_predicts_flags(trained_workdir, tmp_path, capsys, mode, flag):
  import main
  name = flag[2:].split("=")[0]
  assert main.run_command(["main.py", f"--mode={mode}", f"--workdir={trained_workdir[0]}",
                           "--input=x.npz", f"--output={tmp_path / 'o'}", flag]) == 2
  assert capsys.readouterr().err.strip() == f"error: --{name}: only used by --mode=predict"
  assert not os.path.exists(tmp_path / "o")                       # refused before any output


def test_a_missing_input_is_refused_before_an_output_folder_is_announced(trained_workdir,
                                                                         tmp_path, capsys,
                                                                         monkeypatch):
  import main
  monkeypatch.chdir(tmp_path)
  assert main.run_command(["main.py", "--mode=predict", f"--workdir={trained_workdir[0]}"]) == 2
  out = capsys.readouterr()
  assert out.err.strip() == "error: --input: required for --mode=predict"
  assert "writing to" not in out.out and not os.path.exists(tmp_path / "runs")


@pytest.mark.parametrize("mode", ["predict", "eval", "explain"])
def test_outputs_are_refused_beside_their_inputs(trained_workdir, tmp_path, capsys, mode):
  """--output naming the input folder (or a file input's folder) is refused in every mode,
  before anything is written there: a later run of the folder would read the outputs."""
  import main
  from octseg_jax.data import synthetic
  s = synthetic.generate(1, 96, 64, seed=1)
  for i in range(2):
    write_npz(str(tmp_path / f"s{i}.npz"), images=s.images, masks=s.masks)
  before = sorted(os.listdir(tmp_path))
  for given in (tmp_path, tmp_path / "s0.npz"):
    assert main.run_command(["main.py", f"--mode={mode}", f"--workdir={trained_workdir[0]}",
                             f"--input={given}", f"--output={tmp_path}"]) == 2
    hint = " and 1 more" if given == tmp_path else ""
    assert capsys.readouterr().err.strip() == (
        f"error: --output={tmp_path}: holds the input s0.npz{hint}; outputs beside the inputs "
        "would be read as scans by the next run of that folder; choose another output folder")
    assert sorted(os.listdir(tmp_path)) == before


def test_the_input_folder_is_found_through_links_and_read_folders(tmp_path):
  """A folder of links to scans elsewhere is the input folder (not the links' targets); a link
  to the input folder is that folder; a folder the run reads whole (eval's data folder, an
  export folder given as --input) is refused though it lists no input file."""
  from octseg_jax.outputs.folder_run import RunOutputs
  data, links = tmp_path / "data", tmp_path / "links"
  data.mkdir()
  links.mkdir()
  write_npz(str(data / "a.npz"), images=IMG)
  (links / "a.npz").symlink_to(data / "a.npz")
  (tmp_path / "alias").symlink_to(links)
  inputs = [str(links / "a.npz")]
  for folder in (links, tmp_path / "alias"):
    with pytest.raises(InputError, match="holds the input a.npz; outputs beside"):
      RunOutputs(str(folder), inputs, "predict", [str(links)]).refuse_input_folder()
  RunOutputs(str(data), inputs, "predict", [str(links)]).refuse_input_folder()    # not named
  RunOutputs(str(tmp_path / "new"), inputs, "predict").refuse_input_folder()      # not made yet
  with pytest.raises(InputError, match="is the folder the scans are read from"):
    RunOutputs(str(data), [], "eval", [None, str(data)]).refuse_input_folder()


@pytest.mark.parametrize("mode", ["predict", "eval", "explain"])
def test_a_single_unreadable_file_leaves_no_output_folder(trained_workdir, tmp_path, capsys,
                                                          mode):
  """The file is read before the output folder is made, in every mode."""
  import main
  bad = tmp_path / "broken.npz"
  bad.write_bytes(b"PK\x03\x04 not really")
  assert main.run_command(["main.py", f"--mode={mode}", f"--workdir={trained_workdir[0]}",
                           f"--input={bad}", f"--output={tmp_path / 'o'}"]) == 2
  assert capsys.readouterr().err.strip().startswith(f"error: {bad}: not a readable .npz file")
  assert not os.path.exists(tmp_path / "o")


def test_a_misspelt_cam_layer_fails_before_a_folders_files_are_read(trained_workdir, tmp_path,
                                                                     capsys):
  import main
  (tmp_path / "in").mkdir()
  (tmp_path / "in" / "broken.npz").write_bytes(b"PK\x03\x04 not really")
  assert main.run_command(["main.py", "--mode=explain", f"--workdir={trained_workdir[0]}",
                           f"--input={tmp_path / 'in'}", f"--output={tmp_path / 'o'}",
                           "--cam_layers=dec3_conv9"]) == 2
  out = capsys.readouterr()
  assert out.err.strip().startswith("error: --cam_layers ['dec3_conv9']: unknown layer(s) "
                                    "['dec3_conv9']")
  assert "broken.npz" not in out.out + out.err and not os.path.exists(tmp_path / "o")


@pytest.mark.parametrize("mode", ["predict", "explain"])
def test_a_single_bad_file_fails_before_the_model_is_loaded(trained_workdir, tmp_path, capsys,
                                                            monkeypatch, mode):
  import main
  from octseg_jax.serving import inference

  def no_loading(*args, **kwargs):
    raise AssertionError("the model was loaded before the input was read")
  monkeypatch.setattr(inference, "load_trained", no_loading)
  bad = tmp_path / "broken.npz"
  bad.write_bytes(b"PK\x03\x04 not really")
  assert main.run_command(["main.py", f"--mode={mode}", f"--workdir={trained_workdir[0]}",
                           f"--input={bad}", f"--output={tmp_path / 'o'}"]) == 2
  assert capsys.readouterr().err.strip().startswith(f"error: {bad}: not a readable .npz file")


def test_a_fovea_far_from_the_scan_is_refused_before_any_output(trained_workdir, tmp_path,
                                                                 capsys):
  """--fovea more than the ETDRS grid's radius (plus the maps' reach) from the scanned area:
  one line naming the option and the file, exit 2, no output folder; in a folder run the
  volume is a failed row of errors.csv and writes nothing of its own."""
  import csv
  import main
  images = np.random.default_rng(1).integers(0, 255, (3, 64, 41)).astype(np.uint8)
  vol = _npz(tmp_path, "vol.npz", images=images, scale_mm=np.array([0.2, 0.004, 0.01]))
  args = ["main.py", "--mode=predict", f"--workdir={trained_workdir[0]}", "--fovea=50,50"]
  assert main.run_command(args + [f"--input={vol}", f"--output={tmp_path / 'o'}"]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: --fovea: (50, 50) mm is ") and vol in err
  assert "\n" not in err and not os.path.exists(tmp_path / "o")
  (tmp_path / "in").mkdir()
  os.replace(vol, tmp_path / "in" / "vol.npz")
  _npz(tmp_path / "in", "flat.npz", images=images)                # not a volume: no grid
  assert main.run_command(args + [f"--input={tmp_path / 'in'}",
                                  f"--output={tmp_path / 'f'}"]) == 2
  rows = list(csv.DictReader(open(tmp_path / "f" / "errors.csv")))
  assert [r["file"].endswith("vol.npz") for r in rows] == [True]
  assert "--fovea" in rows[0]["reason"]
  assert not [f for f in os.listdir(tmp_path / "f") if f.startswith("vol")]
  assert os.path.exists(tmp_path / "f" / "flat.npz")


@pytest.mark.parametrize("flag, name", [("--volume", "scan.png"), ("--fovea=1,1", "scan.png"),
                                        ("--laterality=OS", "scan.png"),
                                        ("--fovea=1,1", "scan.npz")])
def test_volume_options_on_a_single_scan_that_is_no_volume_are_refused(trained_workdir, tmp_path,
                                                                       capsys, flag, name):
  """They would do nothing: one line naming the option and the file, before any output."""
  import main
  from PIL import Image
  image = np.random.default_rng(2).integers(0, 255, (64, 41)).astype(np.uint8)
  path = str(tmp_path / name)
  if name.endswith(".png"):
    Image.fromarray(image).save(path)
  else:
    np.savez(path, images=image[None])
  assert main.run_command(["main.py", "--mode=predict", f"--workdir={trained_workdir[0]}",
                           f"--input={path}", f"--output={tmp_path / 'o'}", flag]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith(f"error: {flag.split('=')[0]}: {path} is not read as a volume ")
  assert "\n" not in err and not os.path.exists(tmp_path / "o")
  assert err.endswith("add --volume to read this .npz as one") == name.endswith(".npz")


def test_a_box_without_the_box_target_is_refused(trained_workdir, tmp_path, capsys):
  import main
  path = _npz(tmp_path, "scan.npz", images=np.zeros((1, 64, 41), np.uint8))
  assert main.run_command(["main.py", "--mode=explain", f"--workdir={trained_workdir[0]}",
                           f"--input={path}", f"--output={tmp_path / 'o'}",
                           "--cam_box=1,2,30,40"]) == 2
  assert capsys.readouterr().err.strip() == ("error: --cam_box (explain.box): only used with "
                                             "--cam_target=box (the target is 'all')")
  assert not os.path.exists(tmp_path / "o")


@pytest.mark.parametrize("mode", ["predict", "explain"])
def test_the_image_size_limit_is_set_per_run_as_its_message_says(trained_workdir, tmp_path,
                                                                 capsys, mode):
  """--config.data.max_image_side reaches the read of a single file, before the model loads."""
  import main
  path = _npz(tmp_path, "scan.npz", images=np.zeros((1, 70, 41), np.uint8))
  args = ["main.py", f"--mode={mode}", f"--workdir={trained_workdir[0]}", f"--input={path}"]
  assert main.run_command(args + [f"--output={tmp_path / 'a'}",
                                  "--config.data.max_image_side=64"]) == 2
  assert capsys.readouterr().err.strip() == (
      f"error: {path}: image of 70x41 pixels exceeds data.max_image_side=64 (raise it with "
      "--config.data.max_image_side if the machine has the memory)")
  assert main.run_command(args + [f"--output={tmp_path / 'b'}",
                                  "--config.data.max_image_side=70"]) == 0


def test_a_folder_without_volumes_says_its_volume_options_did_nothing(trained_workdir, tmp_path,
                                                                      capsys):
  import main
  (tmp_path / "in").mkdir()
  _npz(tmp_path / "in", "scan.npz", images=np.zeros((1, 64, 41), np.uint8))
  assert main.run_command(["main.py", "--mode=predict", f"--workdir={trained_workdir[0]}",
                           f"--input={tmp_path / 'in'}", f"--output={tmp_path / 'o'}",
                           "--fovea=1,1", "--laterality=OS", "--figures=none"]) == 0
  assert (f"note: --laterality, --fovea only apply to volumes, and no file of {tmp_path / 'in'} "
          "was read as one") in capsys.readouterr().out.splitlines()


def test_a_bad_layer_from_the_workdir_config_is_named_as_such(trained_workdir, tmp_path,
                                                              capsys):
  """explain.layers stored in a workdir's config.json (training does not check them against
  the network) is named as the workdir's, not as a --cam_layers the user never typed."""
  import json
  import shutil
  import main
  workdir = tmp_path / "w"
  shutil.copytree(trained_workdir[0], workdir)
  config = json.loads((workdir / "config.json").read_text())
  config["explain"]["layers"] = ["dec9_conv1"]
  (workdir / "config.json").write_text(json.dumps(config))
  path = _npz(tmp_path, "scan.npz", images=np.zeros((1, 64, 41), np.uint8))
  assert main.run_command(["main.py", "--mode=explain", f"--workdir={workdir}",
                           f"--input={path}", f"--output={tmp_path / 'o'}"]) == 2
  assert capsys.readouterr().err.startswith(
      f"error: explain.layers of {workdir}/config.json ['dec9_conv1']: unknown layer(s)")


def test_a_library_reason_keeps_the_file_name_at_the_end_of_a_long_path():
  from octseg_jax.errors import library_reason
  deep = "/tmp/" + "d" * 150 + "/export/B5.tif"
  reason = library_reason(FileNotFoundError(2, "No such file or directory", deep))
  assert reason.startswith("FileNotFoundError: No such file or directory: /tmp/d")
  assert reason.endswith("dd/export/B5.tif") and "..." in reason
  assert len(reason) == len("FileNotFoundError: ") + 120
  assert library_reason(ValueError("two\n  lines")) == "ValueError: two lines"
