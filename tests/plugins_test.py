"""A lab's own config, model and measurement, as the docs show them, run by
the installed cgjax-train from the lab's folder (no PYTHONPATH, no
checkout on the path)."""
import os
import subprocess
import sys

import jax
import numpy as np

from cgjax import workdir as workdir_lib
from tests import doc_blocks
from tests.conftest import load_params

CGJAX_TRAIN = os.path.join(os.path.dirname(sys.executable), 'cgjax-train')


def _howto_commands() -> list[str]:
  block = next(b for b in doc_blocks.blocks('docs/howto.md')
               if 'my_lab/digits_noise.py' in b.text and b.kind == 'run')
  return block.commands()


def _lab(tmp_path):
  doc_blocks.docs_folder(str(tmp_path), lab_only=True)
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  env.update(JAX_PLATFORMS='cpu',
             PATH=f'{os.path.dirname(CGJAX_TRAIN)}:{env["PATH"]}')
  return env


def _cgjax_train(command, tmp_path, env, check=True):
  assert command.startswith('cgjax-train '), command
  assert os.path.exists(CGJAX_TRAIN), (
      f'{CGJAX_TRAIN} missing: pip install -r requirements-dev.txt installs '
      'cgjax (editable)')
  proc = subprocess.run(command, shell=True, cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=300)
  if check:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  return proc


def test_the_howtos_lab_runs_with_its_own_model_and_measurement(tmp_path):
  env = _lab(tmp_path)
  run, sweep = _howto_commands()
  proc = _cgjax_train(run, tmp_path, env)
  workdir = str(tmp_path / 'runs' / 'c')
  assert workdir_lib.read_status(workdir) == 'done'
  # my_lab.wide_mlp on 8x8 digits: 64 -> 512 -> 10, with biases.
  assert 'model my_lab.wide_mlp: 38,410 parameters' in proc.stdout
  assert 38410 == 64 * 512 + 512 + 512 * 10 + 10
  # my_lab.weight_norm at the last step: 2 x the params' squared norm.
  rows = workdir_lib.read_metrics(workdir)
  last = max(r['step'] for r in rows)
  logged = [r['value'] for r in rows
            if r['name'] == 'wnorm/sq_norm' and r['step'] == last]
  params = load_params(workdir, last)
  expected = 2.0 * sum(float(np.sum(np.square(np.asarray(x, np.float64))))
                       for x in jax.tree.leaves(params))
  assert logged and np.isclose(logged[0], expected, rtol=1e-5), (logged,
                                                                  expected)
  # The sweep line, checked: every trial resolves and validates.
  printed = _cgjax_train(sweep + ' --print-commands', tmp_path, env)
  assert len(printed.stdout.splitlines()) == 6, printed.stdout


def test_a_missing_plug_in_says_where_it_looked(tmp_path):
  env = _lab(tmp_path)
  run = _howto_commands()[0].replace('runs/c', 'runs/bad')
  for flag, kind in (('--config.model.name=my_lab.nope', 'model'),
                     ('--config.measurements.wnorm.type=my_lab.nope',
                      'measurement type')):
    proc = _cgjax_train(f'{run} {flag}', tmp_path, env, check=False)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: unknown {kind} 'my_lab.nope'"), proc.stderr
    assert (f'{tmp_path} (the current directory)' in lines[0]
            and f"{tmp_path}/my_lab (the config file's folder)" in lines[0])
  assert not (tmp_path / 'runs' / 'bad').exists()


def test_cgjax_train_help_lists_the_flags(tmp_path):
  proc = _cgjax_train('cgjax-train --help', tmp_path, _lab(tmp_path))
  assert proc.stdout.startswith('Launches one cgjax training run.')
  for flag in ('--config', '--sweep', '--print-commands', '--check',
               '--evaluate', '--restart'):
    assert f'  {flag}' in proc.stdout, flag
  assert 'cgjax-train --config configs/mnist_mlp.py' in proc.stdout
