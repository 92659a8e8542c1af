"""cgjax.runs (the Python API for runs), `--evaluate` on a checkpoint, and
the notebook executed on a two-trial sweep of 20-step runs."""
import glob
import json
import os
import re
import shutil
import site
import subprocess
import sys

import nbformat
import numpy as np
import pytest

from cgjax import data as data_lib
from cgjax import measurements
from cgjax import models
from cgjax import runs
from cgjax import sweep as sweep_lib
from cgjax import train
from configs import mnist_mlp
from tests import doc_blocks
from tests.conftest import ROOT, run_python

TRIALS = [{'noise.rate': 0.0}, {'noise.rate': 0.5}]


def _config(rate):
  config = mnist_mlp.get_config('runlocal')
  config.noise.rate = rate
  return config


@pytest.fixture(scope='module')
def sweep_dir(tmp_path_factory):
  """A sweep dir as `launch.py --sweep` leaves it, its trials run here."""
  root = tmp_path_factory.mktemp('sweep')
  for trial in TRIALS:
    train.train_and_evaluate(_config(trial['noise.rate']),
                             str(root / sweep_lib.trial_name(trial)))
  with open(root / 'sweep.json', 'w') as f:
    json.dump({'config': 'configs/mnist_mlp.py:runlocal', 'flags': [],
               'trials': [{'name': sweep_lib.trial_name(t), 'overrides': t}
                          for t in TRIALS]}, f)
  return str(root)


def test_metrics_frame_holds_every_row_of_metrics_jsonl(sweep_dir):
  run = runs.load(os.path.join(sweep_dir, 'noise.rate=0.5'))
  assert isinstance(run, runs.Run)
  frame = run.metrics
  rows = [json.loads(line) for line in open(
      os.path.join(run.workdir, 'metrics.jsonl'))]
  assert len(rows) > 100
  for row in rows:  # every row at its (step, name), by a plain loop
    assert frame.loc[row['step'], row['name']] == row['value'], row
  assert frame.notna().sum().sum() == len({(r['step'], r['name'])
                                           for r in rows})
  assert run.config.noise.rate == 0.5
  assert run.status['state'] == 'done' and run.status['step'] == 20


def test_per_example_arrays_and_restored_params(sweep_dir):
  run = runs.load(os.path.join(sweep_dir, 'noise.rate=0.5'))
  files = run.per_example()
  with np.load(os.path.join(run.workdir, 'learning.npz')) as saved:
    assert sorted(files['learning']) == sorted(saved.files)
    for name in saved.files:
      np.testing.assert_array_equal(files['learning'][name], saved[name])
  assert {k: len(v) for k, v in files['probe_ids'].items()} == {
      'clean': 50, 'noisy': 50, 'test': 50}
  assert run.checkpoint_steps() == [10, 20]
  state = run.restore()
  assert int(state['step']) == 20
  # The restored params reproduce the logged test accuracy (a plain numpy
  # argmax over the whole test set, not the evaluation measurement's code).
  config = run.config
  dataset = data_lib.load(config.data, config.noise)
  model = models.get_model(config.model.name, dataset.num_classes,
                           **config.model.kwargs)
  logits = model.apply({'params': state['params']}, dataset.test.images)
  accuracy = np.mean(np.argmax(logits, -1) == dataset.test.labels)
  assert accuracy == pytest.approx(run.metrics.loc[20, 'eval/test_acc'],
                                   abs=1e-6)
  assert accuracy > 0.3
  with pytest.raises(ValueError, match='no step 15.*saved: \\[10, 20\\]'):
    run.restore(15)


def test_sweep_table_in_trial_order(sweep_dir):
  sweep = runs.load(sweep_dir)
  assert isinstance(sweep, runs.Sweep)
  assert [r.overrides for r in sweep] == TRIALS
  table = sweep.table(['eval/test_acc', 'no/such_metric'])
  assert list(table['noise.rate']) == [0.0, 0.5]
  assert list(table['state']) == ['done', 'done']
  for run, acc in zip(sweep, table['eval/test_acc']):
    last = [json.loads(l) for l in open(os.path.join(run.workdir,
                                                     'metrics.jsonl'))]
    assert acc == [r['value'] for r in last
                   if r['name'] == 'eval/test_acc'][-1]
  assert table['no/such_metric'].isna().all()
  # By default the headline metrics the measurements declare: accuracies
  # and the probes' m-coherence, not every loss and norm.
  default = sweep.table().columns
  assert {'eval/test_acc', 'eval/clean_acc', 'probe/clean/m_coherence'} <= set(
      default) and 'eval/test_loss' not in default, default


def test_evaluate_a_checkpoint_with_a_new_probe(sweep_dir):
  run = runs.load(os.path.join(sweep_dir, 'noise.rate=0.5'))
  before = sorted(os.listdir(run.workdir))
  # The run's own measurements on the newest checkpoint reproduce what
  # training logged there.
  again = run.evaluate()
  logged = run.metrics.loc[20]
  for name in ('eval/test_acc', 'eval/clean_loss'):
    assert again[name] == pytest.approx(logged[name], rel=1e-6), name
  # A measurement the run never had, on a step its schedule (step 0) lacks:
  # a 'norms' probe of 20 test examples.
  probe = measurements.spec('coherence', m=20, sets=('test',),
                            statistics='norms', microbatch_size=10,
                            at_end=False)
  scalars = run.evaluate(step=10, measurements={'big': probe})
  assert 0 < scalars['big/test/m_coherence'] <= 20
  out = os.path.join(run.workdir, 'evaluations', 'step_10')
  saved = json.load(open(os.path.join(out, 'metrics.json')))
  assert saved['step'] == 10 and saved['metrics'] == scalars
  assert os.path.exists(os.path.join(out, 'big_ids.json'))
  assert sorted(os.listdir(run.workdir)) == sorted(before + ['evaluations'])
  changed = _config(0.5)
  changed.optim.lr = 0.5
  with pytest.raises(ValueError, match='optim.lr'):
    train.evaluate(changed, run.workdir)
  with pytest.raises(ValueError, match='no checkpoint at step 7'):
    train.evaluate(_config(0.5), run.workdir, 7)


def test_evaluate_without_checkpoints_writes_nothing(sweep_dir, tmp_path):
  shutil.copy(os.path.join(sweep_dir, 'noise.rate=0.5', 'config.json'),
              tmp_path)
  with pytest.raises(ValueError, match='has no checkpoint; saved steps: none'):
    train.evaluate(_config(0.5), str(tmp_path))
  assert os.listdir(tmp_path) == ['config.json']
  with pytest.raises(ValueError, match='is not a run workdir'):
    train.evaluate(_config(0.5), str(tmp_path / 'missing'))


def test_launch_evaluate_writes_beside_the_run(sweep_dir):
  workdir = os.path.join(sweep_dir, 'noise.rate=0.0')
  proc = run_python(['launch.py', '--config', 'configs/mnist_mlp.py:runlocal',
                     '--config.noise.rate=0.0', '--workdir', workdir,
                     '--evaluate', '--step', '10'])
  assert 'evaluating' in proc.stdout and 'final:' in proc.stdout
  saved = json.load(open(os.path.join(workdir, 'evaluations', 'step_10',
                                      'metrics.json')))
  logged = runs.load(workdir).metrics.loc[10]
  assert saved['metrics']['eval/test_acc'] == pytest.approx(
      logged['eval/test_acc'], rel=1e-6)


def readme_install_command() -> str:
  """The install half of README.md's first command (`... && python launch.py
  ...`)."""
  with open(os.path.join(ROOT, 'README.md')) as f:
    return re.search(r'\n    (.+?) && python launch.py', f.read()).group(1)


def fresh_clone_with_venv(tmp_path) -> tuple[str, str, dict]:
  """A copy of the checkout's tracked files and a fresh venv, in which the
  README's install command ran: (clone, its python, the env to use).
  The venv sees this environment's packages (no download) and pip builds
  cgjax from the clone without an index."""
  clone = str(tmp_path / 'clone')
  for path in subprocess.run(['git', 'ls-files'], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split():
    if os.path.lexists(os.path.join(ROOT, path)):
      os.makedirs(os.path.dirname(os.path.join(clone, path)), exist_ok=True)
      shutil.copy2(os.path.join(ROOT, path), os.path.join(clone, path),
                   follow_symlinks=False)
  venv = str(tmp_path / 'venv')
  subprocess.run([sys.executable, '-m', 'venv', venv], check=True)
  # It sees this environment's packages (no download) through a .pth file
  # (--system-site-packages would give the base interpreter's, not this
  # venv's), and their setuptools: the one venv bundles (65.5 with Python
  # 3.11) has no bdist_wheel beside a current wheel package.
  site_dir, = glob.glob(os.path.join(venv, 'lib', 'python*', 'site-packages'))
  for bundled in glob.glob(os.path.join(site_dir, 'setuptools*')) + glob.glob(
      os.path.join(site_dir, '_distutils_hack')) + glob.glob(
          os.path.join(site_dir, 'distutils-precedence.pth')):
    shutil.rmtree(bundled) if os.path.isdir(bundled) else os.remove(bundled)
  with open(os.path.join(site_dir, 'parent_env.pth'), 'w') as f:
    f.write('\n'.join(site.getsitepackages()) + '\n')
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  env.update(PATH=f'{venv}/bin:{env["PATH"]}', VIRTUAL_ENV=venv,
             PIP_NO_INDEX='1', PIP_NO_BUILD_ISOLATION='0',
             PIP_DISABLE_PIP_VERSION_CHECK='1', JAX_PLATFORMS='cpu')
  install = subprocess.run(readme_install_command(), shell=True, cwd=clone,
                           env=env, capture_output=True, text=True,
                           timeout=300)
  assert install.returncode == 0, install.stderr
  return clone, f'{venv}/bin/python', env


EXECUTE = """
import sys, nbclient, nbformat
notebook = nbformat.read(sys.argv[1], 4)
notebook.cells.append(nbformat.v4.new_code_cell(
    'import cgjax, os; print(os.path.dirname(cgjax.__file__), os.getcwd())'))
nbclient.NotebookClient(notebook, timeout=300, kernel_name='python3',
                        resources={'metadata': {'path': sys.argv[2]}}).execute()
nbformat.write(notebook, sys.argv[3])
"""


def test_notebook_runs_after_the_readme_install(sweep_dir, tmp_path):
  """As Jupyter runs it from a fresh clone: the kernel in notebooks/, cgjax
  importable there only because the README's command installed it."""
  clone, python, env = fresh_clone_with_venv(tmp_path)
  where = os.path.join(clone, 'notebooks')
  done = str(tmp_path / 'executed.ipynb')
  proc = subprocess.run([python, '-c', EXECUTE,
                         os.path.join(where, 'coherence.ipynb'), where, done],
                        env=dict(env, CGJAX_SWEEP=sweep_dir), cwd=where,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  notebook = nbformat.read(done, 4)
  outputs = [o for c in notebook.cells if c.cell_type == 'code'
             for o in c.outputs]
  assert not [o for o in outputs if o.output_type == 'error']
  assert not [o.text for o in outputs if o.get('name') == 'stderr']
  figures = [o for o in outputs if 'image/png' in o.get('data', {})]
  assert len(figures) == 2
  assert any('parameters' in o.get('text', '') for o in outputs)
  assert outputs[-1]['text'].split() == [os.path.join(clone, 'cgjax'), where]

def _docs_sandbox(tmp_path, sweep_dir) -> str:
  """A folder as the docs' commands assume one: the checkout's top level
  (linked), the example lab, and small runs under the names the docs use."""
  box = tmp_path / 'box'
  box.mkdir()
  doc_blocks.docs_folder(str(box))
  shutil.copytree(sweep_dir, box / 'runs' / 'noise_sweep')
  for seed in range(3):  # one seed's run three times (repeats, as labeled)
    shutil.copytree(os.path.join(sweep_dir, 'noise.rate=0.5'),
                    box / 'runs' / f'seed{seed}')
  return str(box)


def test_the_docs_code_blocks_run(sweep_dir, tmp_path):
  """Every `run` and `long` block of README.md and docs/ as
  tests/doc_blocks.py says: a training command checked (--check), the
  rest executed; each must exit 0."""
  box = _docs_sandbox(tmp_path, sweep_dir)
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT,
             PATH=f'{os.path.dirname(sys.executable)}:{os.environ["PATH"]}')
  ran = []
  for block in doc_blocks.all_blocks():
    if block.kind not in ('run', 'long'):
      continue
    if block.lang == 'python':
      proc = subprocess.run([sys.executable, '-c', block.text], cwd=box,
                            env=env, capture_output=True, text=True,
                            timeout=300)
      assert proc.returncode == 0, f'{block.where}: {proc.stderr[-2000:]}'
      ran.append(block.where)
      continue
    for line in block.commands():
      command = doc_blocks.suite_command(line, block.kind)
      if command is None:
        continue
      proc = subprocess.run(command, shell=True, cwd=box, env=env,
                            executable='/bin/bash', capture_output=True,
                            text=True, timeout=300)
      assert proc.returncode == 0, (
          f'{block.where}: {command}\n{proc.stdout[-1500:]}'
          f'{proc.stderr[-1500:]}')
      ran.append(command)
  assert len(ran) >= 20, ran
  # Checked commands wrote nothing: the runs the docs name are still the
  # sandbox's own, and no new ones appeared.
  assert sorted(os.listdir(os.path.join(box, 'runs'))) == [
      'noise_sweep', 'seed0', 'seed1', 'seed2']
