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
