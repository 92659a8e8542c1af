"""Sweeps through launch.py: kill midway, relaunch; commands; the report."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cgjax import sweep
from cgjax import workdir as workdir_lib
from tests.conftest import ROOT, run_python, tensorboard_hparams

CONFIG = 'tests/sweep_config.py'


def _launch_sweep(sweep_dir):
  return subprocess.Popen(
      [sys.executable, 'launch.py', '--config', CONFIG, '--sweep',
       '--workdir', sweep_dir], cwd=ROOT, stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True, start_new_session=True,
      env={**{k: v for k, v in os.environ.items()
              if k != 'JAX_COMPILATION_CACHE_DIR'},  # the sweep's own cache
           'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': ROOT})


@pytest.fixture(scope='module')
def killed_and_resumed(tmp_path_factory):
  """A sweep killed (with its trial) during trial 2, then relaunched."""
  sweep_dir = str(tmp_path_factory.mktemp('sweep'))
  first, second = (os.path.join(sweep_dir, n)
                   for n in ('noise.rate=0.0', 'noise.rate=0.5'))
  proc = _launch_sweep(sweep_dir)
  deadline = time.time() + 240
  while workdir_lib.read_status(second) != 'running':
    assert proc.poll() is None, proc.stdout.read()
    assert time.time() < deadline, 'trial 2 never started'
    time.sleep(0.1)
  os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its running trial
  proc.wait()
  # The trial holds its workdir lock until it is gone; a relaunch before
  # that would rightly leave it to its (dying) owner.
  while workdir_lib.owner_of(second, stale_after=float('inf')) is not None:
    assert time.time() < deadline, 'the killed trial never exited'
    time.sleep(0.1)
  assert workdir_lib.read_status(first) == 'done'
  assert workdir_lib.read_status(second) == 'running'
  with open(os.path.join(first, 'metrics.jsonl'), 'rb') as f:
    first_metrics = f.read()
  first_mtime = os.path.getmtime(os.path.join(first, 'metrics.jsonl'))
  again = _launch_sweep(sweep_dir)
  out = again.communicate(timeout=240)[0]
  assert again.returncode == 0, out
  return sweep_dir, first, second, first_metrics, first_mtime, out


def test_trials_of_one_seed_share_the_test_probe(killed_and_resumed):
  """Noise 0 and 0.5 with one seed: the same test examples, so the same
  step-0 test m-coherence (the params at step 0 depend on the seed alone)."""
  _, first, second = killed_and_resumed[:3]
  ids = [json.load(open(os.path.join(w, 'probe_ids.json'))) for w in
         (first, second)]
  assert ids[0]['test'] == ids[1]['test'] and len(ids[0]['test']) == 20
  step0 = [[r['value'] for r in workdir_lib.read_metrics(w)
            if r['name'] == 'probe/test/m_coherence' and r['step'] == 0]
           for w in (first, second)]
  assert step0[0] == step0[1] and len(step0[0]) == 1


def test_relaunch_skips_finished_and_completes_the_rest(killed_and_resumed):
  sweep_dir, first, second, first_metrics, first_mtime, out = killed_and_resumed
  assert 'noise.rate=0.0: done already, skipped' in out, out
  assert '[sweep] resuming noise.rate=0.5' in out or \
      '[sweep] starting noise.rate=0.5' in out, out
  assert workdir_lib.read_status(second) == 'done'
  with open(os.path.join(first, 'metrics.jsonl'), 'rb') as f:
    assert f.read() == first_metrics  # not redone
  assert os.path.getmtime(os.path.join(first, 'metrics.jsonl')) == first_mtime
  assert '2/2 trials done' in out
  assert 'sweep ETA' in out
  # TensorBoard on the sweep dir: each trial a run named by its dir, its
  # setting in the HParams tab (the killed trial's too, written before).
  for trial, rate in ((first, 0.0), (second, 0.5)):
    hparams, columns = tensorboard_hparams(trial)
    assert hparams['noise.rate'] == rate and 'eval/test_acc' in columns
  # The trials share one persistent XLA cache beside them (launch.py's
  # --jax_cache_dir default), which the resumed trial read from.
  assert os.listdir(os.path.join(sweep_dir, '.jax_cache'))


def test_report_builds_every_figure_and_the_table(killed_and_resumed):
  sweep_dir = killed_and_resumed[0]
  run_python(['-m', 'experiments.report', sweep_dir])
  out = os.path.join(sweep_dir, 'report')
  names = ('coherence', 'rho', 'coherence_loss', 'accuracy', 'layers',
           'metrics', 'learning', 'shares', 'overfit')
  for name in names:
    for ext in ('png', 'pdf'):
      assert os.path.getsize(os.path.join(out, f'{name}.{ext}')) > 1000
  page = open(os.path.join(out, 'index.html')).read()
  assert page.count("<img") == len(names) and "noise.rate=0.5" in page
  assert 'peak m-coh clean (step)' in page and 'eval/<wbr>test_<wbr>acc' in page
  # noise 0 and 0.5 of one seed: the claims that need a partial rate
  assert 'Claims of the papers' in page and '4a: clean more coherent' in page
  # MNIST names no layers: that figure is left out, heading and all.
  assert 'named layers (first conv' not in page


def test_print_commands_one_per_trial(tmp_path):
  out = run_python(['launch.py', '--config', CONFIG, '--sweep',
                    '--print-commands', '--workdir', str(tmp_path),
                    '--config.seed=3']).stdout.strip().splitlines()
  assert out == [
      f'{sys.executable} {ROOT}/launch.py --config {ROOT}/{CONFIG} --workdir '
      f'{tmp_path}/{name} --config.seed=3 --config.noise.rate={rate}'
      for name, rate in (('noise.rate=0.0', 0.0), ('noise.rate=0.5', 0.5))]
  # Run as printed from another directory, with a relative --workdir and
  # config given to the sweep: the trial runs and writes where it says.
  elsewhere = tmp_path / 'elsewhere'
  elsewhere.mkdir()
  printed = run_python(['launch.py', '--config', CONFIG, '--sweep',
                        '--print-commands', '--workdir', 'rel_sweep',
                        '--config.num_steps=2']).stdout.split('\n')[0]
  assert f' --workdir {ROOT}/rel_sweep/noise.rate=0.0 ' in printed
  printed = printed.replace(f'{ROOT}/rel_sweep', str(tmp_path / 'sweep'))
  proc = subprocess.run(printed, shell=True, cwd=elsewhere, text=True,
                        capture_output=True, timeout=300,
                        env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert proc.returncode == 0, proc.stderr
  assert workdir_lib.read_status(
      str(tmp_path / 'sweep' / 'noise.rate=0.0')) == 'done'
  assert os.listdir(elsewhere) == []


def test_sweep_errors_name_the_problem(tmp_path):
  bad = run_python(['launch.py', '--config', 'tests/diverge_config.py',
                    '--sweep', '--workdir', str(tmp_path)], check=False)
  assert 'defines no get_sweep' in bad.stderr
  bad = run_python(['launch.py', '--config', CONFIG, '--sweep', '--workdir',
                    str(tmp_path), '--config.nope=1'], check=False)
  assert "unknown config key 'config.nope'" in bad.stderr
  bad = run_python(['launch.py', '--config', CONFIG, '--sweep', '--workdir',
                    str(tmp_path / 'sweep'), '--parallel', '0'], check=False)
  assert '--parallel must be >= 1, got 0' in bad.stderr
  assert not (tmp_path / 'sweep').exists()
  bad = run_python(['-m', 'experiments.report', str(tmp_path / 'missing')],
                   check=False)
  assert f"{str(tmp_path / 'missing')!r} is not a directory" in bad.stderr


def test_a_trial_arg_extends_the_config_arg():
  """{'arg': ...} goes into the config spec's arg, other keys are flags."""
  from cgjax import sweep  # pylint: disable=g-import-not-at-top
  trials = [{'arg': 'optimizer=m3', 'noise.rate': 0.5}, {'seed': 1}]
  (w1, argv1), (w2, argv2) = sweep.commands(
      'launch.py', 'configs/ws_imagenet.py:model=vgg13_bn', trials, 'S', [])
  assert w1 == os.path.join('S', 'optimizer=m3,noise.rate=0.5')
  assert argv1[2:] == ['--config', 'configs/ws_imagenet.py:model=vgg13_bn,'
                       'optimizer=m3', '--workdir', w1,
                       '--config.noise.rate=0.5']
  assert argv2[3] == 'configs/ws_imagenet.py:model=vgg13_bn'
  assert sweep.trial_spec('my_lab/x.py', {'arg': 'a=1'}) == 'my_lab/x.py:a=1'


def test_a_running_trials_latest_progress_line(tmp_path):
  log = tmp_path / 'log.txt'
  assert sweep._last_progress(str(log)) == ''  # not started yet
  log.write_text('[cgjax] step 0: test_acc=0.1\n'
                 '[cgjax] step 200/4000 (5%) | loss 1.8 | ETA 25.0s | time: x\n'
                 '[cgjax] step 400/4000 (10%) | loss 1.4 | ETA 17.7s | time: y\n'
                 '[cgjax] step 400: m-coherence clean=7.49\n')
  assert sweep._last_progress(str(log)) == (
      'step 400/4000 (10%) | loss 1.4 | ETA 17.7s | time: y')
