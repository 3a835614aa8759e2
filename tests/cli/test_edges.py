"""Reliability at the edges (issue 28): fields of input files checked before use, size limits
before decompression, per-file failures in folder runs, one-line messages."""

import io
import os
import re
import tracemalloc
import zipfile

import numpy as np
import pytest

from octseg_jax.data import duke, synthetic
from octseg_jax.errors import InputError
from octseg_jax.outputs.atomic import write_npz


def _npz_declaring(path, name, shape, dtype="|u1", data=b""):
  """An .npz whose member `name` declares `shape` in its .npy header, followed by `data`
  (deflated) instead of the bytes the shape promises."""
  header = io.BytesIO()
  np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False,
                                                "shape": shape})
  with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
    zf.writestr(name + ".npy", header.getvalue() + data)          # the header has the magic


def test_a_decompression_bomb_is_refused_from_its_header_in_bounded_memory(tmp_path):
  path = str(tmp_path / "bomb.npz")
  _npz_declaring(path, "images", (40000, 40000), data=b"\0" * (1 << 20))
  tracemalloc.start()
  with pytest.raises(InputError, match=r"image of 40000x40000 pixels exceeds data.max_image_side"):
    duke.load_npz(path, max_side=4096)
  peak = tracemalloc.get_traced_memory()[1]
  tracemalloc.stop()
  assert peak < 20 * 2 ** 20                      # the 1.6 GB image was never allocated
  _npz_declaring(path, "images", (5000, 64, 64))
  with pytest.raises(InputError, match="more than 1024 scans"):
    duke.load_npz(path)
  _npz_declaring(path, "subject", (10 ** 8,), dtype="<i8")
  with pytest.raises(InputError, match="'subject' declares 100000000 values"):
    duke.load_npz(path)


def test_a_mat_bomb_is_refused_from_its_variable_headers_in_bounded_memory(tmp_path):
  """A compressed .mat whose 'images' declares 8000 x 8000 pixels (64 MB, a few KB on disk) is
  refused before it is inflated; a large variable the reader does not use is never read."""
  import scipy.io
  path = str(tmp_path / "Subject_99.mat")
  scipy.io.savemat(path, {"images": np.zeros((8000, 8000, 1), np.uint8)}, do_compression=True)
  assert os.path.getsize(path) < 2 ** 20
  tracemalloc.start()
  with pytest.raises(InputError, match=r"image of 8000x8000 pixels exceeds data.max_image_side"):
    duke.load_mat(path, annotated_only=False, max_side=4096)
  peak = tracemalloc.get_traced_memory()[1]
  tracemalloc.stop()
  assert peak < 20 * 2 ** 20
  images = synthetic.generate(2, 96, 64, seed=1).images
  scipy.io.savemat(path, {"images": np.moveaxis(images, 0, -1),
                          "automaticFluidDME": np.zeros((8000, 8000, 1), np.uint8)},
                   do_compression=True)
  tracemalloc.start()
  scans = duke.load_mat(path, annotated_only=False)
  peak = tracemalloc.get_traced_memory()[1]
  tracemalloc.stop()
  np.testing.assert_array_equal(scans.images, images)
  assert peak < 20 * 2 ** 20                      # automaticFluidDME was not inflated
  scipy.io.savemat(path, {"automaticFluidDME": np.zeros((2, 2))})
  with pytest.raises(InputError, match=r"missing \['images', 'manualLayers1'\] \(keys: "
                     r"\['automaticFluidDME'\]\)"):
    duke.load_mat(path)
  scipy.io.savemat(path, {"images": np.zeros((7, 5, 3)), "manualLayers1": np.ones((8, 5, 3)),
                          "name_of_thirty_one_characters_": np.zeros((2, 3), np.int16)})
  assert duke.mat_variable_shapes(path) == [
      (n, tuple(s)) for n, s, _ in scipy.io.whosmat(path)]        # scipy's reading, uncompressed


def test_pickled_and_text_scale_are_one_line_errors(tmp_path):
  images = synthetic.generate(1, 96, 64, seed=1).images
  for name, scale in (("text", np.array(["0.1", "0.0039", "0.01"])),
                      ("objects", np.array([0.1, "x", None], dtype=object))):
    path = str(tmp_path / f"{name}.npz")
    np.savez(path, images=images, scale_mm=scale)
    from octseg_jax.data import volumes
    with pytest.raises(InputError) as e:
      volumes.read_npz_volume(path)
    assert "scale_mm" in str(e.value) and "\n" not in str(e.value)


def test_folder_run_goes_on_past_an_unreadable_file(trained_workdir, tmp_path, monkeypatch):
  import main
  from octseg_jax.data import inputs
  folder = tmp_path / "in"
  folder.mkdir()
  for stem in ("a", "b", "c"):
    write_npz(str(folder / f"{stem}.npz"), images=synthetic.generate(1, 96, 64, seed=3).images)
  denied = str(folder / "b.npz")
  real = inputs.load_file

  def load_file(path, *args, **kwargs):      # what open() raises without read permission
    if path == denied:                       # (chmod cannot show it: tests may run as root)
      raise PermissionError(13, "Permission denied", path)
    return real(path, *args, **kwargs)

  monkeypatch.setattr(inputs, "load_file", load_file)
  status = main.run_command(["main.py", "--mode=predict", f"--workdir={trained_workdir[0]}",
                             f"--input={folder}", f"--output={tmp_path / 'out'}",
                             "--figures=none"])
  assert status == 2
  rows = open(tmp_path / "out" / "errors.csv").read().splitlines()
  assert rows[1:] == [f"{denied},failed,{denied}: Permission denied"]
  assert (tmp_path / "out" / "a.npz").exists() and (tmp_path / "out" / "c.npz").exists()
  assert (tmp_path / "out" / "manifest.json").exists()


def test_a_file_failing_during_prediction_is_a_failed_row(trained_workdir, tmp_path, monkeypatch):
  from octseg_jax.modes import predict
  folder = tmp_path / "in"
  folder.mkdir()
  for stem in ("a", "b"):
    write_npz(str(folder / f"{stem}.npz"), images=synthetic.generate(1, 96, 64, seed=3).images)
  real = predict.write_file_outputs

  def failing(run, stem, *args, **kwargs):
    if stem == "a":
      raise RuntimeError("library text\nwith a second line")
    return real(run, stem, *args, **kwargs)

  monkeypatch.setattr(predict, "write_file_outputs", failing)
  with pytest.raises(InputError, match="1 of 2 scan files"):
    predict.run(trained_workdir[0], str(folder), str(tmp_path / "out"), figures="none")
  rows = open(tmp_path / "out" / "errors.csv").read().splitlines()
  assert rows[1] == f"{folder / 'a.npz'},failed,{folder / 'a.npz'}: RuntimeError: library text with a second line"
  assert (tmp_path / "out" / "b.npz").exists()


def test_a_file_failing_half_way_leaves_none_of_its_outputs(trained_workdir, tmp_path,
                                                           monkeypatch):
  from octseg_jax.modes import predict
  folder = tmp_path / "in"
  folder.mkdir()
  for stem in ("a", "b"):
    write_npz(str(folder / f"{stem}.npz"), images=synthetic.generate(1, 96, 64, seed=3).images)
  real = predict.draw_figures

  def failing(run, scans, *args, **kwargs):      # after a.npz and its CSV were written
    if scans.names[0].startswith("a"):
      raise RuntimeError("figure backend failed")
    return real(run, scans, *args, **kwargs)

  monkeypatch.setattr(predict, "draw_figures", failing)
  with pytest.raises(InputError, match="1 of 2 scan files"):
    predict.run(trained_workdir[0], str(folder), str(tmp_path / "out"))
  left = sorted(os.listdir(tmp_path / "out"))
  assert not [f for f in left if f.startswith("a")] and "b.npz" in left


def test_a_multi_line_error_is_printed_on_one_line(monkeypatch, capsys, tmp_path):
  import main
  from octseg_jax.modes import evaluate
  def broken(*args, **kwargs):
    raise InputError("first line\nsecond   line")
  monkeypatch.setattr(evaluate, "run", broken)
  workdir = tmp_path / "w"
  workdir.mkdir()
  assert main.run_command(["main.py", "--mode=eval", f"--workdir={workdir}",
                           f"--output={tmp_path / 'o'}"]) == 2
  assert capsys.readouterr().err == "error: first line second line\n"


def _lock_owned_by(folder, name, pid):
  import socket
  (folder / name).write_text(f"{pid} {socket.gethostname()}\n")


def test_a_second_run_into_a_busy_output_folder_is_refused(trained_workdir, tmp_path):
  import socket
  import main
  from octseg_jax.outputs import folder_run
  write_npz(str(tmp_path / "s.npz"), images=synthetic.generate(1, 96, 64, seed=3).images)
  out = tmp_path / "out"
  out.mkdir()
  live = os.getppid()                                   # a live process other than this one
  _lock_owned_by(out, folder_run.OUTPUT_LOCK, live)
  (out / f".octseg-p{live}.s.abc.tmp.npz").write_bytes(b"in flight")   # the other run's
  (out / ".octseg-p999999999.s.abc.tmp.npz").write_bytes(b"left by a dead run")
  (out / ".octseg-0001.s.abc.tmp.npz").write_bytes(b"left by an older version")
  args = ["main.py", "--mode=predict", f"--workdir={trained_workdir[0]}",
          f"--input={tmp_path / 's.npz'}", f"--output={out}", "--figures=none"]
  assert main.run_command(args) == 2
  assert (out / f".octseg-p{live}.s.abc.tmp.npz").exists() and not (out / "s.npz").exists()
  _lock_owned_by(out, folder_run.OUTPUT_LOCK, 999999999)   # a dead owner: taken over
  assert main.run_command(args) == 0
  assert (out / f".octseg-p{live}.s.abc.tmp.npz").exists()          # a live run's: kept
  assert not (out / ".octseg-p999999999.s.abc.tmp.npz").exists()    # a dead run's: removed
  assert not (out / ".octseg-0001.s.abc.tmp.npz").exists()          # no owner: removed
  assert not (out / folder_run.OUTPUT_LOCK).exists()                   # released at the end
  assert socket.gethostname()


def test_a_lock_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
  import builtins
  import errno
  from octseg_jax.serving import workdir
  real_open = builtins.open

  def full_disk(path, mode="r", *args, **kwargs):
    if "w" in mode and str(path).endswith(".tmp"):
      raise OSError(errno.ENOSPC, "No space left on device", str(path))
    return real_open(path, mode, *args, **kwargs)

  monkeypatch.setattr(builtins, "open", full_disk)
  with pytest.raises(InputError, match="No space left on device"):
    workdir.WorkdirLock(str(tmp_path)).acquire()
  monkeypatch.setattr(builtins, "open", real_open)
  assert os.listdir(tmp_path) == []                    # no lock, no temporary file
  (tmp_path / workdir.LOCK_NAME).write_text("")         # an empty lock of older versions
  with workdir.WorkdirLock(str(tmp_path)) as lock:      # is stale: taken over
    assert lock.held


def test_reading_a_workdir_whose_best_checkpoint_is_replaced(trained_workdir, tmp_path,
                                                            monkeypatch, capsys):
  import shutil
  import orbax.checkpoint as ocp
  from octseg_jax.serving import checkpoints
  from octseg_jax.serving import inference
  workdir = str(tmp_path / "w")
  shutil.copytree(trained_workdir[0], workdir)
  best = os.path.join(workdir, "best")
  (step,) = [int(d) for d in os.listdir(best) if d.isdigit()]
  real = ocp.CheckpointManager.restore
  state = {"step": step, "calls": 0, "swaps": 1}

  def replaced_while_read(self, *args, **kwargs):   # the trainer saves a new best and deletes
    state["calls"] += 1                              # the listed one while it is being read
    if state["swaps"]:
      state["swaps"] -= 1
      old, state["step"] = state["step"], state["step"] + 1
      os.rename(os.path.join(best, str(old)), os.path.join(best, str(state["step"])))
      raise FileNotFoundError(os.path.join(best, str(old)))
    return real(self, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "restore", replaced_while_read)
  trained = inference.load_trained(workdir)
  assert trained.epoch == step + 1 and state["calls"] == 2
  assert "could not be read" not in capsys.readouterr().out       # no damage claimed
  assert not os.path.exists(os.path.join(workdir, "damaged_checkpoints"))
  state["swaps"] = 100                                             # it keeps changing
  monkeypatch.setattr(checkpoints.time, "sleep", lambda s: None)
  with pytest.raises(InputError, match="busy: the workdir is being trained"):
    inference.load_trained(workdir)


def test_a_lock_releases_only_its_own_file_and_works_without_hard_links(tmp_path, monkeypatch):
  import errno
  from octseg_jax.outputs.lock import FolderLock
  lock = FolderLock(str(tmp_path), "x.lock")
  lock.acquire()
  _lock_owned_by(tmp_path, "x.lock", os.getppid())      # another process's lock replaced ours
  lock.release()
  assert (tmp_path / "x.lock").read_text().split()[0] == str(os.getppid())
  os.remove(tmp_path / "x.lock")

  def no_links(src, dst):
    raise OSError(errno.EPERM, "Operation not permitted", dst)

  monkeypatch.setattr(os, "link", no_links)               # e.g. exFAT, some network mounts
  with FolderLock(str(tmp_path), "x.lock") as held:
    assert held.held and (tmp_path / "x.lock").read_text().split()[0] == str(os.getpid())
  assert os.listdir(tmp_path) == []


# ---- a disk that fills up during training ---------------------------------------------------

def _tmpfs(path, size: str) -> bool:
  """Mounts a tmpfs of `size` at `path` (False where mounting is not permitted)."""
  import subprocess
  os.makedirs(path, exist_ok=True)
  return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                        capture_output=True).returncode == 0


def test_training_on_a_disk_that_fills_is_one_line_and_resumes_after_space_is_freed(tmp_path):
  """A real full disk (a 600 KiB tmpfs holds epoch 1's checkpoints, not epoch 2's): orbax's
  background save fails; the command ends within the timeout with exit 2 and one line naming
  the checkpoint folder, leaves no lock, keeps epoch 1; on a larger disk the same command
  resumes and ends like an uninterrupted run."""
  import shutil
  import subprocess
  import sys
  from conftest import ROOT
  disk = tmp_path / "disk"
  if not _tmpfs(disk, "600k"):
    pytest.skip("mounting a tmpfs is not permitted here (needs CAP_SYS_ADMIN)")
  cmd = [sys.executable, os.path.join(ROOT, "main.py"), "--config=configs/tiny.py",
         f"--workdir={disk}/w", "--config.train.num_epochs=3"]
  try:
    full = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    kept = tmp_path / "kept"
    shutil.copytree(disk / "w", kept)
  finally:
    subprocess.run(["umount", str(disk)], check=True)
  assert full.returncode == 2, full.stderr[-2000:]
  lines = full.stderr.splitlines()
  resume = ("; the earlier checkpoints are intact: free space and rerun the same command to "
            "resume")
  assert len(lines) == 1 and (       # which write meets the full disk first varies with load
      re.fullmatch(f"error: {disk}/w/(best|checkpoints): no space left on device while saving "
                   f"a checkpoint{resume}", lines[0])
      or lines[0] == f"error: {disk}/w: no space left on device while training{resume}"), lines
  assert "Traceback" not in full.stdout and not (kept / ".lock").exists()
  assert [d for d in os.listdir(kept / "best") if d.isdigit()] == ["1"]   # 2 never finalised
  roomy = tmp_path / "roomy"
  shutil.copytree(kept, roomy)                       # the same workdir, with space freed
  cmd[3] = f"--workdir={roomy}"
  again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert again.returncode == 0, again.stderr[-2000:]
  epochs = [r.split(",")[0] for r in (roomy / "log.csv").read_text().splitlines()[1:]]
  assert epochs == ["1", "2", "3"]


def test_a_failed_background_save_is_one_line_and_keeps_the_earlier_checkpoint(tmp_path,
                                                                            monkeypatch):
  """orbax's error text for a full disk (as it reports a background save) on epoch 2's save:
  InputError naming the folder, the lock released, epoch 1 restorable."""
  import orbax.checkpoint as ocp
  from conftest import tiny_config
  from octseg_jax.serving import checkpoints
  from octseg_jax.training import train
  real_save = ocp.CheckpointManager.save

  def save(self, step, *args, **kwargs):
    if step == 2:
      raise ValueError("RESOURCE_EXHAUSTED: Error writing local file \"x/_sharding\": Failed to "
                       "write 25599 bytes to file 9: No space left on device "
                       "[os_error_code='28']")
    return real_save(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "save", save)
  workdir = str(tmp_path / "w")
  with pytest.raises(InputError, match=r"/w/(best|checkpoints): no space left on device") as e:
    train.train_and_evaluate(tiny_config(**{"train.num_epochs": 3}), workdir, hooks=[])
  assert "\n" not in str(e.value) and not os.path.exists(os.path.join(workdir, ".lock"))
  monkeypatch.setattr(ocp.CheckpointManager, "save", real_save)
  assert checkpoints.Checkpoints(workdir, read_only=True).latest.all_steps() == [1]


class _FullDisk:
  """A file whose writes fail as on a full disk: an OSError that names no file, as write() and
  close() often raise it."""

  def __init__(self, f):
    self.f = f

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.f.close()

  def write(self, data):
    import errno
    raise OSError(errno.ENOSPC, "No space left on device")


def _fill_disk_for(monkeypatch, chosen) -> None:
  """open(path, mode) gives a _FullDisk where chosen(path, mode), the real file elsewhere."""
  import builtins
  real_open = builtins.open

  def opener(path, mode="r", *args, **kwargs):
    f = real_open(path, mode, *args, **kwargs)
    return _FullDisk(f) if chosen(str(path), mode) else f
  monkeypatch.setattr(builtins, "open", opener)


def test_a_write_that_fails_without_a_file_name_is_named_by_its_output(tmp_path, monkeypatch):
  """A full disk often surfaces in write() or close() as an OSError with no file name; the
  atomic write names the file it was writing, and leaves no temporary file."""
  import errno
  from octseg_jax.outputs import atomic
  _fill_disk_for(monkeypatch, lambda path, mode: "w" in mode and ".tmp" in path)
  target = str(tmp_path / "config.json")
  with pytest.raises(OSError) as e:
    atomic.write_text(target, "{}")
  assert e.value.filename == target and e.value.errno == errno.ENOSPC
  assert os.listdir(tmp_path) == []


def test_a_full_disk_while_claiming_names_the_claims_file(tmp_path, monkeypatch):
  """The same for a claim recorded in an output folder's claims file (appended, not written
  atomically)."""
  import errno
  from octseg_jax.outputs import folder_run
  folder = tmp_path / "out"
  run = folder_run.RunOutputs(str(folder), [], "predict")
  run.start()
  _fill_disk_for(monkeypatch, lambda path, mode: path.endswith(folder_run.CLAIMS))
  with pytest.raises(OSError) as e:
    run.claim("scan", [".npz"])
  folder_run.end_unfinished()
  assert e.value.filename == str(folder / folder_run.CLAIMS) and e.value.errno == errno.ENOSPC


def test_a_rename_onto_a_folder_is_named_by_its_output(tmp_path):
  """A folder at the output's name: the error names the output, not the temporary file."""
  import errno
  from octseg_jax.outputs import atomic
  target = tmp_path / "scan.npz"
  target.mkdir()
  with pytest.raises(OSError) as e:
    atomic.write_text(str(target), "{}")
  assert e.value.filename == str(target) and e.value.errno == errno.EISDIR
  assert os.listdir(tmp_path) == ["scan.npz"] and os.listdir(target) == []


def test_a_full_disk_without_a_file_name_during_training_names_the_workdir():
  """ENOSPC from a write that carries no file name (a log or event file) names the workdir in
  training, and the generic 'output' elsewhere; a named file is always named."""
  import errno
  import types
  from octseg_jax.modes import cli
  full = OSError(errno.ENOSPC, "No space left on device")
  train = types.SimpleNamespace(mode="train", workdir="W")
  assert cli._os_error_line(full, train) == (
      "W: no space left on device while training; the earlier checkpoints are intact: free "
      "space and rerun the same command to resume")
  assert cli._os_error_line(full, types.SimpleNamespace(mode="predict", workdir="W")) == (
      "output: No space left on device")
  named = OSError(errno.ENOSPC, "No space left on device", "W/log.csv")
  assert cli._os_error_line(named, train) == "W/log.csv: No space left on device"
