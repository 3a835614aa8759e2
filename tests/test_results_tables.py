"""README.md, docs/results.md and pretrained/README.md agree with the committed raw outputs.

scripts/doc_tables.py regenerates every marked block from docs/results/ and pretrained/ and
checks the prose numbers of its allow-list; these tests run that check on the committed files
and on edited copies of their text, which it must reject.
"""

import os

import pytest

from conftest import ROOT, load_script


doc_tables = load_script("doc_tables")


def read(doc):
  with open(os.path.join(ROOT, doc)) as f:
    return f.read()


def test_committed_documents_match_what_the_raw_outputs_generate():
  assert doc_tables.check(ROOT) == []


def test_every_document_has_generated_blocks_and_every_block_a_generator():
  for doc in doc_tables.DOCS:
    names = [m.group("name") for m in doc_tables.BLOCK.finditer(read(doc))]
    assert names, doc
    assert set(names) <= set(doc_tables.TABLES), doc


def test_a_changed_number_in_a_readme_table_is_reported():
  readme = read("README.md")
  assert readme.count("| 0.9730 |") == 1            # pixel accuracy, paper protocol, native
  edited = readme.replace("| 0.9730 |", "| 0.9731 |")
  problems = doc_tables.check(ROOT, {"README.md": edited})
  assert problems == ["README.md: block readme_paper differs from what scripts/doc_tables.py "
                      "generates from the raw outputs"]


def test_a_changed_prose_number_is_reported():
  readme = read("README.md")
  edited = readme.replace("checkpoints): 59 s wall time", "checkpoints): 58 s wall time")
  assert edited != readme
  problems = doc_tables.check(ROOT, {"README.md": edited})
  assert len(problems) == 1 and "paper_protocol.random_split.train_s" in problems[0]


def test_a_hand_written_table_with_numbers_is_reported():
  results = read("docs/results.md") + "\n| run | Dice |\n|---|---|\n| mine | 0.99 |\n"
  problems = doc_tables.check(ROOT, {"docs/results.md": results})
  assert problems == ["docs/results.md: table row with numbers outside a generated block: "
                      "| mine | 0.99 |"]


def test_write_restores_an_edited_block():
  src = doc_tables.Sources(ROOT)
  readme = read("README.md")
  edited = readme.replace("| 0.9730 |", "| 0.9731 |")
  assert doc_tables.render(edited, src) == readme


def test_spread_is_the_population_sd():
  # [1, 3]: population sd 1 (ddof=0); the sample sd would be 1.4142.
  assert doc_tables.mean_sd([1.0, 3.0]) == "2.0000 ± 1.0000"


def test_unknown_block_name_fails():
  with pytest.raises(KeyError, match="nonexistent"):
    doc_tables.render("<!-- generated:nonexistent -->\nx\n<!-- /generated:nonexistent -->",
                      doc_tables.Sources(ROOT))
