"""README.md, docs/results.md, docs/performance.md and pretrained/README.md agree with the
committed raw outputs.

scripts/doc_tables.py regenerates every marked block (tables, sentences and short lists) from
docs/results/ and pretrained/; measured numbers live only inside those blocks. These tests run
its check on the committed files, on edited copies of their text and on a copy of the raw
outputs with one value changed, all of which it must reject.
"""

import json
import math
import os

import pytest

from conftest import ROOT, load_script
from octseg_jax.learning import uncertainty


doc_tables = load_script("doc_tables")
GPU, CPU = "docs/results/gpu_h200", "docs/results/cpu_2core"


def read(doc):
  with open(os.path.join(ROOT, doc)) as f:
    return f.read()


def raw(rel):
  with open(os.path.join(ROOT, rel)) as f:
    return json.load(f)


def blocks(doc):
  """{block name: body} of a committed document."""
  return {m.group("name"): m.group("body") for m in doc_tables.BLOCK.finditer(read(doc))}


def differs(doc, name):
  return f"{doc}: block {name} differs from what scripts/doc_tables.py generates from the raw outputs"


def test_committed_documents_match_what_the_raw_outputs_generate():
  assert doc_tables.check(ROOT) == []


def test_every_document_has_generated_blocks_and_every_block_a_generator():
  for doc in doc_tables.DOCS:
    names = [m.group("name") for m in doc_tables.BLOCK.finditer(read(doc))]
    assert names, doc
    assert set(names) <= set(doc_tables.TABLES), doc


def test_every_generator_has_a_block_in_some_document():
  used = set()
  for doc in doc_tables.DOCS:
    used |= set(blocks(doc))
  assert set(doc_tables.TABLES) - used == set()


def test_a_changed_number_in_a_readme_block_is_reported():
  readme = read("README.md")
  assert readme.count("pixel accuracy 0.9730,") == 1     # paper protocol, native (headline)
  edited = readme.replace("pixel accuracy 0.9730,", "pixel accuracy 0.9731,")
  problems = doc_tables.check(ROOT, {"README.md": edited})
  assert problems == [differs("README.md", "readme_results")]


def test_a_changed_number_in_a_table_is_reported():
  results = read("docs/results.md")
  assert results.count("| 0.9730 |") == 1            # pixel accuracy, paper protocol, native
  edited = results.replace("| 0.9730 |", "| 0.9731 |")
  problems = doc_tables.check(ROOT, {"docs/results.md": edited})
  assert problems == [differs("docs/results.md", "results_paper")]


def test_a_changed_number_in_a_sentence_block_is_reported():
  # The paper-protocol training time, once a prose number, is now generated in two documents.
  train_s = raw(f"{GPU}/results.json")["paper_protocol"]["random_split"]["train_s"]
  assert f"{train_s:.0f}" == "59"
  readme, perf = read("README.md"), read("docs/performance.md")
  assert "trained in 59 s," in readme and "checkpoints): 59 s wall time" in perf
  problems = doc_tables.check(ROOT, {
      "README.md": readme.replace("trained in 59 s,", "trained in 58 s,"),
      "docs/performance.md": perf.replace("checkpoints): 59 s wall time",
                                          "checkpoints): 58 s wall time")})
  assert problems == [differs("README.md", "readme_results"),
                      differs("docs/performance.md", "performance_gpu_paper_training")]


def test_numbers_that_left_the_prose_are_read_from_their_files():
  """Each value is computed here from its raw file and must appear in its block's body, and
  nowhere in the document outside the blocks."""
  results, cpu = raw(f"{GPU}/results.json"), raw(f"{CPU}/results.json")
  dice = lambda name: cpu[name]["fold0"]["native"]["mean_layer_dice"]
  gap = dice("duke_cpu") - dice("duke_cpu_seed1")
  cache = raw(f"{CPU}/compile_cache.json")
  glibc = raw(f"{CPU}/allocator/compare_paper_unpool_b4_glibc_keep_freed.json")
  stats = raw(f"{CPU}/explain_pretrained/cam_stats.json")["summary"]["dec0_conv1"]
  fourfold = [(sum(r["runs_detail"][f"fold{f}_seed0"]["mean_layer_dice"] for f in range(4)) / 4,
               name, levers) for levers in ("campaign", "campaign_h200")
              for name, r in raw(f"docs/results/{levers}/levers.json")["recipes"].items()
              if all(f"fold{f}_seed0" in r["runs_detail"] for f in range(4))]
  best = max(fourfold)
  machine = {"campaign": "this 2-core CPU", "campaign_h200": "the H200"}[best[2]]
  expected = [
      ("README.md", "readme_results",
       f"trained in {results['paper_protocol']['random_split']['train_s']:.0f} s"),
      ("README.md", "readme_results", f"over its 4 seed-0 fold models is `{best[1]}` on "
       f"{machine}: mean layer Dice **{best[0]:.3f}**"),
      ("docs/results.md", "results_seed_noise", f"moved the mean layer Dice by {gap:.3f}"),
      ("docs/results.md", "results_cpu_reading", f"seed 1 scores {gap:.4f} below seed 0"),
      ("docs/results.md", "results_cam_pretrained_summary",
       f"`randomisation_similarity` **{stats['randomisation_similarity']:.3f}**"),
      ("docs/performance.md", "performance_compile_cache",
       f"took {cache['uncached_compile_s']:.1f} s to compile"),
      ("docs/performance.md", "performance_cpu_layer_rewrites",
       f"plain / rewritten step time "
       f"{raw(f'{CPU}/ab_conv_channel_sum_paper_b4.json')['plain_over_fast']:.2f}"),
      ("docs/performance.md", "performance_cpu_allocator",
       f"to {glibc['pytorch']['train_step_s']:.2f} s and ours"),
      ("docs/results/gpu_h200/pretrained_v1/README.md", "previous_training",
       f"in {results['pretrained_all_subjects']['all']['train_s']:.0f} s wall time"),
  ]
  for doc, name, text in expected:
    assert text in blocks(doc)[name], (doc, name, text)
    assert text not in doc_tables.BLOCK.sub("", read(doc)), (doc, text)


def checkout_with(tmp_path, rel, content):
  """A copy of the checkout under tmp_path made of links into ROOT, except the file rel (written
  with content) and the folders leading to it."""
  src, dst = ROOT, tmp_path
  parts = rel.split("/")
  for depth, part in enumerate(parts):
    for entry in os.listdir(src):
      if entry not in (part, ".git"):
        os.symlink(os.path.join(src, entry), dst / entry)
    src, dst = os.path.join(src, part), dst / part
    if depth < len(parts) - 1:
      dst.mkdir()
  dst.write_text(content)
  return str(tmp_path)


def test_a_changed_raw_output_is_reported(tmp_path):
  """Another paper-protocol training time in results.json: every block that shows it, and only
  those, is reported."""
  results = raw(f"{GPU}/results.json")
  results["paper_protocol"]["random_split"]["train_s"] = 73.2
  root = checkout_with(tmp_path, f"{GPU}/results.json", json.dumps(results))
  assert doc_tables.check(root) == [
      differs("README.md", "readme_results"), differs("docs/results.md", "results_paper"),
      differs("docs/performance.md", "performance_gpu_paper_training")]
  fresh = doc_tables.render(read("docs/performance.md"), doc_tables.Sources(root))
  assert "checkpoints): 73 s wall time" in fresh


def test_a_hand_written_table_with_numbers_is_reported():
  results = read("docs/results.md") + "\n| run | Dice |\n|---|---|\n| mine | 0.99 |\n"
  problems = doc_tables.check(ROOT, {"docs/results.md": results})
  assert problems == ["docs/results.md: table row with numbers outside a generated block: "
                      "| mine | 0.99 |"]


def test_a_marker_without_its_partner_is_reported():
  results = read("docs/results.md") + "\n<!-- generated:results_cam -->\nsome words\n"
  problems = doc_tables.check(ROOT, {"docs/results.md": results})
  assert problems == ["docs/results.md: marker generated:results_cam is not part of a complete "
                      "block"]


def test_an_empty_block_is_filled():
  text = "<!-- generated:results_seed_noise -->\n<!-- /generated:results_seed_noise -->"
  filled = doc_tables.render(text, doc_tables.Sources(ROOT))
  body = next(doc_tables.BLOCK.finditer(filled)).group("body")
  assert body == doc_tables.results_seed_noise(doc_tables.Sources(ROOT))
  assert body.startswith("Sections 1-5: one run per configuration and fold (seed 0)")


def test_write_restores_an_edited_block():
  src = doc_tables.Sources(ROOT)
  readme = read("README.md")
  edited = readme.replace("pixel accuracy 0.9730,", "pixel accuracy 0.9731,")
  assert edited != readme
  assert doc_tables.render(edited, src) == readme


def test_write_is_idempotent():
  src = doc_tables.Sources(ROOT)
  for doc in doc_tables.DOCS:
    once = doc_tables.render(read(doc), src)
    assert doc_tables.render(once, src) == once == read(doc), doc


def test_wall_clock_is_read_from_a_time_log(tmp_path):
  log = tmp_path / "run.log"
  log.write_text("explained 4 scans (gradcam, layers ['dec0_conv1']) -> /tmp/x; 0 files failed\n"
                 "\tUser time (seconds): 198.41\n\tSystem time (seconds): 10.15\n"
                 "\tElapsed (wall clock) time (h:mm:ss or m:ss): 2:00.52\n")
  wall, cpu, scans = doc_tables.wall_clock_s(str(log))
  assert wall == pytest.approx(120.52) and cpu == pytest.approx(208.56) and scans == 4
  log.write_text("\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:02:03\n")
  assert doc_tables.wall_clock_s(str(log))[0] == pytest.approx(3723.0)
  assert doc_tables.minutes(120.52) == "2 min 1 s"


def test_spread_is_the_population_sd():
  # [1, 3]: population sd 1 (ddof=0); the sample sd would be 1.4142.
  assert doc_tables.mean_sd([1.0, 3.0]) == "2.0000 ± 1.0000"


def test_unknown_block_name_fails():
  with pytest.raises(KeyError, match="nonexistent"):
    doc_tables.render("<!-- generated:nonexistent -->\nx\n<!-- /generated:nonexistent -->",
                      doc_tables.Sources(ROOT))


def test_the_campaign_runs_folders_are_the_plans_results_dirs():
  for plan, runs in ((doc_tables.CAMPAIGN_PLAN, doc_tables.CAMPAIGN_RUNS),
                     (doc_tables.H200_PLAN, doc_tables.H200_RUNS)):
    assert json.load(open(os.path.join(ROOT, plan)))["results_dir"] == runs


def test_committed_lever_tables_are_what_their_plans_runs_give():
  """levers.json (read by the documents) is scripts/campaign_table.py's table of the committed
  runs, so a run committed without the table regenerated fails here."""
  campaign, campaign_table = load_script("campaign"), load_script("campaign_table")
  for plan, runs in ((doc_tables.CAMPAIGN_PLAN, doc_tables.CAMPAIGN_RUNS),
                     (doc_tables.H200_PLAN, doc_tables.H200_RUNS)):
    table = campaign_table.lever_table(campaign.load_plan(os.path.join(ROOT, plan)), ROOT)
    assert json.loads(json.dumps(table)) == raw(f"{runs}/levers.json"), plan
    assert campaign_table.markdown(table) == read(f"{runs}/levers.md"), plan


class _Injected(doc_tables.Sources):
  """The committed raw outputs with some JSON files replaced by given objects."""

  def __init__(self, files):
    super().__init__(ROOT)
    self._cache.update(files)


def _split(dice_wet, dice_dry, opl_onl_bias, columns=(10, 30)):
  def group(dice, bias, n):
    return {"columns": n, "pixels": 4 * n,
            "literature": {"mean_layer_dice": dice, "layer_dice": [dice] * 7},
            "geometry": {"mae_um": [2.0] * 4 + [abs(bias)] + [2.0] * 3,
                         "signed_um": [0.0] * 4 + [bias] + [0.0] * 3}}
  return {"with_fluid": group(dice_wet, opl_onl_bias, columns[0]),
          "without_fluid": group(dice_dry, 0.0, columns[1])}


def test_campaign_fluid_columns_average_the_runs_that_have_the_split():
  runs = {"fold0_seed0": {"by_fluid_columns": _split(0.70, 0.86, -10.0)},
          "fold2_seed0": {"by_fluid_columns": _split(0.80, 0.88, -4.0, (30, 10))},
          "fold1_seed0": {"mean_layer_dice": 0.85}}                  # scored before the split
  src = _Injected({doc_tables.CAMPAIGN: {"recipes": {"fcw": {"runs_detail": runs}}},
                   doc_tables.H200: {"recipes": {"old": {"runs_detail": runs | {
                       "fold0_seed0": {}, "fold2_seed0": {}}}}}})
  lines = doc_tables.results_campaign_fluid_columns(src).splitlines()
  assert len(lines) == 4                                       # header, rule, two groups
  # Without fluid: 40 of 80 columns, Dice (0.86 + 0.88) / 2; MAE (7 x 2 + 0) / 8 = 1.75.
  assert lines[2] == ("| CPU | fcw | fold0_seed0, fold2_seed0 | without fluid | 40 (50%) | "
                      "0.8700 | 0.870 | 0.870 | 1.75 | 2.00 (+0.00) | 0.00 (+0.00) |")
  # With fluid: OPL/ONL MAE (10 + 4) / 2 = 7, bias -7; mean MAE (14 + 7) / 8 = 2.62.
  assert lines[3] == ("| CPU | fcw | fold0_seed0, fold2_seed0 | with fluid | 40 (50%) | "
                      "0.7500 | 0.750 | 0.750 | 2.62 | 2.00 (+0.00) | 7.00 (-7.00) |")
  none = _Injected({doc_tables.CAMPAIGN: {"recipes": {}}, doc_tables.H200: {"recipes": {}}})
  assert doc_tables.results_campaign_fluid_columns(none).startswith("No campaign run")


FOLD_MODEL_RECIPE = "plateau_80_fluid_skip_wh_ema"    # pretrained/'s members until 2026-12-07


class _FoldModels(_Injected):
  """The committed raw outputs with pretrained/ read from `root`: the ensemble of fold models,
  each held out on its own pair, that pretrained/ held until 2026-12-07 (git 09dea45), so that
  the documents' branch for members that are their own held-out models stays tested."""

  def __init__(self, root, files=None):
    super().__init__(files or {})
    self._pretrained = str(root)

  def path(self, rel: str) -> str:
    if rel == "pretrained" or rel.startswith("pretrained/"):
      return os.path.join(self._pretrained, rel)
    return super().path(rel)


@pytest.fixture(scope="module")
def fold_models(tmp_path_factory):
  """_FoldModels over that pretrained/ rebuilt from its members' committed campaign outputs
  (config, split and log, as packaged; the kept epoch as an empty checkpoint folder), with the
  settings it shipped and its members' CAM evidence (scripts/cam_evidence.py on CAM_CHOICE); a
  factory of Sources with some JSON files replaced."""
  root = tmp_path_factory.mktemp("fold_models")
  members = []
  for k in range(4):
    run = f"{doc_tables.CAMPAIGN_RUNS}/{FOLD_MODEL_RECIPE}/fold{k}_seed0"
    member = root / "pretrained" / "members" / f"fold{k}_seed0"
    (member / "best" / str(raw(f"{run}/metrics.json")["checkpoint_epoch"])).mkdir(parents=True)
    for name in ("config.json", "split.json", "log.csv"):
      (member / name).write_text(read(f"{run}/{name}"))
    members.append(f"members/fold{k}_seed0")
  evidence = load_script("cam_evidence").evidence_file(os.path.join(ROOT, doc_tables.CAM_CHOICE))
  evidence["source"] = [os.path.relpath(f, ROOT) for f in evidence["source"]]
  (root / "pretrained" / "cam_evidence.json").write_text(json.dumps(evidence))
  (root / "pretrained" / "ensemble.json").write_text(json.dumps({
      "members": members, "flip": False,
      "sources": [f"/work/campaign/runs/{FOLD_MODEL_RECIPE}/{os.path.basename(m)}"
                  for m in members],
      "settings": {"predict.smooth_sd_columns": 6.0, "predict.uncertain_position_sd_um": 9.0,
                   "explain.method": "gradcam", "explain.layers": ["enc3_conv1"]}}))
  return lambda files=None: _FoldModels(root, files)


def test_the_fold_model_ensemble_is_read_as_its_own_held_out_models(fold_models):
  src = fold_models()
  members = doc_tables.shipped_members(src)
  assert not doc_tables.stand_ins(members)
  assert [m["workdir"] for m in doc_tables.held_out_models(src)] == [
      f"pretrained/members/fold{k}_seed0" for k in range(4)]
  assert [m["best"] for m in members] == [76, 80, 64, 79]        # pretrained/README's table


def test_shipped_members_cam_evidence_is_of_the_members_and_names_the_failing_class(fold_models):
  """The README's CAM choice and the fold members' record are refused when a fold's run
  explained another model;
  the README sentence names the classes whose pooled MoRF area is not below random, and is
  refused when pretrained/'s CAM does not rank first on the evidence that chose it."""
  rel = f"{doc_tables.CAM_CHOICE}/fold1/compare_cams.json"
  other = raw(rel) | {"workdir": "/somewhere/else/fold1_seed0"}
  with pytest.raises(ValueError, match="none explained exactly pretrained/'s held-out models"):
    doc_tables.readme_explain(fold_models({rel: other}))
  with pytest.raises(ValueError, match="not the 4 fold members pretrained/members/fold0_seed0"):
    doc_tables.results_cam_heldout_shipped_6scans(fold_models({rel: other}))
  src = fold_models()
  method, layers = doc_tables.shipped_cam(src)
  found = doc_tables.heldout_evidence(doc_tables.heldout_runs(src, doc_tables.CAM_CHOICE))
  failing = [doc_tables.LAYER_NAMES[k] for k, ok in enumerate(found[method][layers]["passed"])
             if k and not ok]
  text = doc_tables.readme_explain(src)
  assert (f"; not {doc_tables.and_list(failing)})" in text) if failing else "; not " not in text
  # Every fold's map of pretrained/'s CAM made no better than random for 3 classes (MoRF area
  # 9 > random): it falls behind a candidate, and the sentence is refused.
  files = {}
  for f in range(4):
    path = f"{doc_tables.CAM_CHOICE}/fold{f}/compare_cams.json"
    run = json.loads(json.dumps(raw(path)))
    for k in (1, 2, 3):
      run["methods"][method]["layers"][layers]["morf_mean"][k] = 9.0
    files[path] = run
  with pytest.raises(ValueError, match="not the first by the rule of docs/results.md"):
    doc_tables.readme_explain(fold_models(files))


def test_the_shipped_explain_run_must_be_of_todays_members_and_cam():
  """results_cam_shipped refuses a cam_stats.json of other members or another CAM."""
  rel = f"{doc_tables.SHIPPED_EXPLAIN}/cam_stats.json"
  stats = raw(rel)
  assert doc_tables.results_cam_shipped(_Injected({})).startswith("On the shipped ensemble")
  others = [m.replace("all_seed", "fold") for m in stats["settings"]["member_workdirs"]]
  layer = "enc3_conv1" if stats["settings"]["layers"] != ["enc3_conv1"] else "dec2_conv1"
  for settings in ({"member_workdirs": others}, {"layers": [layer]}):
    changed = json.loads(json.dumps(stats))
    changed["settings"] |= settings
    with pytest.raises(ValueError, match="not an explain run of pretrained/'s members"):
      doc_tables.results_cam_shipped(_Injected({rel: changed}))


def test_explain_cost_reports_are_read_with_their_cpu_pairs_and_medians(tmp_path):
  """explain_cost_runs on a hand-written explain_vs_predict.sh report: date, CPU and cores,
  pairs counted, what it explained, the median column and the load averages."""
  _write(tmp_path, f"{doc_tables.EXPLAIN_COST}/x.txt", "\n".join([
      "workdir: pretrained; scans: ...; explain flags: none; jax 0.10.2",
      "load average before: 1.50 2.00 2.50",
      "farm-bench 3 | 2026-12-06, 4c/24GiB | Intel(R) Xeon(R) Processor | not pinned | x",
      "runs counted: A 4, B 4, in turn (A B A B ...); warm-up runs asked for, not counted: 1",
      "                     min      median         max   n: A 4, B 4; whole process",
      "A wall s          27.570      30.274      32.418",
      "B wall s          11.544      12.171      13.092",
      "A/B wall          2.1059      2.5133      2.7700",
      "load average after: 1.46 1.89 2.62",
      "explained: gradcam at enc3_conv1"]))
  (run,) = doc_tables.explain_cost_runs(doc_tables.Sources(str(tmp_path)))
  assert run == {"date": "2026-12-06", "cpu": "Intel(R) Xeon(R) Processor (4 cores)", "pairs": 4,
                 "flags": "none", "explained": ("gradcam", "enc3_conv1"),
                 "medians": {"A wall s": 30.274, "B wall s": 12.171, "A/B wall": 2.5133},
                 "loads": ["1.50", "1.46"]}


def test_the_readme_refuses_a_shipped_cam_over_the_cost_budget_or_untimed(monkeypatch):
  src = doc_tables.Sources(ROOT)
  monkeypatch.setattr(doc_tables, "explain_cost_of", lambda src, m, l: {"A/B wall": 3.2})
  with pytest.raises(ValueError, match="costs 3.20x predict, over the budget of 3.0x"):
    doc_tables.readme_explain(src)
  monkeypatch.setattr(doc_tables, "explain_cost_of", lambda src, m, l: None)
  with pytest.raises(ValueError, match="no benchmarks/explain_vs_predict.sh run of"):
    doc_tables.readme_explain(src)


def test_shipped_smoothing_needs_a_cross_validation_of_the_members_that_chose_it(fold_models):
  """pretrained/'s smoothing sd must be the one its members' own leave-one-fold-out chose
  (SMOOTHING/cv.json, whose unsmoothed scores must be the members' committed ones), and the
  expected accuracy adds the gain on 2-model averages holding a member (cv_pairs.json), by
  hand: the mean of the pooled per-fold gains."""
  spec = fold_models().json("pretrained/ensemble.json")
  cv, pairs = (raw(f"{doc_tables.SMOOTHING}/{n}") for n in ("cv.json", "cv_pairs.json"))
  src = fold_models()
  members = doc_tables.held_out_models(src)
  got = doc_tables.shipped_smoothing(src, spec, members)
  recipe = FOLD_MODEL_RECIPE
  own = cv["sets"][recipe]["cv"]["per_fold"]
  gains = [s["cv"]["per_fold"][name]["gain"] for s in pairs["sets"].values()
           for name, fold in s["folds"].items()
           if any(m.startswith("pretrained/members/") for m in fold["members"])]
  assert got["sd"] == spec["settings"]["predict.smooth_sd_columns"]
  assert got["member_gains"] == [own[f"fold{k}_seed0"]["gain"] for k in range(4)]
  assert got["member_sds"] == [own[f"fold{k}_seed0"]["sd"] for k in range(4)]
  assert got["ensemble_gain"] == pytest.approx(sum(gains) / len(gains), rel=1e-12)
  assert doc_tables.shipped_smoothing(src, spec | {"settings": {}}, members) is None
  other = spec | {"settings": {"predict.smooth_sd_columns": 12.0}}
  with pytest.raises(ValueError, match="smooths with sd 12 columns, but"):
    doc_tables.shipped_smoothing(src, other, members)
  moved = json.loads(json.dumps(cv))
  for fold in moved["sets"][recipe]["folds"].values():
    fold["workdir"] = fold["workdir"].replace("pretrained/", "elsewhere/")
  with pytest.raises(ValueError, match="no cross-validation of its held-out models"):
    doc_tables.shipped_smoothing(fold_models({f"{doc_tables.SMOOTHING}/cv.json": moved}), spec,
                                 members)
  stale = json.loads(json.dumps(cv))
  fold1 = stale["sets"][recipe]["folds"]["fold1_seed0"]["by_sd"]["0"]
  fold1["mean_layer_dice"] += 0.9 * doc_tables.SCORE_DRIFT      # allowed stand-ins, not members
  with pytest.raises(ValueError, match="fold1_seed0 scores .* unsmoothed, not its committed"):
    doc_tables.shipped_smoothing(fold_models({f"{doc_tables.SMOOTHING}/cv.json": stale}), spec,
                                 members)
  fold1["mean_layer_dice"] = 0.5
  with pytest.raises(ValueError, match="fold1_seed0 scores 0.5000 unsmoothed, not its committed"):
    doc_tables.shipped_smoothing(fold_models({f"{doc_tables.SMOOTHING}/cv.json": stale}), spec,
                                 members)


def test_evidence_of_the_held_out_models_found_twice_is_refused(fold_models):
  """evidence_set: the members' smoothing set copied into the validation-free file makes two
  candidates for one setting, refused by name rather than one taken at random."""
  members = doc_tables.held_out_models(fold_models())
  cv = raw(f"{doc_tables.SMOOTHING}/cv.json")
  twice = fold_models({f"{doc_tables.VALIDATION_FREE_SETTINGS}/smoothing_cv.json": cv})
  with pytest.raises(ValueError, match="smoothing_cv.json: 2 sets of pretrained/'s held-out"):
    doc_tables.evidence_set(twice, doc_tables.SMOOTHING_EVIDENCE, members,
                            doc_tables.smoothing_set_models)


def test_stand_ins_count_their_own_smoothing_gain_read_where_they_were_scored():
  """For held-out models that stand for members trained on every subject (the noval fold
  models), shipped_smoothing finds their set in the validation-free evidence and counts their
  own leave-one-fold-out gain (no 2-member pairs: the averaging gain is read smoothed); their
  fold 0 scores 1.8e-4 above its committed run there (132dc96's band), within SCORE_DRIFT."""
  runs = f"{doc_tables.CAMPAIGN_RUNS}/plateau_80_fluid_skip_wh_ema_noval"
  models = [{"workdir": raw(f"{runs}/fold{k}_seed0/metrics.json")["workdir"],
             "metrics": raw(f"{runs}/fold{k}_seed0/metrics.json")} for k in range(4)]
  cv = raw(f"{doc_tables.VALIDATION_FREE_SETTINGS}/smoothing_cv.json")["sets"]["noval"]["cv"]
  got = doc_tables.shipped_smoothing(_Injected({}), {"settings": {
      "predict.smooth_sd_columns": cv["chosen_sd"]}}, models, others=True)
  assert got == {"sd": cv["chosen_sd"], "pair_gains": [], "pairs_share_folds": False,
                 "member_gains": [v["gain"] for v in cv["per_fold"].values()],
                 "member_sds": [v["sd"] for v in cv["per_fold"].values()],
                 "ensemble_gain": cv["mean_gain"]}


def _eval_metrics(rho, name="ens_fold0", flagged=None, columns=100, mae=(9.04, 5.55), sd=6.0,
                  threshold=7.74, ece=(0.01, 0.004)):
  """An ensemble eval's metrics.json as the uncertainty tables read it: the pooled rank
  correlation, the ECE (over the band, over all pixels) and, with `flagged`, the uncertain
  flag's split."""
  cal = {"uncertainty_vs_error": {"pooled": {"rho": rho, "pairs": 10}},
         "band": {"ece": ece[0]}, "ece": ece[1]}
  if flagged is not None:
    cal["uncertain_columns"] = {"threshold_um": threshold, "columns": columns,
                                "flagged": flagged, "mae_flagged_um": mae[0],
                                "mae_unflagged_um": mae[1]}
  return {"workdir": f"/x/{name}", "topology": {"smooth_sd_columns": sd}, "calibration": cal}


def test_uncertainty_smoothing_rows_pair_before_and_after_per_fold():
  """Hand-built metrics: each fold's row takes rho from its before and after runs and the flag
  split from the after run alone."""
  folder = doc_tables.UNCERTAINTY_SMOOTHING
  files = {f"{folder}/before/fold0/metrics.json": _eval_metrics(0.1),
           f"{folder}/after/fold0/metrics.json": _eval_metrics(0.25, flagged=7),
           f"{folder}/before/fold1/metrics.json": _eval_metrics(0.3),
           f"{folder}/after/fold1/metrics.json": _eval_metrics(0.2, flagged=3)}
  rows = doc_tables.results_uncertainty_smoothing(_Injected(files)).splitlines()[2:]
  assert rows == ["| ens_fold0 (sd 6 columns) | 0.100 | 0.250 | 7 of 100 (over 7.74 um) | 9.0 | "
                  "5.5 |", "| ens_fold0 (sd 6 columns) | 0.300 | 0.200 | 3 of 100 (over 7.74 um) "
                  "| 9.0 | 5.5 |"]


def test_pretrained_uncertainty_counts_only_runs_of_the_shipped_recipe_as_shipped(fold_models):
  """The pretrained/README sentence, hand-computed from two hand-built runs of the shipped
  recipe (its seeds read from the members' run names); a run of another recipe, with another
  smoothing, flip or flag threshold than the shipped ones is left out."""
  folder, ensembles = doc_tables.SHIPPED_CALIBRATION, doc_tables.ENSEMBLES
  recipe = FOLD_MODEL_RECIPE
  def run(name, flagged, mae, rho, sd=6.0, threshold=7.74, ece=(0.0121, 0.0054)):
    return _eval_metrics(rho, name, flagged, 200, mae, sd, threshold, ece)
  def files(after1, members1=f"{recipe}/fold1", flip1=False):
    return {f"{folder}/fold0/metrics.json": run("e0", 6, (8.04, 5.55), 0.19),
            f"{folder}/fold1/metrics.json": after1,
            f"{ensembles}/e0/ensemble.json": {"flip": False, "members": [
                f"/r/{recipe}/fold0_seed0", f"/r/{recipe}/fold0_seed1"]},
            f"{ensembles}/e1/ensemble.json": {"flip": flip1, "members": [
                f"/r/{members1}_seed0", f"/r/{members1}_seed2"]},
            **other_recipe(2), **other_recipe(3)}
  def other_recipe(fold):        # the committed folds 2-3 replaced by another recipe's runs
    return {f"{folder}/fold{fold}/metrics.json": run(f"e{fold}", 1, (1, 1), 0.1),
            f"{ensembles}/e{fold}/ensemble.json": {"flip": False, "members": [
                f"/r/other/fold{fold}_seed0", f"/r/other/fold{fold}_seed1"]}}
  text = doc_tables.pretrained_uncertainty(fold_models(files(
      run("e1", 8, (10.6, 5.8), 0.163, ece=(0.0092, 0.0041)))))
  assert text == (
      f"How well the flag finds errors on eyes the models never saw (2 folds: the seed 0 and 1 "
      f"and 2 models of `{recipe}` averaged, scored by eval as shipped; docs/results.md section "
      "7): 3.0-4.0% of the measured columns are flagged (spread over 7.74 um), with a mean "
      "absolute boundary error of 8.0-10.6 um in them against 5.5-5.8 um in the others; the "
      "spread ranks single errors only weakly (Spearman's rho 0.16-0.19 over column and "
      "boundary). Expected calibration error of the top-class confidence (15 bins): "
      "0.0092-0.0121 over the pixels of the model's input band, 0.0041-0.0054 over all labelled "
      "pixels (the rows outside the band count as certain background)." + doc_tables.
      ensemble_flag_recall(fold_models()) + doc_tables.single_member_flag(fold_models()))
  for other in (files(run("e1", 8, (1, 1), 0.1), members1="other/fold1"),
                files(run("e1", 8, (1, 1), 0.1, sd=0.0)), files(run("e1", 8, (1, 1), 0.1),
                                                               flip1=True),
                files(run("e1", 8, (1, 1), 0.1, threshold=5.0))):
    assert "(1 fold: the seed 0 and 1 models" in doc_tables.pretrained_uncertainty(
        fold_models(other))


def test_the_ensemble_flag_recall_sentence_by_hand(fold_models):
  """From a hand-built cv.json: two folds at the shipped threshold (7.74 um), one at another
  threshold (left out), one of them flagging nothing (precision null)."""
  def fold(t, recall, precision):
    return {"threshold_um": t, "recall": recall, "precision": precision}
  cv = {"sets": {"seed_ensembles": {"flags": {"uncertain": {"wrong_um": 7.74, "current": {
      "a": fold(7.74, 0.1, 0.5), "b": fold(7.74, 0.0, None), "c": fold(5.0, 0.9, 0.9)}}}}}}
  text = doc_tables.ensemble_flag_recall(fold_models({f"{doc_tables.FLAG_THRESHOLD}/cv.json": cv}))
  assert text == (" Read as a search for the columns whose boundaries are off by more than 7.74 um"
                  " on average (2 folds of 2-member seed ensembles, docs/results.md section 7), "
                  "that flag found 0-10% of them (recall), and 50% of the columns it flagged "
                  "were off (precision): its threshold, 2 Duke axial pixels, was set by hand, not "
                  "chosen on held-out eyes, and it is sparing.")
  none = {"sets": {"members": {"flags": {}}}}
  assert doc_tables.ensemble_flag_recall(
      fold_models({f"{doc_tables.FLAG_THRESHOLD}/cv.json": none})) == ""


def test_the_single_member_flag_sentence_reads_its_cross_validation_by_hand(fold_models):
  """pretrained_uncertainty's members=1 sentence from a hand-built cv.json over exactly the
  shipped members (3 folds read, one flagging nothing: its precision is null); refused where
  the threshold chosen, the members or their smoothing are not the shipped ones."""
  spec = fold_models().json("pretrained/ensemble.json")
  members = {f"fold{i}": os.path.normpath(f"pretrained/{m}")
             for i, m in enumerate(spec["members"])}
  def held(t, share, recall, precision, wrong, mae):
    return {"held_out": {"threshold_um": t, "flagged_share": share, "recall": recall,
                         "precision": precision, "wrong_share": wrong, "mae_flagged_um": mae,
                         "mae_unflagged_um": 4.0}}
  per_fold = {"fold0": held(9.0, 0.20, 0.5, 0.3, 0.10, 8.0),
              "fold1": held(8.5, 0.10, 0.7, 0.4, 0.20, 12.0),
              "fold2": held(9.0, 0.0, 0.0, None, 0.15, None)}     # nothing flagged: no ratio
  def cv(chosen, names=members, smoothing=spec["settings"]["predict.smooth_sd_columns"]):
    return {"sets": {"m": {"workdirs": names, "smooth_sd_columns": {f: smoothing for f in names},
                           "flags": {"position_sd": {"wrong_um": 7.74, "cv": {
                               "chosen_um": chosen, "per_fold": per_fold}}}}}}
  shipped = spec["settings"]["predict.uncertain_position_sd_um"]
  text = doc_tables.single_member_flag(fold_models({f"{doc_tables.FLAG_THRESHOLD}/cv.json":
                                                  cv(shipped)}))
  assert (f"exceeds {shipped:g} um (`predict.uncertain_position_sd_um`), the threshold with "
          "the best F1 of finding the columns whose boundaries are off by more than 7.74 um (2 "
          "rows) on average, chosen on the 3 members (each on its own held-out subjects; chosen "
          "on the "
          "other 2 folds, each fold's threshold was 8.5-9 um): on the fold left out it flagged "
          "0-20% of the measured columns and found 0-70% of those that were off (recall; "
          "10-20% of the columns were), and 30-40% of the flagged columns were off (precision), "
          "with a mean absolute boundary error of 8.0-12.0 um in them against 4.0 um in the "
          "others") in text
  for wrong in (cv(shipped + 1), cv(shipped, dict(list(members.items())[:3])),
                cv(shipped, smoothing=0.0)):
    with pytest.raises(ValueError, match="no cross-validation of its held-out models .scored with"):
      doc_tables.single_member_flag(fold_models({f"{doc_tables.FLAG_THRESHOLD}/cv.json": wrong}))


def test_the_default_cam_is_placed_against_the_candidates_above_it_by_hand():
  default = doc_tables.default_cam()
  ranked = [((7, 4, 20, -0.01), "hirescam", "dec2_conv1"),       # ahead on the first key
            ((6, 5, 23, -0.04), "gradcam", "dec3_conv1"),        # ahead on the later keys
            ((6, 4, 20, -0.03), "gradcam", "enc3_conv1"),        # tied on every key
            ((6, 4, 20, -0.03), default[0], default[1])]         # the default, at place 4
  place = doc_tables.place_of(ranked, default)
  assert place == 4
  assert doc_tables.leaders(ranked, place) == [ranked[0]]
  assert doc_tables.ranked_above(ranked, place) == (
      " Above it on the rule's first key: HiResCAM at `dec2_conv1` (7 of 7 pooled, the default "
      "6). 1 candidate above it only on the later keys (worst fold, fold passes, similarity). "
      "1 candidate tied with it on every key.")
  assert doc_tables.ranked_above(ranked[3:], 1) == ""


def test_lead_text_counts_the_candidates_tied_on_the_first_two_keys_by_hand():
  ranked = [((6, 5, 24, -0.02), "gradcam", "enc3_conv1"),
            ((6, 5, 24, -0.06), "hirescam", "enc3_conv1"),
            ((6, 5, 22, -0.03), "hirescam", "dec3_conv1"),
            ((6, 4, 22, -0.04), "gradcam", "dec3_conv1")]       # behind on the worst fold
  assert doc_tables.lead_text(ranked) == (
      "2 candidates tie with the first on the rule's first two keys (classes pooled, worst "
      "fold), with 22-24 fold passes against its 24.")
  assert doc_tables.lead_text(ranked[:1] + ranked[3:]) == \
      "The first leads on the rule's first two keys."


def _curve_sources(complete: bool):
  """A learning curve 'few' (4 training subjects) against 'full' (6) on folds 0 and 1 (fold 1
  of 'few' only when `complete`), with their split.json files."""
  def run(dice, inl, opl, mae, selection, split=None):
    layers = [dice] * 7
    layers[2:4] = [inl, opl]
    return {"mean_layer_dice": dice, "layer_dice": layers, "boundary_mae_um": mae,
            "selection_gain": selection} | ({"by_fluid_columns": split} if split else {})
  few = {"fold0_seed0": run(0.80, 0.70, 0.68, 7.5, 0.002, _split(0.70, 0.85, 0.0)),
         "fold0_seed1": run(0.70, 0.70, 0.68, 7.5, 0.0)}           # a seed-1 run: not read
  if complete:
    few["fold1_seed0"] = run(0.82, 0.75, 0.74, 7.0, 0.0)           # scored before the split
  full = {"fold0_seed0": run(0.83, 0.74, 0.70, 7.0, 0.001, _split(0.74, 0.86, 0.0)),
          "fold0_seed1": run(0.826, 0.74, 0.70, 7.0, 0.0),
          "fold1_seed0": run(0.84, 0.76, 0.75, 6.5, 0.0),
          "fold1_seed1": run(0.845, 0.76, 0.75, 6.5, 0.0)}
  # campaign_table's paired gains: the recipe (few) minus the one it is read against (full).
  gains = {k: few[k]["mean_layer_dice"] - full[k]["mean_layer_dice"] for k in few}
  files = {doc_tables.CAMPAIGN: {
      "comparisons": [{"recipe": "few", "against": "full", "kind": "learning_curve",
                       "folds_needed": [0, 1], "complete": complete, "paired_gains": gains}],
      "recipes": {"few": {"runs_detail": few},
                  "full": {"runs_detail": full, "seed_gaps": [0.004, 0.005]}}}}
  for recipe, train in (("few", ([5, 6, 7, 8], [1, 2, 7, 8])), ("full", ([3, 4, 5, 6, 7, 8],
                                                                          [1, 2, 5, 6, 7, 8]))):
    for fold, subjects in enumerate(train):
      files[f"{doc_tables.CAMPAIGN_RUNS}/{recipe}/fold{fold}_seed0/split.json"] = {
          "train": {"subjects": subjects}, "val": {"subjects": [2 * fold + 1, 2 * fold + 2]}}
  return _Injected(files)


def test_the_learning_curve_pairs_each_fold_and_reads_the_gap_by_hand():
  lines = doc_tables.results_learning_curve(_curve_sources(complete=True)).splitlines()
  assert lines[0].startswith("| fold | validation subjects | trained on (4 subjects) | "
                             "trained on (6 subjects) | Dice, 4 subjects | Dice, 6 subjects |")
  # Fold 0: gap 0.83 - 0.80; INL 0.74 - 0.70, OPL 0.70 - 0.68; dry 0.86 - 0.85, wet 0.74 - 0.70.
  assert lines[2] == ("| 0 | 1, 2 | 5, 6, 7, 8 | 3, 4, 5, 6, 7, 8 | 0.8000 | 0.8300 | +0.0300 | "
                      "+0.0400 | +0.0200 | +0.0100 | +0.0400 | +0.0020 / +0.0010 | 7.50 / 7.00 |")
  assert lines[3] == ("| 1 | 3, 4 | 1, 2, 7, 8 | 1, 2, 5, 6, 7, 8 | 0.8200 | 0.8400 | +0.0200 | "
                      "+0.0100 | +0.0100 | n/a | n/a | +0.0000 / +0.0000 | 7.00 / 6.50 |")
  assert len(lines) == 6                                   # header, rule, 2 folds, blank, text
  # Mean gap 0.025 > noise (0.004 + 0.005) / 2; forward 0.025 ln(8/6) / ln(6/4) = 0.01774.
  reading = lines[-1]
  assert reading.startswith("Mean gap over the 2 folds **+0.0250**, against the seed noise "
                            "0.0045 of full")
  assert "beyond it, so the recipe is data-limited" in reading
  assert "training on 8 subjects instead of 6 would add about +0.0177" in reading
  noisy = _curve_sources(complete=True)
  noisy.json(doc_tables.CAMPAIGN)["recipes"]["full"]["seed_gaps"] = [0.02, 0.04]    # noise 0.03
  text = doc_tables.results_learning_curve(noisy)
  assert "within it, so from 4 to 6 training subjects the recipe is not measurably " \
      "data-limited, and there is no slope to read forward." in text
  assert "would add" not in text


def test_the_learning_curve_waits_for_every_fold_and_says_when_none_has_run():
  text = doc_tables.results_learning_curve(_curve_sources(complete=False))
  assert text.endswith("1 of 2 folds have run; the reading waits for all of them (mean gap so "
                       "far +0.0300).")
  none = _Injected({doc_tables.CAMPAIGN: {"comparisons": [
      {"recipe": "few", "against": "full", "kind": "learning_curve"}],
      "recipes": {"few": {"runs_detail": {}}, "full": {"runs_detail": {}}}}})
  assert doc_tables.results_learning_curve(none) == (
      f"No fold of few has finished yet (queued in {doc_tables.CAMPAIGN_PLAN}).")


def test_a_learning_curve_is_not_counted_among_the_recipes_pretrained_was_chosen_from():
  recipes = {"a": {"runs": 2, "kind": "lever"}, "b": {"runs": 0, "kind": "lever"},
             "curve": {"runs": 1, "kind": "learning_curve"},
             "noval": {"runs": 3, "kind": "validation_free"}}
  src = _Injected({doc_tables.CAMPAIGN: {"recipes": recipes},
                   doc_tables.H200: {"recipes": {"c": {"runs": 4, "kind": "lever"}}}})
  assert doc_tables.screened_recipes(src) == 2                       # a and c


def _validation_free_sources(complete: bool, mine_fold1: float = 0.835, scored_fold0=("1", "2"),
                             curve: bool = True):
  """'nv' (no validation pair, kind validation_free) against 'with' on folds 0 and 1 (fold 1
  of 'nv' only when `complete`), with their split.json files and nv's metrics.json; with
  `curve`, a learning curve 'few' read against 'with' too."""
  def run(dice, inl, opl, mae, kept, last):
    layers = [dice] * 7
    layers[2:4] = [inl, opl]
    return {"mean_layer_dice": dice, "layer_dice": layers, "boundary_mae_um": mae,
            "selected_epoch": kept, "last_epoch": last}
  mine = {"fold0_seed0": run(0.826, 0.75, 0.69, 7.2, 80, 80)}
  if complete:
    mine["fold1_seed0"] = run(mine_fold1, 0.76, 0.74, 6.6, 78, 80)
  other = {"fold0_seed0": run(0.830, 0.74, 0.70, 7.0, 76, 80),
           "fold1_seed0": run(0.840, 0.76, 0.75, 6.5, 80, 80)}
  gains = {k: mine[k]["mean_layer_dice"] - other[k]["mean_layer_dice"] for k in mine}
  # The curve 'few' (4 subjects) against 'with': gaps 0.03 and 0.02 (its paired gains, negated).
  lc = {"recipe": "few", "against": "with", "kind": "learning_curve", "complete": True,
        "folds_needed": [0, 1], "paired_gains": {"fold0_seed0": -0.03, "fold1_seed0": -0.02}}
  files = {doc_tables.CAMPAIGN: {
      "comparisons": ([lc] if curve else []) + [
          {"recipe": "nv", "against": "with", "kind": "validation_free", "folds_needed": [0, 1],
           "complete": complete, "paired_gains": gains}],
      "recipes": {"few": {"runs_detail": {"fold0_seed0": {}, "fold1_seed0": {}}},
                  "nv": {"runs_detail": mine, "kind": "validation_free"},
                  "with": {"runs_detail": other, "seed_gaps": [0.004, 0.006]}}}}
  files[f"{doc_tables.CAMPAIGN_RUNS}/few/fold0_seed0/split.json"] = {"train": {
      "subjects": [5, 6, 7, 8]}}
  for fold, width in ((0, 560), (1, 544)):
    pair = [2 * fold + 1, 2 * fold + 2]
    files[f"{doc_tables.CAMPAIGN_RUNS}/with/fold{fold}_seed0/split.json"] = {
        "val": {"subjects": pair}, "train": {"subjects": [1, 2, 3, 4, 5, 6]},
        "input_shape": [224, 560]}
    files[f"{doc_tables.CAMPAIGN_RUNS}/nv/fold{fold}_seed0/split.json"] = {
        "input_shape": [224, width]}
    scored = scored_fold0 if fold == 0 else ("3", "4")
    files[f"{doc_tables.CAMPAIGN_RUNS}/nv/fold{fold}_seed0/metrics.json"] = {
        "per_subject_mean_layer_dice": {n: 0.8 for n in scored}}
  return _Injected(files)


def test_training_without_a_validation_pair_is_paired_by_fold_and_read_by_its_rule(fold_models):
  """results_validation_free's table and reading by hand, the README's clause of the same
  verdict (nothing while folds or the seed noise are missing), and the refusals."""
  lines = doc_tables.results_validation_free(_validation_free_sources(True)).splitlines()
  assert lines[0].startswith("| fold | held-out subjects | Dice, nv | Dice, with | difference |")
  # Fold 0: 0.826 - 0.830; INL 0.75 - 0.74; OPL 0.69 - 0.70; widths 560 and 560.
  assert lines[2] == ("| 0 | 1, 2 | 0.8260 | 0.8300 | -0.0040 | +0.0100 | -0.0100 | 80 of 80 | "
                      "76 of 80 | 7.20 / 7.00 | 560 / 560 |")
  assert lines[3] == ("| 1 | 3, 4 | 0.8350 | 0.8400 | -0.0050 | +0.0000 | -0.0100 | 78 of 80 | "
                      "80 of 80 | 6.60 / 6.50 | 544 / 560 |")
  # Mean difference -0.0045 is above minus the noise (0.004 + 0.006) / 2 = 0.005, and with the
  # curve's step (mean gap 0.025 > noise: 0.025 ln(8/6) / ln(6/4) = 0.0177) the net is +0.0132.
  assert lines[-1] == ("Mean difference over the 2 folds **-0.0045** (tolerance: minus the seed "
                       "noise 0.0050 of with); with the learning curve's step to 8 subjects "
                       "(+0.0177, an extrapolation) the expected net change is +0.0132: by the "
                       "rule above the members trained on all 8 subjects replace pretrained/'s "
                       "(no loss beyond the tolerance and an extrapolated net gain, not a "
                       "measured one).")
  worse = doc_tables.results_validation_free(_validation_free_sources(True, mine_fold1=0.830))
  assert worse.endswith("**-0.0070** (tolerance: minus the seed noise 0.0050 of with); with the "
                        "learning curve's step to 8 subjects (+0.0177, an extrapolation) the "
                        "expected net change is +0.0107: by the rule above pretrained/ keeps "
                        "its fold models.")
  no_curve = doc_tables.results_validation_free(_validation_free_sources(True, curve=False))
  assert no_curve.endswith("(+0.0000, an extrapolation) the expected net change is -0.0045: by "
                           "the rule above pretrained/ keeps its fold models.")
  clause = (" Trained without a validation pair, as a model of all 8 subjects must be, `with` "
            "changes by -0.0045 mean layer Dice on the same held-out pairs (2 folds; tolerance "
            "-0.0050), so pretrained/'s members are {}trained on all 8 subjects (section 11).")
  passed = _validation_free_sources(True)
  before = fold_models(dict(passed._cache))               # pretrained/ before the rebuild
  assert doc_tables.stand_ins(doc_tables.shipped_members(passed))   # today's pretrained/
  assert doc_tables.validation_free_clause(passed) == clause.format("")
  assert doc_tables.validation_free_clause(before) == clause.format("to be ")
  failed = _validation_free_sources(True, mine_fold1=0.830)
  assert doc_tables.validation_free_clause(fold_models(dict(failed._cache))).endswith(
      "by -0.0070 mean layer Dice on the same held-out pairs (2 folds; tolerance -0.0050), so "
      "pretrained/ keeps its fold models (section 11).")
  with pytest.raises(ValueError, match="holds members trained on every subject, but section 11"):
    doc_tables.validation_free_clause(failed)                # today's all-8 pretrained/
  assert doc_tables.validation_free_clause(_validation_free_sources(False)) == ""
  waiting = doc_tables.results_validation_free(_validation_free_sources(False))
  assert waiting.endswith("1 of 2 folds have run; the reading waits for all of them (mean "
                          "difference so far -0.0040).")
  with pytest.raises(SystemExit, match="nv/fold0_seed0 scored subjects \\[1, 3\\], not with's"):
    doc_tables.results_validation_free(_validation_free_sources(True, scored_fold0=("1", "3")))
  src = _validation_free_sources(True)                  # 'with' has run no fold twice
  t = src.json(doc_tables.CAMPAIGN)
  t["recipes"]["with"]["seed_gaps"] = []
  wait = "The reading waits for the seed noise of with: no fold of it has run with two seeds yet."
  assert doc_tables.results_validation_free(src).endswith("\n\n" + wait)
  assert doc_tables.curve_reading(t, t["comparisons"][0], [0.03, 0.02], (4, 6)) == wait
  assert doc_tables.validation_free_clause(src) == ""


def test_settings_chosen_again_without_a_validation_pair_stand_beside_the_shipped_ones(tmp_path):
  """results_validation_free_settings by hand: the smoothing sd and flag threshold chosen on
  the validation-free fold models beside pretrained/'s settings; 'Not run yet' before."""
  folder = doc_tables.VALIDATION_FREE_SETTINGS
  smooth = {"provenance": {"git": {"commit": "abcdef0123"}}, "sets": {"noval": {"cv": {
      "per_fold": {"f0": {"sd": 6.0, "gain": 0.002}, "f1": {"sd": 4.0, "gain": 0.001}},
      "mean_gain": 0.0015, "chosen_sd": 6.0}}}}
  flag = {"sets": {"noval": {"flags": {"position_sd": {"cv": {
      "chosen_um": 8.0, "held_out_mean": {"f1": 0.414}}}}}}}
  shipped = {"settings": {"predict.smooth_sd_columns": 6.0,
                          "predict.uncertain_position_sd_um": 9.0}}
  src = _Injected({f"{folder}/smoothing_cv.json": smooth, "pretrained/ensemble.json": shipped,
                   f"{folder}/flag_threshold_cv.json": flag})
  assert doc_tables.results_validation_free_settings(src) == (
      f"Chosen again on the 2 validation-free fold models, each on its held-out pair "
      f"(`{folder}/run.sh` at abcdef0, the shared 2-core CPU): boundary smoothing sd **6** "
      "columns (pretrained/ ships 6; chosen on the other folds: 6, 4), with a leave-one-fold-"
      "out gain of +0.0015 mean layer Dice; a single model's position-sd flag at **8 um** "
      "(pretrained/ ships 9 um), held-out F1 0.41 with each fold's threshold chosen on the "
      "other folds.")
  shipped["settings"] |= {"predict.uncertain_um": 0.0, "predict.uncertain_position_sd_um": 9.5}
  assert ("(pretrained/ ships 9.5 um, its ensemble's, which flags by the position sd, chosen on "
          "the seed ensembles by the rule below), held-out F1 0.41"
          ) in doc_tables.results_validation_free_settings(src)
  assert doc_tables.results_validation_free_settings(doc_tables.Sources(str(tmp_path))) == (
      f"Not run yet ({folder}/run.sh).")


def test_epoch_selection_leaves_out_runs_that_chose_on_their_training_scans():
  """selection_text counts the runs that chose their epoch on the subjects they are scored on:
  a recipe without a validation pair chose on its training scans and is left out (by hand:
  gains +0.002 and 0.0, mean +0.0010)."""
  def run(kept, last, gain):
    return {"selected_epoch": kept, "last_epoch": last, "selection_gain": gain}
  t = {"recipes": {"a": {"kind": "lever", "runs_detail": {"f0": run(78, 80, 0.002),
                                                          "f1": run(80, 80, 0.0)}},
                   "nv": {"kind": "validation_free", "runs_detail": {"f0": run(40, 80, 0.5)}}}}
  text = doc_tables.selection_text(t)
  assert "1 of 2 runs kept their last epoch and 2 of 2 one of their last 3 epochs" in text
  assert text.endswith("by +0.0010 on average over the 2 runs (+0.0000 to +0.0020).")


def test_a_reading_s_comparison_gets_its_own_verdict_never_a_replacement():
  """comparisons_text and campaign_table's markdown word a complete comparison of a reading
  kind by campaign_table.READING_VERDICT, its one home."""
  c = {"recipe": "nv", "against": "with", "why": "w", "paired_gains": {"fold0_seed0": 0.02},
       "mean_gain": 0.02, "complete": True, "replaces": False, "kind": "validation_free",
       "folds_needed": [0]}
  text = doc_tables.comparisons_text({"comparisons": [c], "seed_noise": 0.005})
  assert text == ("Paired reading: nv with with (w) gains f0s0 +0.0200, mean **+0.0200** against "
                  "the seed noise 0.0050, read by the rule of docs/results.md section 11. ")


def _write(root, rel, content):
  path = root / rel
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(content if isinstance(content, str) else json.dumps(content))


def _all8_tree(root, cross_validation="nv"):
  """A checkout whose pretrained/ holds one member trained on every subject (recipe r8, fold
  'all'), and whose plan names nv as r8's cross-validation (nv: folds 0-1 seed 0, fold 0 seed
  1)."""
  log = "epoch,train_loss\n1,2.0\n2,1.5\n"
  _write(root, "pretrained/ensemble.json", {"members": ["members/all_seed0"],
                                            "sources": ["/w/runs/r8/all_seed0"]})
  _write(root, "pretrained/members/all_seed0/split.json", {"train": {"subjects": [1, 2, 3]}})
  _write(root, "pretrained/members/all_seed0/log.csv", log)
  (root / "pretrained/members/all_seed0/best/2").mkdir(parents=True)
  _write(root, f"{doc_tables.CAMPAIGN_RUNS}/r8/all_seed0/run.json", {"commit": "abcdef01"})
  _write(root, doc_tables.CAMPAIGN_PLAN, {"recipes": {
      "r8": {} if cross_validation is None else {"cross_validation": cross_validation},
      "nv": {}}})
  for run, scored in (("fold0_seed0", {"2": 0.8, "1": 0.9}), ("fold1_seed0", {"3": 0.7}),
                      ("fold0_seed1", {"1": 0.5})):
    folder = f"{doc_tables.CAMPAIGN_RUNS}/nv/{run}"
    _write(root, f"{folder}/metrics.json", {"workdir": f"/w/runs/nv/{run}",
                                            "checkpoint_epoch": 2,
                                            "per_subject_mean_layer_dice": scored})
    _write(root, f"{folder}/split.json", {"train": {"subjects": [3] if "0" in run else [1, 2]}})
    _write(root, f"{folder}/log.csv", log)
    _write(root, f"{folder}/run.json", {"commit": "0123456789"})


def test_members_trained_on_every_subject_are_stood_for_by_their_cross_validation(tmp_path):
  """held_out_models: a pretrained/ of members trained on every subject (fold 'all') is stood
  for on held-out eyes by the seed-0 fold models of the recipe the plan names as its
  cross_validation (their workdirs as their evals name them, the subjects scored, the epoch
  kept), never by its members' fit; without that recipe it is refused. Its members table
  lists no held-out score."""
  _all8_tree(tmp_path)
  src = doc_tables.Sources(str(tmp_path))
  models = doc_tables.held_out_models(src)
  assert [(m["run"], m["workdir"], m["scored_on"], m["best"], m["epochs"], m["member"])
          for m in models] == [
      ("nv/fold0_seed0", "/w/runs/nv/fold0_seed0", [1, 2], 2, 2, None),
      ("nv/fold1_seed0", "/w/runs/nv/fold1_seed0", [3], 2, 2, None)]
  assert doc_tables.pretrained_members(src) == (
      "| member | campaign run | commit | trained on subjects | kept epoch (lowest loss on its "
      "training scans) of the epochs run |\n|---|---|---|---|---|\n"
      "| `members/all_seed0` | r8/all_seed0 | abcdef0 | 1, 2, 3 | 2 of 2 |")
  bare = tmp_path / "bare"
  _all8_tree(bare, cross_validation=None)
  with pytest.raises(ValueError, match="^pretrained/ensemble.json: members of `r8` trained on "
                                       "every subject need a `cross_validation` recipe"):
    doc_tables.held_out_models(doc_tables.Sources(str(bare)))


def _seed_ensemble(root, fold, dice=(0.86, 0.85, 0.84), subjects=("1", "2"), sd=6.0,
                   commits=("c1", "c1", "c1"), rho=0.1, seeds=(0, 1)):
  """seed_ensembles.sh's outputs for nv fold `fold`: its ensemble.json (`seeds`, no flip) and
  the evals of the ensemble and of each member (mean layer Dice `dice` in that order), in the
  folder of its size."""
  folder = doc_tables.seed_ensemble_folder(len(seeds))
  twins = [f"/w/runs/nv/fold{fold}_seed{s}" for s in seeds]
  _write(root, f"{folder}/ensembles/fold{fold}/ensemble.json", {"members": twins, "flip": False})
  for name, d, workdir, commit in zip(("ensemble",) + tuple(f"seed{s}" for s in seeds), dice,
                                      [f"/x/ensembles/fold{fold}"] + twins, commits):
    metrics = _eval_metrics(rho, sd=sd) | {"workdir": workdir,
                                           "per_subject_mean_layer_dice": dict.fromkeys(subjects)}
    metrics["topology"]["literature"] = {"mean_layer_dice": d}
    _write(root, f"{folder}/{name}_fold{fold}/metrics.json", metrics)
    _write(root, f"{folder}/{name}_fold{fold}/eval_provenance.json", {"git": {"commit": commit}})


def _gains(src, models, sd):
  return doc_tables.ensemble_gains(doc_tables.stand_in_seed_ensembles(src, models, sd))


def test_stand_ins_averaging_gain_is_read_on_smoothed_outputs_by_hand(tmp_path):
  """ensemble_gains of stand_in_seed_ensembles: per fold, the seed ensemble's Dice minus its two
  members', all scored with the shipped smoothing (by hand: 0.86 - (0.85 + 0.84) / 2 = +0.015),
  whether its two seeds are 0 and 1 or 1 and 2 (models read from the runner's workdirs or the
  results folders that keep them); refused where the ensemble is not of two seeds of the fold's
  recipe and fold, the smoothing is another, an eval scored other subjects or ran at another
  commit; [] before any ensemble."""
  _all8_tree(tmp_path)
  src = doc_tables.Sources(str(tmp_path))
  models = doc_tables.held_out_models(src)
  assert _gains(src, models, 6.0) == []
  _seed_ensemble(tmp_path, 0)
  assert _gains(doc_tables.Sources(str(tmp_path)), models, 6.0) == [
      pytest.approx(0.015, rel=1e-12)]
  assert _gains(doc_tables.Sources(str(tmp_path)), models[1:], 6.0) == []
  folder = doc_tables.VALIDATION_FREE_SETTINGS
  for bad in ({"sd": 0.0}, {"subjects": ("1",)}, {"commits": ("c1", "c2", "c1")}):
    _seed_ensemble(tmp_path, 0, **bad)
    with pytest.raises(ValueError, match="ensemble_fold0: not a seed ensemble of"):
      _gains(doc_tables.Sources(str(tmp_path)), models, 6.0)
  _seed_ensemble(tmp_path, 0)
  _seed_ensemble(tmp_path, 1, seeds=(1, 2), dice=(0.85, 0.83, 0.84), subjects=("3",))
  kept = f"/repo/{doc_tables.CAMPAIGN_RUNS}/nv/fold1_seed"
  _write(tmp_path, f"{folder}/ensembles/fold1/ensemble.json",
         {"members": [kept + "1", kept + "2"], "flip": False})
  assert _gains(doc_tables.Sources(str(tmp_path)), models, 6.0) == [
      pytest.approx(0.015, rel=1e-12), pytest.approx(0.015, rel=1e-12)]
  for members in (["/w/runs/nv/fold0_seed0", "/w/runs/nv/fold1_seed1"],
                  ["/w/runs/nv/fold0_seed1", "/w/runs/nv/fold0_seed0"],
                  ["/w/runs/nv/fold0_seed0", "/w/runs/nv/fold0_seed0"]):
    _seed_ensemble(tmp_path, 0)
    _write(tmp_path, f"{folder}/ensembles/fold0/ensemble.json", {"members": members,
                                                                  "flip": False})
    with pytest.raises(ValueError, match="ensemble_fold0: not a seed ensemble of 2 seeds of "
                                         "nv/fold0_seed0's recipe and fold"):
      _gains(doc_tables.Sources(str(tmp_path)), models, 6.0)
  with pytest.raises(ValueError, match="with smoothing sd 4"):
    _seed_ensemble(tmp_path, 0)
    _gains(doc_tables.Sources(str(tmp_path)), models, 4.0)


def test_a_four_member_ensemble_reads_its_gain_on_four_seed_ensembles_once_every_fold_has_one(
    tmp_path):
  """shipped_size_ensembles: the averaging gain of a 4-member pretrained/ is read on 4-seed
  ensembles (seed_ensembles.sh's members4/) once every held-out model's fold has one, the
  ensemble's Dice minus its 4 members' mean (by hand: 0.87 - (0.85 + 0.84 + 0.86 + 0.85) / 4 =
  +0.02); until then on the 2-seed ones; a members4/ ensemble of 2 seeds is refused."""
  _all8_tree(tmp_path)
  models = doc_tables.held_out_models(doc_tables.Sources(str(tmp_path)))
  _seed_ensemble(tmp_path, 0)
  _seed_ensemble(tmp_path, 1, seeds=(1, 2), dice=(0.85, 0.83, 0.84), subjects=("3",))
  four = {"dice": (0.87, 0.85, 0.84, 0.86, 0.85), "commits": ("c2",) * 5}

  def read():
    found = doc_tables.shipped_size_ensembles(doc_tables.Sources(str(tmp_path)), models, 6.0, 4)
    return [e["seeds"] for e in found], doc_tables.ensemble_gains(found)
  assert read() == ([(0, 1), (1, 2)], [pytest.approx(0.015, rel=1e-12)] * 2)
  _seed_ensemble(tmp_path, 0, seeds=(2, 3, 4, 5), **four)
  assert read()[0] == [(0, 1), (1, 2)]                      # fold 1 has no 4-seed ensemble yet
  _seed_ensemble(tmp_path, 1, seeds=(1, 2, 3, 4), subjects=("3",), **four)
  assert read() == ([(2, 3, 4, 5), (1, 2, 3, 4)], [pytest.approx(0.02, rel=1e-12)] * 2)
  folder = doc_tables.seed_ensemble_folder(4)
  _write(tmp_path, f"{folder}/ensembles/fold0/ensemble.json",
         {"members": ["/w/runs/nv/fold0_seed2", "/w/runs/nv/fold0_seed3"], "flip": False})
  with pytest.raises(ValueError, match="members4/ensemble_fold0: not a seed ensemble of 4 seeds"):
    read()


def test_members_on_every_subject_name_the_extrapolated_step_apart_by_hand():
  """more_subjects_sentence for stand-ins of 6 training subjects: the committed learning curve
  (the 4-subject recipe's paired gaps against the members' recipe, over 4 folds) read forward,
  gap x ln(8/6) / ln(6/4), not counted; nothing for members that are their own held-out
  models."""
  curve = next(c for c in raw(doc_tables.CAMPAIGN)["comparisons"]
               if c["recipe"] == "plateau_80_fluid_skip_wh_ema_4subjects")
  gaps = [-g for g in curve["paired_gains"].values()]      # 6 subjects' Dice minus 4's
  assert curve["against"] == "plateau_80_fluid_skip_wh_ema" and len(gaps) == 4
  step = sum(gaps) / 4 * math.log(8 / 6) / math.log(6 / 4)
  n = {"stand_ins": True, "cv_recipe": "plateau_80_fluid_skip_wh_ema_noval",
       "models": [{"split": {"train": {"subjects": [1, 2, 3, 4, 5, 6]}}}]}
  assert doc_tables.more_subjects_sentence(_Injected({}), n) == (
      "Not counted: the members trained on all 8 subjects, each fold model above on 6 "
      "subjects: the learning curve "
      f"read forward to 8 subjects adds about {step:+.4f} (docs/results.md section 11), an "
      "extrapolation, not a measurement.")
  assert doc_tables.more_subjects_sentence(_Injected({}), n | {"stand_ins": False}) == ""


def _stand_in_evidence(root):
  """_all8_tree with its member's config, and the stand-ins' (nv folds 0-1) single-model flag
  cross-validation, seed ensembles, their evals and flag cross-validation; pretrained/ set at
  the chosen thresholds (position sd 9 um, spread 3 um). Returns its ensemble.json."""
  _all8_tree(root)
  folder = doc_tables.VALIDATION_FREE_SETTINGS
  shipped = doc_tables.Sources(ROOT)
  config = shipped.json(f"pretrained/{shipped.json('pretrained/ensemble.json')['members'][0]}"
                        "/config.json")
  _write(root, "pretrained/members/all_seed0/config.json", config)
  def held(t, share, recall, precision, mae):
    return {"held_out": {"threshold_um": t, "flagged_share": share, "recall": recall,
                         "precision": precision, "wrong_share": 0.1, "mae_flagged_um": mae,
                         "mae_unflagged_um": 4.0}}
  def flag(chosen):
    return {"wrong_um": 7.74, "cv": {"chosen_um": chosen, "per_fold": {
        "f0": held(chosen, 0.2, 0.5, 0.3, 8.0), "f1": held(chosen + 0.5, 0.1, 0.7, 0.4, 12.0)}}}
  _write(root, f"{folder}/flag_threshold_cv.json", {"sets": {"nv": {
      "workdirs": {f"eval_fold{k}": f"/w/runs/nv/fold{k}_seed0" for k in (0, 1)},
      "smooth_sd_columns": {"eval_fold0": 6.0, "eval_fold1": 6.0},
      "flags": {"position_sd": flag(9.0)}}}})
  _write(root, doc_tables.SEED_ENSEMBLE_FLAGS, {"sets": {"seed_ensembles": {
      "workdirs": {f"ensemble_fold{k}": f"/x/ensembles/fold{k}" for k in (0, 1)},
      "smooth_sd_columns": {f"ensemble_fold{k}": 6.0 for k in (0, 1)},
      "flags": {"uncertain": flag(3.0)}}}})
  for k, subjects in ((0, ("1", "2")), (1, ("3",))):
    _seed_ensemble(root, k, subjects=subjects, rho=0.1 + k / 10)
    cal = doc_tables.Sources(str(root)).json(f"{folder}/ensemble_fold{k}/metrics.json")
    cal["calibration"]["band"]["ece"] = 0.01 + k / 100
    _write(root, f"{folder}/ensemble_fold{k}/metrics.json", cal)
  spec = {"members": ["members/all_seed0"], "sources": ["/w/runs/r8/all_seed0"],
          "settings": {"predict.smooth_sd_columns": 6.0,
                       "predict.uncertain_position_sd_um": 9.0, "predict.uncertain_um": 3.0}}
  _write(root, "pretrained/ensemble.json", spec)
  return spec


def _four_members(root, spec):
  """_stand_in_evidence's pretrained/ (ensemble.json `spec`) grown to 4 members, as _all8_tree
  writes its first."""
  for seed in (1, 2, 3):
    member = f"pretrained/members/all_seed{seed}"
    _write(root, f"{member}/split.json", {"train": {"subjects": [1, 2, 3]}})
    _write(root, f"{member}/log.csv", "epoch,train_loss\n1,2.0\n2,1.5\n")
    (root / member / "best/2").mkdir(parents=True)
    _write(root, f"{doc_tables.CAMPAIGN_RUNS}/r8/all_seed{seed}/run.json", {"commit": "ab"})
  _write(root, "pretrained/ensemble.json", spec | {
      "members": [f"members/all_seed{s}" for s in range(4)],
      "sources": [f"/w/runs/r8/all_seed{s}" for s in range(4)]})


def test_the_flag_is_read_on_ensembles_of_the_shipped_size_once_every_fold_has_one(tmp_path):
  """flag_evidence for a 4-member pretrained/: the 2-seed ensembles and their flag set while
  any fold lacks a 4-seed ensemble or the 4-seed flags were not cross-validated over every
  fold; then the 4-seed ones (seeds 1-4) and the set seed_ensembles_4."""
  _four_members(tmp_path, _stand_in_evidence(tmp_path))
  def evidence():
    size, ensembles, flags = doc_tables.flag_evidence(doc_tables.Sources(str(tmp_path)))
    return size, [(e["fold"], list(e["seeds"])) for e in ensembles], sorted(flags["workdirs"])
  two = (2, [(0, [0, 1]), (1, [0, 1])], ["ensemble_fold0", "ensemble_fold1"])
  assert evidence() == two
  flags = doc_tables.Sources(str(tmp_path)).json(doc_tables.SEED_ENSEMBLE_FLAGS)
  for k, subjects in ((1, ("3",)), (0, ("1", "2"))):
    _seed_ensemble(tmp_path, k, seeds=(1, 2, 3, 4), subjects=subjects, commits=("c2",) * 5,
                   dice=(0.87, 0.85, 0.84, 0.86, 0.85))
    flags["sets"]["seed_ensembles_4"] = {"workdirs": {"ensemble_fold1": "/x/ensembles/fold1"}}
    _write(tmp_path, doc_tables.SEED_ENSEMBLE_FLAGS, flags)
    assert evidence() == two                  # fold 0 not scored, or its flags not read yet
  flags["sets"]["seed_ensembles_4"]["workdirs"]["ensemble_fold0"] = "/x/ensembles/fold0"
  _write(tmp_path, doc_tables.SEED_ENSEMBLE_FLAGS, flags)
  assert evidence() == (4, [(0, [1, 2, 3, 4]), (1, [1, 2, 3, 4])],
                        ["ensemble_fold0", "ensemble_fold1"])
  two_flags = flags["sets"]["seed_ensembles"]                # the spread at 3 um, as shipped
  flags["sets"]["seed_ensembles_4"] |= {"flags": two_flags["flags"],
                                        "smooth_sd_columns": two_flags["smooth_sd_columns"]}
  _write(tmp_path, doc_tables.SEED_ENSEMBLE_FLAGS, flags)
  text = doc_tables.stand_in_ensemble_flag(doc_tables.Sources(str(tmp_path)), 4)
  assert "chosen on the 2 4-member seed ensembles (seeds 1-4 of one fold)" in text
  assert text.endswith("(docs/results.md section 11).")     # read at its size: no sd ratio


def test_the_gain_by_ensemble_size_sets_four_seeds_beside_two_by_hand(tmp_path):
  """results_ensemble_size for a 4-member pretrained/: nothing before a 4-seed ensemble is
  scored; then per fold the 2-seed and 4-seed ensembles (dashes where a fold has none), the
  mean gains over the folds with both (by hand: 0.86 - (0.85 + 0.84) / 2 = +0.015 and
  0.87 - 0.85 = +0.02) and each size's held-out flag F1."""
  spec = _stand_in_evidence(tmp_path)
  _four_members(tmp_path, spec)
  assert doc_tables.results_ensemble_size(doc_tables.Sources(str(tmp_path))).startswith(
      "No seed ensembles of pretrained/'s 4 members scored yet")
  _seed_ensemble(tmp_path, 1, seeds=(1, 2, 3, 4), subjects=("3",),
                 dice=(0.87, 0.85, 0.84, 0.86, 0.85), commits=("c2",) * 5)
  flags = doc_tables.Sources(str(tmp_path)).json(doc_tables.SEED_ENSEMBLE_FLAGS)
  flags["sets"]["seed_ensembles_4"] = {"workdirs": {"ensemble_fold1": "/x/ensembles/fold1"},
                                       "flags": {"position_sd": {"cv": None}}}   # one fold
  _write(tmp_path, doc_tables.SEED_ENSEMBLE_FLAGS, flags)
  assert doc_tables.results_ensemble_size(doc_tables.Sources(str(tmp_path))).endswith(
      "smoothing sd 6, no flip).")
  flags["sets"]["seed_ensembles_4"]["flags"]["position_sd"]["cv"] = {"held_out_mean": {"f1": 0.5}}
  _write(tmp_path, doc_tables.SEED_ENSEMBLE_FLAGS, flags)
  text = doc_tables.results_ensemble_size(doc_tables.Sources(str(tmp_path)))
  rows = [line for line in text.splitlines() if line.startswith("| 0 |") or
          line.startswith("| 1 |")]
  assert rows == ["| 0 | 1, 2 | 0, 1 | 0.8450 | 0.8600 | +0.0150 | - | - | - | - |",
                  "| 1 | 3 | 0, 1 | 0.8450 | 0.8600 | +0.0150 | 1, 2, 3, 4 | 0.8500 | 0.8700 "
                  "| +0.0200 |"]
  assert "On the 1 fold with both, the mean averaging gain is **+0.0150** with 2 members and " \
         "**+0.0200** with 4" in text
  assert text.endswith("Held-out F1 of the position-sd flag: 4 members 0.500 (1 fold, "
                       "threshold chosen on the other folds).")
  flags["sets"]["seed_ensembles"]["flags"]["position_sd"] = {"cv": {"held_out_mean": {"f1": 0.4}}}
  _write(tmp_path, doc_tables.SEED_ENSEMBLE_FLAGS, flags)               # 2 folds against 1
  assert doc_tables.results_ensemble_size(doc_tables.Sources(str(tmp_path))).endswith(
      "flag: 2 members 0.400 (2 folds, threshold chosen on the other folds); 4 members 0.500 "
      "(1 fold, threshold chosen on the other folds); the two read different folds, so they "
      "are not paired.")


def test_stand_ins_uncertainty_reads_their_seed_ensembles_and_both_flags_by_hand(tmp_path):
  """stand_in_uncertainty for members trained on every subject: the calibration of the
  stand-ins' seed-ensemble evals and the single member's flag (one member: no ensemble flag);
  for 4 members, the ensemble flag at the spread threshold its seed ensembles' cross-validation
  chose (by hand, with the expected population sd of 4 normal draws against 2:
  sqrt(2 / pi) / (1 / sqrt(pi)) = sqrt(2)); refused where pretrained/ flags at another spread,
  or the cross-validation read evals at another smoothing or not every fold's ensemble."""
  spec = _stand_in_evidence(tmp_path)
  src = doc_tables.Sources(str(tmp_path))
  reading = ("the threshold with the best F1 of finding the columns whose boundaries are off by "
             "more than 7.74 um (2 rows) on average, chosen on the 2 {on} (each on its own "
             "held-out "
             "subjects; chosen on the other 1 fold, each fold's threshold was {t} um): on the "
             "fold left out it flagged 10-20% of the measured columns and found 50-70% of those "
             "that were off (recall; 10% of the columns were), and 30-40% of the flagged columns "
             "were off (precision), with a mean absolute boundary error of 8.0-12.0 um in them "
             "against 4.0 um in the others (docs/results.md section 11).")
  assert doc_tables.stand_in_uncertainty(src) == (
      "How its uncertainty relates to its errors on eyes the models never saw (2 folds: 2-member "
      "seed ensembles (seeds 0 and 1 of one fold) of `nv`, scored by eval with the shipped "
      "smoothing on the pair neither trained on; docs/results.md section 11):\n\n* The spread "
      "ranks single errors only weakly (Spearman's rho 0.10-0.20 over column and boundary). "
      "Expected calibration error of the top-class confidence (15 bins): 0.0100-0.0200 over the "
      "pixels of the model's input band, 0.0040 over all labelled pixels (the rows outside the "
      "band count as certain background).\n* With `--config.predict.members=1` the first member "
      "alone "
      "flags a column where some boundary's position sd exceeds 9 um "
      "(`predict.uncertain_position_sd_um`), " + reading.format(on="fold models of `nv`",
                                                                 t="9-9.5"))
  assert doc_tables.stand_in_ensemble_flag(src, 4) == (
      " The ensemble flags a column where the members' spread of some boundary exceeds 3 um "
      "(`predict.uncertain_um`, set in `ensemble.json`), "
      + reading.format(on="2-member seed ensembles (seeds 0 and 1 of one fold) of `nv`", t="3-3.5")
      + " The population sd of 4 members drawn alike from a normal distribution runs 1.41x that "
      "of 2 on average, so with 4 members it flags more columns than these readings.")
  _write(tmp_path, "pretrained/ensemble.json",
         spec | {"settings": spec["settings"] | {"predict.uncertain_um": 5.0}})
  with pytest.raises(ValueError, match="flags its ensemble by the members' spread at 5 um, but"):
    doc_tables.stand_in_ensemble_flag(doc_tables.Sources(str(tmp_path)), 4)
  _write(tmp_path, "pretrained/ensemble.json", spec)
  flags = doc_tables.Sources(str(tmp_path)).json(doc_tables.SEED_ENSEMBLE_FLAGS)
  for key, changed in (("smooth_sd_columns", {"ensemble_fold0": 0.0, "ensemble_fold1": 6.0}),
                       ("workdirs", {"ensemble_fold0": "/x/ensembles/fold0"})):
    st = flags["sets"]["seed_ensembles"]
    _write(tmp_path, doc_tables.SEED_ENSEMBLE_FLAGS, {"sets": {"seed_ensembles": st | {
        key: changed}}})
    with pytest.raises(ValueError, match="flags its ensemble by the members' spread at 3 um, but"):
      doc_tables.stand_in_ensemble_flag(doc_tables.Sources(str(tmp_path)), 4)


def test_stand_ins_must_be_the_members_recipe_without_its_pair_and_have_passed():
  """check_stand_ins: the committed all-8 recipe and its noval stand-ins pass; a stand-in with
  another override, or without a passed reading of section 11, is refused."""
  all8, noval = "plateau_80_fluid_skip_wh_ema_all8", "plateau_80_fluid_skip_wh_ema_noval"
  doc_tables.check_stand_ins(_Injected({}), all8, noval)
  plan = json.loads(json.dumps(raw(doc_tables.CAMPAIGN_PLAN)))
  plan["recipes"][noval]["overrides"]["train.ema_decay"] = 0.9
  with pytest.raises(ValueError, match=f"`{noval}` is not `{all8}` without its validation pair"):
    doc_tables.check_stand_ins(_Injected({doc_tables.CAMPAIGN_PLAN: plan}), all8, noval)
  levers = raw(doc_tables.CAMPAIGN) | {"comparisons": []}
  with pytest.raises(ValueError, match=f"`{noval}`: no passed reading by section 11's rule"):
    doc_tables.check_stand_ins(_Injected({doc_tables.CAMPAIGN: levers}), all8, noval)


def test_the_readme_states_a_complete_learning_curve_as_section_11_reads_it():
  """curve_clause: the gap and the extrapolated step of curve_step (by hand as in the section's
  test: gaps 0.03 and 0.02, step 0.025 ln(8/6) / ln(6/4) = 0.0177); nothing while folds wait."""
  assert doc_tables.curve_clause(_curve_sources(complete=True)) == (
      " Learning curve (docs/results.md section 11): trained on 4 instead of 6 subjects per "
      "fold, `full` loses 0.0250 mean layer Dice over 2 folds, beyond its seed noise; read "
      "forward, 8 subjects would add about +0.0177 (an extrapolation, not a measurement).")
  assert doc_tables.curve_clause(_curve_sources(complete=False)) == ""


def test_a_kept_model_and_its_runner_workdir_are_one_model():
  """model_name: a campaign run read from the runner's state folder or from the results folder
  that keeps its model is one model, RECIPE/foldF_seedS; any other folder is its own path."""
  run = "plateau_80_fluid_skip_wh_ema_noval/fold1_seed0"
  results = doc_tables.CAMPAIGN_RUNS
  assert {doc_tables.model_name(p) for p in (
      f"/work/campaign/runs/{run}", f"/elsewhere/state/runs/{run}/",
      f"/work/main/{results}/{run}", f"{results}/./{run}")} == {run}
  member = "pretrained/members/fold0_seed0"
  assert doc_tables.model_name(member + "/") == member
  assert doc_tables.model_name("/repo/runs/tiny/wd") == "/repo/runs/tiny/wd"   # not a run name
  assert doc_tables.model_name("elsewhere/members/fold0_seed0") == "elsewhere/members/fold0_seed0"
  assert doc_tables.model_set(["b/runs/r/fold1_seed0", "a/runs/r/fold0_seed0"]) == [
      "r/fold0_seed0", "r/fold1_seed0"]


def test_the_seeds_of_seed_ensembles_are_named_as_they_are():
  """ensemble_seeds_text: one seed set for every fold is named once; different sets are named
  per fold, in fold order, consecutive seeds as a range; seed_set reads 2 or more seeds of one
  recipe and fold, ascending."""
  def ensembles(*seeds):
    return [{"fold": f, "seeds": s} for f, s in enumerate(seeds)]
  assert doc_tables.ensemble_seeds_text(ensembles((0, 1), (0, 1))) == "seeds 0 and 1 of one fold"
  assert doc_tables.ensemble_seeds_text(ensembles((0, 1), (1, 2), (1, 2), (1, 2))) == (
      "the seeds of one fold: seeds 0 and 1 on fold 0, seeds 1 and 2 on folds 1, 2 and 3")
  assert doc_tables.ensemble_seeds_text(ensembles((2, 3, 4, 5), (1, 2, 3, 4), (1, 2, 3, 4))) == (
      "the seeds of one fold: seeds 2-5 on fold 0, seeds 1-4 on folds 1 and 2")
  assert doc_tables.ensemble_seeds_text(ensembles((0, 2, 3), (0, 2, 3))) == (
      "seeds 0, 2 and 3 of one fold")
  assert doc_tables.ensemble_seeds_text([]) == ""
  assert doc_tables.seed_set("r/fold1_seed0", ["r/fold1_seed1", "r/fold1_seed2"]) == (1, 2)
  assert doc_tables.seed_set("r/fold1_seed0", [f"r/fold1_seed{s}" for s in (1, 2, 3, 4)]) == (
      1, 2, 3, 4)
  for members in (["r/fold1_seed2", "r/fold1_seed1"], ["r/fold1_seed1"],
                  ["r/fold1_seed1", "r/fold2_seed2"], ["r/fold1_seed1", "q/fold1_seed2"],
                  ["r/fold1_seed1", "r/fold1_seed3", "r/fold1_seed2"]):
    assert doc_tables.seed_set("r/fold1_seed0", members) == ()


def _curve(columns, wrong, flagged, hits, flagged_err):
  """A flag curve at 9 and 9.5 um, 8 boundaries per column at 5 um of error each on average
  (the other columns' error follows)."""
  return {"wrong_um": 7.74, "thresholds_um": [9.0, 9.5], "columns": columns, "wrong": wrong,
          "pairs": 8 * columns, "error_sum_um": 40.0 * columns, "flagged": flagged,
          "hits": hits, "flagged_pairs": [8 * f for f in flagged],
          "flagged_error_sum_um": flagged_err}


def _fold_model_curves(root, folder):
  """The nv fold models' evals (folds 0 and 1) with their position sd flag curves."""
  for k, curve in ((0, _curve(100, 10, [20, 10], [5, 4], [1600.0, 960.0])),
                   (1, _curve(200, 40, [50, 30], [20, 15], [4000.0, 2400.0]))):
    _write(root, f"{folder}/eval_fold{k}/metrics.json", {
        "workdir": f"/w/runs/nv/fold{k}_seed0",
        "calibration": {"position_sd_columns_curve": curve}})


def _second_member(root):
  """_all8_tree's member copied as pretrained/members/all_seed1 (campaign run r8/all_seed1)."""
  for rel in ("split.json", "log.csv", "best/2"):
    first, second = (root / f"pretrained/members/all_seed{s}" / rel for s in (0, 1))
    second.parent.mkdir(parents=True, exist_ok=True)
    second.mkdir() if first.is_dir() else second.write_bytes(first.read_bytes())
  _write(root, f"{doc_tables.CAMPAIGN_RUNS}/r8/all_seed1/run.json", {"commit": "abcdef01"})


def test_an_ensemble_flagging_by_the_position_sd_shares_it_with_its_single_member(tmp_path):
  """The rule of docs/results.md section 11 (ensemble_flag_choice): the position sd unless the
  spread's mean held-out F1 is higher. Where the position sd wins (F1 0.45 against 0.40),
  pretrained/ must flag its ensemble by it (predict.uncertain_um 0) at its chosen 9.5 um, and
  the single member's sentence reads the fold models' eval curves at that threshold, by hand:
  fold 0 flags 10 of 100 columns, 4 of its 10 wrong (share 10%, recall 40%, precision 40%,
  error 960 / 80 = 12.0 um against 3040 / 720 = 4.2 um); fold 1 30 of 200, 15 of 40 (15%,
  37.5%, 50%, 2400 / 240 = 10.0 um against 5600 / 1360 = 4.1 um). Where the spread's F1 is
  higher, the spread is the choice, and a pretrained/ that flags by the other is refused."""
  spec = _stand_in_evidence(tmp_path)
  folder = doc_tables.VALIDATION_FREE_SETTINGS
  flags = doc_tables.Sources(str(tmp_path)).json(doc_tables.SEED_ENSEMBLE_FLAGS)
  st = flags["sets"]["seed_ensembles"]
  spread = st["flags"]["uncertain"]
  spread["cv"]["held_out_mean"] = {"f1": 0.40}
  position = json.loads(json.dumps(spread))
  position["cv"] |= {"chosen_um": 9.5, "held_out_mean": {"f1": 0.45}}
  st["flags"]["position_sd"] = position
  _write(tmp_path, doc_tables.SEED_ENSEMBLE_FLAGS, flags)
  _fold_model_curves(tmp_path, folder)
  assert doc_tables.ensemble_flag_choice(st["flags"]) == (uncertainty.POSITION_SD, position)
  src = doc_tables.Sources(str(tmp_path))
  with pytest.raises(ValueError, match="flags its ensemble by the members' spread at 3 um, but"):
    doc_tables.stand_in_ensemble_flag(src, 4)
  settings = spec["settings"] | {"predict.uncertain_um": 0.0,
                                 "predict.uncertain_position_sd_um": 9.5}
  _write(tmp_path, "pretrained/ensemble.json", spec | {
      "members": ["members/all_seed0", "members/all_seed1"],
      "sources": ["/w/runs/r8/all_seed0", "/w/runs/r8/all_seed1"], "settings": settings})
  _second_member(tmp_path)
  src = doc_tables.Sources(str(tmp_path))
  text = doc_tables.stand_in_ensemble_flag(src, 4)
  assert text.startswith(
      " The ensemble flags a column where some boundary's position sd in its averaged "
      "probabilities exceeds 9.5 um (`predict.uncertain_position_sd_um`, with "
      "`predict.uncertain_um` 0, set in `ensemble.json`; chosen over the members' spread by the "
      "rule of docs/results.md section 11: held-out F1 0.45 against 0.40), the threshold with")
  assert text.endswith(" With 4 members instead of 2 the part of it that is the members' "
                       "disagreement runs larger; each member's own spread over rows does not "
                       "change.")
  assert doc_tables.single_member_flag(src) == (
      " With `--config.predict.members=1` the first member alone flags by its position sd at "
      "the same 9.5 um: on each of the 2 fold models of `nv` at that threshold, on its held-out "
      "subjects, it flagged 10-15% of the measured columns and found 38-40% of those that were "
      "off (recall; 10-20% of the columns were), and 40-50% of the flagged columns were off "
      "(precision), with a mean absolute boundary error of 10.0-12.0 um in them against "
      "4.1-4.2 um in the others (docs/results.md section 11).")
  spread["cv"]["held_out_mean"] = {"f1": 0.46}
  assert doc_tables.ensemble_flag_choice(st["flags"]) == (uncertainty.SPREAD, spread)
  _write(tmp_path, doc_tables.SEED_ENSEMBLE_FLAGS, flags)
  with pytest.raises(ValueError, match="flags its ensemble by the position sd at 9.5 um, but"):
    doc_tables.stand_in_ensemble_flag(doc_tables.Sources(str(tmp_path)), 4)
  spec = doc_tables.Sources(str(tmp_path)).json("pretrained/ensemble.json")
  spec["settings"] |= {"predict.uncertain_um": 3.0, "predict.uncertain_position_sd_um": 9.0}
  _write(tmp_path, "pretrained/ensemble.json", spec)
  assert ("(`predict.uncertain_um`, set in `ensemble.json`; chosen over the position sd by the "
          "rule of docs/results.md section 11: held-out F1 0.46 against 0.45), the threshold"
          ) in doc_tables.stand_in_ensemble_flag(doc_tables.Sources(str(tmp_path)), 4)


def test_the_reading_of_the_flag_rule_names_both_flags_and_what_pretrained_ships(tmp_path,
                                                                                 fold_models):
  """results_ensemble_flag_rule from hand-built seed-ensemble flags (per-fold F1 0.5, 0.42 for
  the spread at 3 um, mean 0.46; 0.3, 0.6 for the position sd at 9.5 um, mean 0.45): the
  spread is chosen and shipped; with the mean F1s swapped, the position sd, shared with the
  single member; refused where pretrained/ ships the other; fold models name no choice."""
  spec = _stand_in_evidence(tmp_path)
  flags = doc_tables.Sources(str(tmp_path)).json(doc_tables.SEED_ENSEMBLE_FLAGS)
  st = flags["sets"]["seed_ensembles"]
  spread = st["flags"]["uncertain"]
  position = json.loads(json.dumps(spread))
  position["cv"]["chosen_um"] = 9.5
  st["flags"]["position_sd"] = position
  for f1s, mean, flag in (((0.5, 0.42), 0.46, spread), ((0.3, 0.6), 0.45, position)):
    flag["cv"]["held_out_mean"] = {"f1": mean}
    for held, f1 in zip(flag["cv"]["per_fold"].values(), f1s):
      held["held_out"]["f1"] = f1
  _write(tmp_path, doc_tables.SEED_ENSEMBLE_FLAGS, flags)
  _write(tmp_path, "pretrained/ensemble.json", spec | {
      "members": ["members/all_seed0", "members/all_seed1"],
      "sources": ["/w/runs/r8/all_seed0", "/w/runs/r8/all_seed1"]})
  _second_member(tmp_path)
  read = (f"Read over the 2 folds' 2-member seed ensembles (`{doc_tables.SEED_ENSEMBLE_FLAGS}`): "
          "the "
          "members' spread at 3 um, mean held-out F1 **{}** (folds 0.500, 0.420) and the "
          "position sd at 9.5 um, mean held-out F1 **{}** (folds 0.300, 0.600); by the rule the "
          "ensemble flags by the {}.")
  assert doc_tables.results_ensemble_flag_rule(doc_tables.Sources(str(tmp_path))) == (
      read.format("0.460", "0.450", "members' spread at 3 um")
      + " pretrained/ ships it (`settings` in its `ensemble.json`).")
  spread["cv"]["held_out_mean"]["f1"], position["cv"]["held_out_mean"]["f1"] = 0.45, 0.46
  _write(tmp_path, doc_tables.SEED_ENSEMBLE_FLAGS, flags)
  with pytest.raises(ValueError, match="flags its ensemble by the members' spread at 3 um, but"):
    doc_tables.results_ensemble_flag_rule(doc_tables.Sources(str(tmp_path)))
  spec = doc_tables.Sources(str(tmp_path)).json("pretrained/ensemble.json")
  spec["settings"] |= {"predict.uncertain_um": 0.0, "predict.uncertain_position_sd_um": 9.5}
  _write(tmp_path, "pretrained/ensemble.json", spec)
  assert doc_tables.results_ensemble_flag_rule(doc_tables.Sources(str(tmp_path))) == (
      read.format("0.450", "0.460", "position sd at 9.5 um") + " pretrained/ ships it "
      "(`settings` in its `ensemble.json`), for `--config.predict.members=1` too.")
  assert doc_tables.results_ensemble_flag_rule(fold_models()).endswith(
      " pretrained/ still holds fold models, whose flag section 7 chose.")


def test_the_ensemble_flag_rule_by_case(tmp_path):
  """ensemble_flag_choice: a tie goes to the position sd; a NaN or null F1 counts below any
  other; a flag without cross-validation is not a candidate; none at all is refused.
  shared_position_flag refuses an eval without a curve point at the threshold."""
  def flag(f1, cv=True):
    return {"cv": {"chosen_um": 1.0, "held_out_mean": {"f1": f1}} if cv else None}
  choose = doc_tables.ensemble_flag_choice
  assert choose({"uncertain": flag(0.4), "position_sd": flag(0.4)})[0] == uncertainty.POSITION_SD
  assert choose({"uncertain": flag(0.3), "position_sd": flag(float("nan"))})[0] == "spread"
  assert choose({"uncertain": flag(None), "position_sd": flag(0.1)})[0] == "position_sd"
  assert choose({"uncertain": flag(0.1), "position_sd": flag(0.9, cv=False)})[0] == "spread"
  with pytest.raises(ValueError, match="no cross-validated flag of the seed ensembles"):
    choose({"uncertain": flag(0.1, cv=False)})
  _fold_model_curves(tmp_path, "f")
  found = ("f/cv.json", {"workdirs": {"eval_fold0": "/w/runs/nv/fold0_seed0"}})
  models = [{"run": "nv/fold0_seed0"}]
  src = doc_tables.Sources(str(tmp_path))
  assert "it flagged 10% of the measured columns" in doc_tables.shared_position_flag(
      src, found, 9.5, models)
  with pytest.raises(ValueError, match="f/eval_fold0: not the eval of .* a flag curve at 8 um"):
    doc_tables.shared_position_flag(src, found, 8.0, models)


def test_averaging_sentence_says_whether_the_gain_was_read_at_the_shipped_size():
  """averaging_sentence on hand-built numbers: the mean of the fold gains, and whether the seed
  ensembles were of the shipped ensemble's size; none counted while none is scored."""
  n = {"gains": [0.002, 0.004], "gain_recipes": ["r_noval"], "recipe": "r", "stand_ins": True,
       "cv_recipe": "r_noval", "ensemble_size": 2, "ensemble_seeds": "seeds 1 and 2",
       "spec": {"flip": False}, "seed_gaps": ([], []), "members": [{}] * 4}
  text = doc_tables.averaging_sentence(n)
  assert text == ("Averaging gain: 2-member seed ensembles (seeds 1 and 2) of `r_noval`, each "
                  "ensemble and member smoothed as shipped, without flip, scored by "
                  "cross-validation, gained +0.0030 mean layer Dice over their members (2 folds: "
                  "+0.0020, +0.0040); ensembles of its own size (4 members) may gain more.")
  assert doc_tables.averaging_sentence(n | {"ensemble_size": 4}).endswith(
      "(2 folds: +0.0020, +0.0040); these are ensembles of its own size.")
  assert doc_tables.averaging_sentence(n | {"gains": []}) == (
      "Averaging gain: none counted, since its seed ensembles are not scored yet.")
  assert doc_tables.averaging_sentence(n | {"seed_gaps": ([0.001, 0.003], [3, 2])}).endswith(
      "; the recipe's seed noise (mean |difference| of two seeds' Dice, over every pair of 2 or "
      "3 seeds of a fold) is 0.0020 (2 folds: 0.0010, 0.0030); ensembles of its own size "
      "(4 members) may gain more.")


def test_seed_noise_is_read_over_every_pair_of_a_fold_s_seeds():
  """seed_pair_gaps by hand: fold 0's 3 seeds give pairs |0.80-0.81|, |0.80-0.83|, |0.81-0.83|
  (mean 0.02); fold 1's 2 seeds |seed 0 - seed 1| = 0.01; a fold with one seed has no gap."""
  runs = {"fold0_seed0": 0.80, "fold0_seed1": 0.81, "fold0_seed2": 0.83, "fold1_seed0": 0.85,
          "fold1_seed1": 0.84, "fold2_seed0": 0.9}
  gaps, seeds = doc_tables.seed_pair_gaps({r: {"mean_layer_dice": d} for r, d in runs.items()})
  assert gaps == [pytest.approx(0.02, rel=1e-9), pytest.approx(0.01, rel=1e-9)]
  assert seeds == [3, 2]
  assert doc_tables.seed_pair_gaps({}) == ([], [])
  assert doc_tables.seeds_per_fold([5, 6, 5]) == "5 or 6" and doc_tables.seeds_per_fold([2]) == "2"


def test_bulleted_drops_empty_parts_and_capitalises_each_bullet():
  assert doc_tables.bulleted("Head:", [" the first. ", "", "  ", "`code` second."]) == (
      "Head:\n\n* The first.\n* `code` second.")


def _fluid_split(columns, dice, layers, mae, signed):
  return {"columns": columns, "literature": {"mean_layer_dice": dice, "layer_dice": layers},
          "geometry": {"mae_um": mae, "signed_um": signed}}


def test_pretrained_fluid_columns_names_its_models_and_a_bias_that_changes_sign(monkeypatch):
  """pretrained_fluid_columns on two hand-built held-out evals: columns summed, scores averaged
  ((0.7 + 0.9) / 2 = 0.8; OPL/ONL bias (+10 - 30) / 2 = -10), the stand-ins' recipe and seed
  named, and the sign change said only where the fold models' biases differ in sign."""
  layers, mae = [0.9, 0.9, 0.6, 0.5, 0.9, 0.9, 0.9], [4.0] * 8
  def run(fold, wet_bias):
    wet = _fluid_split(10, 0.7 + 0.2 * fold, layers, mae, [0.0] * 4 + [wet_bias] + [0.0] * 3)
    dry = _fluid_split(30, 0.9, layers, mae, [0.0] * 8)
    return {"run": f"nv/fold{fold}_seed0", "metrics": {"topology": {
        "by_fluid_columns": {"with_fluid": wet, "without_fluid": dry}}}}
  models = [run(0, 10.0), run(1, -30.0)]
  monkeypatch.setattr(doc_tables, "shipped_numbers",
                      lambda src: {"models": models, "stand_ins": True})
  text = doc_tables.pretrained_fluid_columns(_Injected({}))
  assert text.startswith("Where it is weakest (each seed-0 fold model of `nv` on its own held-out "
                         "subjects, order fix on, no boundary smoothing;")
  assert ("(20 of 80 held-out columns, 25%), mean layer Dice 0.800 (INL 0.600, OPL 0.500) and "
          "boundary MAE 4.0 um, with a mean signed OPL/ONL error of -10.0 um (negative: above "
          "the grader's; fold models +10.0, -30.0 um: its sign changes from fold to fold, so it "
          "is no fixed offset);") in text
  models[0] = run(0, -10.0)
  assert "fold models -10.0, -30.0 um);" in doc_tables.pretrained_fluid_columns(_Injected({}))


def test_not_shipped_clause_gives_the_cost_rule_only_for_the_best_recipe_it_refuses(monkeypatch):
  """not_shipped_clause on a hand-built verdict: 4 members of 36 GFLOP = 144.0 GFLOP, 144 / 27 =
  5.3x the first shipped model's; nothing where the best recipe is another, ships, or no H200
  recipe has 4 folds."""
  v = {"best": "wide", "cost": 144.0, "previous": 27.0, "gain": 0.0023, "ships": False,
       "n": {"members": [{}] * 4}}
  monkeypatch.setattr(doc_tables, "h200_ship_verdict", lambda src: v)
  assert doc_tables.not_shipped_clause(_Injected({}), "wide") == (
      " `wide` is not what pretrained/ ships: as a 4-member ensemble it would cost 144.0 GFLOP "
      "per B-scan (5.3x the first shipped model's) for +0.0023 mean layer Dice over the shipped "
      "recipe's fold models on the same folds (different machines), and the issue allows more "
      "than 2x only for a gain above 0.01 (section 8).")
  assert doc_tables.not_shipped_clause(_Injected({}), "plateau") == ""
  v["ships"] = True
  assert doc_tables.not_shipped_clause(_Injected({}), "wide") == ""
  monkeypatch.setattr(doc_tables, "h200_ship_verdict", lambda src: None)
  assert doc_tables.not_shipped_clause(_Injected({}), "wide") == ""
