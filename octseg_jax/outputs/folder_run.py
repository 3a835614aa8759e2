"""The output folder of a predict, explain or eval run: checked before anything is written,
names that never replace an input, another output of the same run or a file that no earlier run
wrote, and a record of the run.

A batch run lists the files it could not read in errors.csv (file, status, reason). From its
start the folder holds manifest.json with "complete": false, listing the names claimed before
the start, and each later claim is appended to .output.claims (one JSON string per line) before
its file is written, so a run of N files writes O(N) bytes of records, not a manifest per claim;
the run writes the manifest again last, complete, and removes the claims file. A folder whose
manifest is not complete holds an interrupted run, whose outputs (the manifest's and the claims
file's names) and leftover temporary files the next run into that folder removes. A run refused
after its start (bad input, a full disk) removes its own outputs and records at once
(end_unfinished), and the folder if it made it.
"""

import fnmatch
import glob
import json
import os
from typing import Dict, Iterable, List, Optional, Sequence

from octseg_jax.errors import InputError
from octseg_jax.outputs import report
from octseg_jax.outputs.atomic import TEMP_PATTERN, temp_owner, write_csv, write_json
from octseg_jax.outputs.lock import FolderLock, pid_alive

MANIFEST = "manifest.json"
OUTPUT_LOCK = ".output.lock"
CLAIMS = ".output.claims"     # an unfinished run's claims after its start (not TEMP_PATTERN's)
_UNFINISHED = []              # runs of this process started and not finished (end_unfinished)
ERRORS = "errors.csv"
RECORDS = (MANIFEST, ERRORS, CLAIMS)     # the folder's records of a run, besides its lock


def unfinished_runs() -> tuple:
  """The runs of this process started and not finished, now: end_unfinished keeps them."""
  return tuple(_UNFINISHED)


def end_unfinished(refused: bool = False, keep: tuple = ()) -> None:
  """Ends the runs of this process that stopped without finish() (an error), but those in
  `keep` (unfinished_runs before a command), releasing their locks: called by the command line
  after every mode. A refused run (bad input or a full disk, `refused`) also removes what it
  wrote, its records and the folder it made, if that is then empty, so that no half-written
  output stays; an interrupted one keeps its records, for the next run into the folder."""
  for run in [r for r in _UNFINISHED if not any(r is k for k in keep)]:
    _UNFINISHED.remove(run)
    try:
      if refused:
        run.abandon()
      run.lock.release()
      if refused and run.made_folder and not os.listdir(run.folder):
        os.rmdir(run.folder)
    except OSError:      # the error being reported matters more than a leftover
      pass


def check_output_folder(folder: str, option: str = "--output") -> str:
  """Refuses (InputError) an output folder that cannot be one: a file, a path through a file,
  or a folder that is not writable. Creates nothing. Returns the absolute path."""
  if not folder:
    raise InputError(f"{option}: no output folder given")
  path = os.path.abspath(folder)
  if os.path.exists(path) and not os.path.isdir(path):
    raise InputError(f"{option}={folder}: is a file, expected a folder")
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise InputError(f"{option}={folder}: {existing} is a file, so the folder cannot be made")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise InputError(f"{option}={folder}: {existing} is not writable")
  return path


DEFAULT_PARENT = "runs"      # default outputs go under ./runs/ (ignored by the repository's git)


def new_folder_here(mode: str, workdir: str) -> str:
  """A folder that does not exist yet for a run without --output, the same rule in every
  mode: runs/MODE_WORKDIRNAME[_k] under the current directory."""
  base = os.path.join(DEFAULT_PARENT, f"{mode}_{os.path.basename(os.path.abspath(workdir)) or 'run'}")
  name, k = base, 1
  while os.path.exists(name):
    k += 1
    name = f"{base}_{k}"
  return name


def refuse_workdir(output: str, workdir: str) -> None:
  """Outputs never go into the model's own folder (it holds config, checkpoints, reports)."""
  if os.path.realpath(output) == os.path.realpath(workdir):
    raise InputError(f"--output={output}: is the workdir; write results to another folder")


def unique_stems(files: Sequence[str]) -> List[str]:
  """Output stems for input files: the name without extension, or with it (scan.png) where two
  inputs share a stem."""
  stems = [os.path.splitext(os.path.basename(f))[0] for f in files]
  return [os.path.basename(f) if stems.count(s) > 1 else s for f, s in zip(files, stems)]


class RunOutputs:
  """Output names and the record of one run into `folder`.

  claim(base, suffixes) returns paths BASE[_k]SUFFIX that no earlier claim of this run, no
  input file and no file already there (after start: one no run wrote) uses, so outputs never
  replace inputs, each other or a user's files.
  """

  def __init__(self, folder: str, inputs: Iterable[str], mode: str,
               read_folders: Sequence[Optional[str]] = ()):
    self.folder = folder
    self.mode = mode
    inputs = list(inputs)
    self.inputs = {os.path.realpath(f) for f in inputs}
    self.given = [os.path.abspath(f) for f in inputs]       # as given: links not resolved
    self.read_folders = [f for f in read_folders if f]      # folders the run reads as a whole
    self.claimed: set = set()
    self.written: List[str] = []
    self.problems: List[List[str]] = []          # [file, 'failed' | 'skipped', reason]
    self.lock = FolderLock(folder, OUTPUT_LOCK, f"is writing {mode} outputs into it",
                           own_is_stale=True)      # held from start to finish
    self._replaceable = None                       # refuse_replacing's earlier outputs
    self.made_folder = False                       # start made the folder (end_unfinished)
    self.records_are_mine = False                  # start wrote this run's manifest

  def refuse_replacing(self, base: str, suffixes: Sequence[str]) -> None:
    """InputError when the folder is busy (another live run writes into it), or BASE+SUFFIX
    would replace one of the inputs or a file or folder there that no earlier run into the
    folder wrote (earlier_outputs does not list it): checked before anything is written."""
    if self._replaceable is None:
      self.refuse_input_folder()
      if os.path.isdir(self.folder):
        self.lock.refuse_if_busy()
      self._replaceable = {os.path.normpath(p) for p in self.earlier_outputs()}
    earlier = self._replaceable
    for suffix in suffixes:
      path = os.path.join(self.folder, base + suffix)
      if os.path.realpath(path) in self.inputs:
        raise InputError(f"--output={self.folder}: the output {path} would replace the input "
                         "file of that name; choose another output folder")
      if os.path.lexists(path) and os.path.normpath(path) not in earlier:
        raise InputError(f"--output={self.folder}: {path} is not an output of an earlier run "
                         f"(no {MANIFEST} there lists it), so it is not replaced; move it or "
                         "choose another output folder")

  def refuse_input_folder(self) -> None:
    """InputError when the folder is one the run reads (the --input folder, eval's data folder)
    or holds input files, by the folders as given (a folder of links to files elsewhere
    counts) and as the file system sees them (os.path.samefile: letter case, links): outputs
    there (figures, .npz) would be read as scans by the next run of that folder."""
    if not os.path.isdir(self.folder):
      return                                          # a folder still to be made holds nothing
    same = lambda where: os.path.isdir(where) and os.path.samefile(where, self.folder)
    held = {where for where in {os.path.dirname(f) for f in self.given} if same(where)}
    beside = sorted(os.path.basename(f) for f in self.given if os.path.dirname(f) in held)
    if beside:
      raise InputError(f"--output={self.folder}: holds the input {beside[0]}"
                       f"{f' and {len(beside) - 1} more' if len(beside) > 1 else ''}; outputs "
                       "beside the inputs would be read as scans by the next run of that folder; "
                       "choose another output folder")
    if any(same(f) for f in self.read_folders):
      raise InputError(f"--output={self.folder}: is the folder the scans are read from; outputs "
                       "there would be read as scans by the next run of that folder; choose "
                       "another output folder")

  def claim(self, base: str, suffixes: Sequence[str]) -> List[str]:
    """Paths BASE[_k]SUFFIX, the first k at which none is claimed, an input, or a file or folder
    already there (after start, which removed the earlier run's: what is left, no run wrote)."""
    k = 1
    while True:
      name = base if k == 1 else f"{base}_{k}"
      paths = [os.path.join(self.folder, name + s) for s in suffixes]
      if not any(p in self.claimed or os.path.realpath(p) in self.inputs or os.path.lexists(p)
                 for p in paths):
        self.claimed.update(paths)
        if self.lock.held:                 # recorded before they are written (an interruption)
          self.append_claims(paths)
        return paths
      k += 1

  def start(self) -> None:
    """Creates the folder and locks it for this run (a second run into it is refused while
    this one lives), then removes the temporary files of runs that are gone, and the outputs
    (earlier_outputs) and records (RECORDS) of an earlier run, saying how many outputs it
    removes. Refused before anything is made when a record there is not an earlier run's."""
    self.refuse_foreign_records()
    self.made_folder = not os.path.isdir(self.folder)
    os.makedirs(self.folder, exist_ok=True)
    self.lock.acquire()
    _UNFINISHED.append(self)
    for leftover in glob.glob(os.path.join(self.folder, TEMP_PATTERN)):
      owner = temp_owner(leftover)
      if owner is None or owner == os.getpid() or not pid_alive(owner):
        os.remove(leftover)
    earlier = [p for p in self.earlier_outputs() if os.path.isfile(p)]
    if earlier:
      print(f"{self.mode}: removing the {report.count(len(earlier), 'output')} of the earlier "
            f"run in {self.folder} (its {MANIFEST} lists them; a folder holds one run's "
            "outputs: give each run its own --output to keep them)")
    self.discard(earlier)
    for record in RECORDS:
      path = os.path.join(self.folder, record)
      if os.path.exists(path) and os.path.realpath(path) not in self.inputs:
        os.remove(path)
    self.write_manifest(complete=False)
    self.records_are_mine = True         # from here on abandon may remove the records

  def append_claims(self, paths: Sequence[str]) -> None:
    """Adds claimed names to the claims file (CLAIMS), one JSON string per line; an OSError
    that names no file (a full disk) names the claims file, as atomic writes name theirs."""
    claims = os.path.join(self.folder, CLAIMS)
    try:
      with open(claims, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(os.path.relpath(p, self.folder)) + "\n" for p in paths))
    except OSError as e:
      if e.filename is None:
        raise OSError(e.errno, e.strerror, claims) from None
      raise

  def earlier_claims(self) -> List[str]:
    """The names in the claims file an interrupted run left (its last line may be cut)."""
    try:
      with open(os.path.join(self.folder, CLAIMS), encoding="utf-8") as f:
        lines = f.read().splitlines()
    except (OSError, ValueError):
      return []
    names = []
    for line in lines:
      try:
        names.append(json.loads(line))
      except ValueError:
        continue
    return names

  def refuse_foreign_records(self) -> None:
    """InputError when the folder holds a manifest.json that is not a run's record, an
    errors.csv that the earlier run's manifest does not list (an interrupted run's may not), or
    a claims file beside no run's manifest: start would replace them."""
    manifest = self.earlier_manifest()
    ours = {MANIFEST: manifest is not None,
            ERRORS: manifest is not None and (ERRORS in manifest["outputs"]
                                              or not manifest.get("complete")),
            CLAIMS: manifest is not None}
    for record in RECORDS:
      path = os.path.join(self.folder, record)
      if os.path.lexists(path) and not ours[record]:
        raise InputError(f"--output={self.folder}: {path} is not the record of an earlier run, "
                         "so it is not replaced; move it or choose another output folder")

  def earlier_manifest(self) -> Optional[Dict]:
    """The folder's manifest.json when a run wrote it (a JSON object with a 'mode' and an
    'outputs' list), else None."""
    try:
      with open(os.path.join(self.folder, MANIFEST)) as f:
        earlier = json.load(f)
    except (OSError, ValueError):
      return None
    if isinstance(earlier, dict) and "mode" in earlier and isinstance(earlier.get("outputs"),
                                                                        list):
      return earlier
    return None

  def earlier_outputs(self) -> List[str]:
    """The files that the earlier run into this folder (of any mode) listed in its
    manifest.json (and, when it was interrupted, in its claims file), inside the folder only and
    never the folder's own records (lock, RECORDS, temporary files): this run replaces the
    manifest, so they would be left unlisted, and no figure or table of the earlier run may pass
    for one of this run's. Nothing when there is no manifest a run wrote (earlier_manifest)."""
    earlier = self.earlier_manifest()
    if earlier is None:
      return []
    listed = earlier["outputs"] + ([] if earlier.get("complete") else self.earlier_claims())
    root = os.path.realpath(self.folder)
    records = (OUTPUT_LOCK,) + RECORDS
    paths = [os.path.join(self.folder, name) for name in listed if isinstance(name, str)]
    return [p for p in paths if os.path.commonpath([root, os.path.realpath(p)]) == root
            and os.path.basename(p) not in records
            and not fnmatch.fnmatch(os.path.basename(p), TEMP_PATTERN)]

  def wrote(self, *paths: str) -> None:
    self.written.extend(paths)

  def discard(self, paths) -> None:
    """Removes files at names this run claimed, and drops them from the record: the outputs of
    a file that failed half-way, an earlier run's files at names about to be written again, or
    those its manifest listed (earlier_outputs). Input files are never removed."""
    for path in paths:
      if path in self.written:
        self.written.remove(path)
      if os.path.realpath(path) not in self.inputs and os.path.isfile(path):
        os.remove(path)

  def abandon(self) -> None:
    """Removes the files at this run's names (a name claimed was free when claimed, so a file
    there is this run's), its temporary files and its records: a refused run leaves none.
    Before start has written this run's manifest, the records are an earlier run's: kept."""
    self.discard(sorted(self.claimed))
    for leftover in glob.glob(os.path.join(self.folder, TEMP_PATTERN)):
      if temp_owner(leftover) == os.getpid():
        os.remove(leftover)
    for record in RECORDS if self.records_are_mine else ():
      path = os.path.join(self.folder, record)
      if os.path.exists(path) and os.path.realpath(path) not in self.inputs:
        os.remove(path)

  def failed(self, file: str, reason: str) -> None:
    self.problems.append([file, "failed", reason])

  def skipped(self, file: str, reason: str) -> None:
    self.problems.append([file, "skipped", reason])

  @property
  def num_failed(self) -> int:
    return sum(p[1] == "failed" for p in self.problems)

  def refuse_failures(self, input_path: str, verb: str) -> None:
    """After the run: one line (exit status 2) when any of the scan files it took failed;
    files skipped as no scan are listed in errors.csv, not counted. verb: what failed besides
    reading ('used', 'predicted'; '' for reading alone)."""
    if self.num_failed:
      raise InputError(f"{input_path}: {self.num_failed} of "
                       f"{report.count(len(self.given), 'scan file')} could not be read"
                       f"{f' or {verb}' if verb else ''} (listed in {self.folder}/errors.csv)")

  def write_manifest(self, complete: bool, summary: Optional[Dict] = None) -> None:
    """manifest.json: complete, the files written (and errors.csv when there is one) with the
    run's `summary`; not complete (at the start), the names claimed so far, and where the
    later claims go."""
    paths = self.written if complete else sorted(self.claimed)
    files = [os.path.relpath(p, self.folder) for p in paths]
    if complete and self.problems:
      files.append(ERRORS)
    later = {} if complete else {"later_claims": CLAIMS}
    write_json(os.path.join(self.folder, MANIFEST), {
        "mode": self.mode, "complete": complete, "outputs": files, **later,
        "failed": self.num_failed, "skipped": len(self.problems) - self.num_failed,
        **(summary or {})})

  def finish(self, summary: Optional[Dict] = None) -> None:
    """Writes errors.csv (if any file failed or was skipped), then manifest.json, complete."""
    if self.problems:
      write_csv(os.path.join(self.folder, ERRORS), ["file", "status", "reason"], self.problems)
    self.write_manifest(complete=True, summary=summary)
    claims = os.path.join(self.folder, CLAIMS)
    if os.path.exists(claims):
      os.remove(claims)
    if self.lock.held:
      self.lock.release()
      if self in _UNFINISHED:
        _UNFINISHED.remove(self)
