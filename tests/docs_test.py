"""The docs: the config reference is current and complete, and every file a
docstring, comment or doc cites exists in the repository."""
import os
import re
import subprocess

import pytest

from configs import common
from tests.conftest import ROOT

# Repository paths as text cites them: a top-level folder, then a file name
# with one of the repository's extensions; and upper-case notes (README.md,
# PAPERS.md). Lower-case *.md names are what scripts write (claims.md).
CITED = re.compile(r'\b((?:cgjax|configs|experiments|tests|benchmarks|docs|'
                   r'notebooks)/[\w/.-]*\.(?:py|md|ipynb)|[A-Z][A-Z_]*\.md)\b')


def test_config_reference_is_current():
  with open(os.path.join(ROOT, 'docs', 'config.md')) as f:
    assert f.read() == common.reference(), (
        'docs/config.md is stale: python -m configs.common > docs/config.md')


def test_an_undocumented_field_is_named():
  config = common.base_config()
  config.optim.new_knob = 3
  with pytest.raises(ValueError, match=r"\['optim.new_knob'\]"):
    common.reference(config)


def _tracked():
  out = subprocess.run(['git', 'ls-files'], cwd=ROOT, capture_output=True,
                       text=True, check=True).stdout.split()
  return [p for p in out if p.endswith(('.py', '.md', '.ipynb', '.toml'))
          or os.path.basename(p) == 'run']


def test_cited_files_exist():
  missing = []
  for path in _tracked():
    if path == 'tests/docs_test.py':  # its own examples of missing files
      continue
    with open(os.path.join(ROOT, path)) as f:
      text = f.read()
    for cited in set(CITED.findall(text)):
      if not os.path.exists(os.path.join(ROOT, cited)):
        missing.append(f'{path}: {cited}')
  assert not missing, missing


def test_the_check_sees_a_missing_file():
  assert CITED.findall('see PAPERS.md and cgjax/nothing.py, docs/x.md') == [
      'PAPERS.md', 'cgjax/nothing.py', 'docs/x.md']


def test_every_code_block_is_marked_and_fragments_compile():
  """Each block of README.md and docs/ says how the tests treat it
  (tests/doc_blocks.py); unmarked ones would rot unseen."""
  from tests import doc_blocks  # pylint: disable=g-import-not-at-top
  found = doc_blocks.all_blocks()
  assert len(found) >= 25, [b.where for b in found]
  unmarked = [b.where for b in found if b.kind not in doc_blocks.KINDS]
  assert not unmarked, f'blocks without a <!-- docs: KIND --> marker: {unmarked}'
  assert all(b.why for b in found if b.kind == 'not-cpu'), 'not-cpu needs why'
  for block in found:
    if block.kind == 'fragment' and block.lang == 'python':
      compile(block.text, block.where, 'exec')
  # The lab files the how-to and the README show, as tests/plugins_test.py
  # runs them.
  assert set(doc_blocks.lab_files()) == {
      'my_lab/weight_norm.py', 'my_lab/wide_mlp.py', 'my_lab/digits_noise.py'}


def test_a_training_line_is_checked_not_run():
  from tests import doc_blocks  # pylint: disable=g-import-not-at-top
  assert doc_blocks.suite_command(
      'pip install -e . && python launch.py --config configs/x.py', 'long'
  ) == 'python launch.py --config configs/x.py --check'
  assert doc_blocks.suite_command(
      'python -m experiments.claims --run --seeds 0 1  # slow', 'long'
  ) == 'python -m experiments.claims --help'
  assert doc_blocks.suite_command(
      'python -m experiments.report runs/s   # open it', 'run'
  ) == 'python -m experiments.report runs/s'
  assert doc_blocks.suite_command('sbatch --array=1-3 x', 'run') is None
