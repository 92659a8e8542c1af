"""Nothing lost: a relaunch never shortens a run's records, no non-finite
state is saved, foreign checkpoints are set aside, litter is cleaned, and
bad input ends in one line before anything is written. Each fault is set up
by hand or at a chosen step; no test depends on wall-clock timing."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cgjax import workdir as workdir_lib
from cgjax.workdir import lock as lock_lib
from tests.conftest import ROOT, load_params, metric_rows, run_python

CONFIG = 'tests/sweep_config.py'  # 12 steps, checkpoints at 4, 8, 12


def _launch(workdir, *flags, check=True):
  return run_python(['launch.py', '--config', CONFIG, '--workdir',
                     str(workdir), *flags], check=check)


def _one_error_line(proc, *needles):
  assert proc.returncode != 0, proc.stdout
  assert 'Traceback' not in proc.stderr, proc.stderr
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert lines and lines[-1].startswith('error: '), proc.stderr
  for needle in needles:
    assert needle in lines[-1], lines[-1]
  return lines[-1]


@pytest.fixture(scope='module')
def finished(tmp_path_factory):
  """A finished run (status done, 12 steps), to copy per test."""
  workdir = tmp_path_factory.mktemp('finished') / 'run'
  _launch(workdir)
  return workdir


def _copy(finished, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(finished, workdir)
  return workdir


def test_a_run_without_its_checkpoints_or_metrics_is_refused(finished,
                                                             tmp_path):
  """Deleted checkpoints/ (disk cleanup) or metrics.jsonl: refused in one
  line naming what is missing and --restart, nothing changed; --restart
  moves the old records aside and reruns the same run."""
  workdir = _copy(finished, tmp_path)
  rows, status = metric_rows(workdir), (workdir / 'status.json').read_text()
  shutil.rmtree(workdir / 'checkpoints')
  litter = ['learning.npz.tmp4242', 'status.json.tmp', 'lock.json.tmp']
  for name in litter:  # temp files of writes that died midway
    (workdir / name).write_text('half')
  refused = _launch(workdir, check=False)
  _one_error_line(refused, 'whose checkpoint of step 12 is gone', '--restart')
  for name in litter:
    assert f'removed {name}, left by a write that died midway' in (
        refused.stdout), refused.stdout
    assert not (workdir / name).exists()
  assert metric_rows(workdir) == rows  # before: rewritten from step 0
  assert (workdir / 'status.json').read_text() == status
  assert not (workdir / 'checkpoints').exists()

  restarted = _launch(workdir, '--restart')
  assert f'moved the old records of {workdir} to {workdir}/restart_1' in (
      restarted.stdout)
  assert metric_rows(workdir / 'restart_1') == rows  # kept whole
  assert metric_rows(workdir) == rows  # the same run again
  assert workdir_lib.read_status(str(workdir)) == 'done'

  saved = workdir_lib.saved_steps(str(workdir))
  (workdir / 'metrics.jsonl').unlink()
  _one_error_line(_launch(workdir, check=False), 'metrics.jsonl is missing',
                  'checkpoints up to step 12', '--restart')
  assert workdir_lib.saved_steps(str(workdir)) == saved and saved[-1] == 12


def test_divergence_between_log_lines_saves_no_nan(tmp_path):
  """lr 1e8: the loss is NaN from step 4, the next log line is at step 10,
  a checkpoint is due every step. The run stops at step 4, every checkpoint
  kept is finite, and the status names the last good one."""
  workdir = tmp_path / 'run'
  proc = run_python(['launch.py', '--config', 'tests/diverge_config.py',
                     '--workdir', str(workdir)], check=False)
  assert proc.returncode == 3, proc.stdout + proc.stderr
  status = workdir_lib.read_status_file(str(workdir))
  assert status['state'] == 'diverged' and status['step'] == 4, status
  assert 'the last good checkpoint is step 3' in status['message']
  saved = workdir_lib.saved_steps(str(workdir))
  assert saved == [2, 3]  # before: 9 and 10, both NaN
  for step in saved:
    for leaf in jax_leaves(load_params(str(workdir), step)):
      assert np.all(np.isfinite(leaf)), step


def jax_leaves(tree):
  import jax  # pylint: disable=g-import-not-at-top
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_checkpoints_of_another_run_are_set_aside(finished, tmp_path):
  """Seed 1's checkpoints copied into the seed-0 run: each is moved aside
  with a warning naming both fingerprints, and the run is refused (no
  checkpoint of its own left) instead of finishing with seed 1's params."""
  workdir = _copy(finished, tmp_path)
  other = tmp_path / 'seed1'
  _launch(other, '--config.seed=1')
  shutil.rmtree(workdir / 'checkpoints')
  shutil.copytree(other / 'checkpoints', workdir / 'checkpoints')
  proc = _launch(workdir, check=False)
  assert 'checkpoints/12 belongs to another run (config fingerprint' in (
      proc.stdout), proc.stdout
  _one_error_line(proc, 'whose checkpoint of step 12 is gone')
  assert sorted(os.listdir(workdir / 'unrestorable_checkpoints')) == sorted(
      str(s) for s in workdir_lib.saved_steps(str(other)))
  assert workdir_lib.read_status(str(workdir)) == 'done'


def test_unfinished_orbax_checkpoints_are_removed(finished, tmp_path):
  workdir = _copy(finished, tmp_path)
  orbax_tmp = workdir / 'checkpoints' / '13.orbax-checkpoint-tmp-1234'
  orbax_tmp.mkdir()
  (orbax_tmp / 'x').write_text('half')
  assert workdir_lib.remove_litter(str(workdir)) == [
      'checkpoints/13.orbax-checkpoint-tmp-1234']
  assert not orbax_tmp.exists() and workdir_lib.saved_steps(str(workdir))


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
  parent = tmp_path / 'parent'
  parent.mkdir()
  bad = tmp_path / 'bad_config.py'
  cases = [
      (['--config.optim.lr=-1'], 'optim.lr'),
      (['--config.optim.aggregator=winsorize', '--config.optim.winsorize_c=-1'],
       'optim.winsorize_c must be >= 0, got -1'),
      (['--config.measurements.probe.steps=(1,abc)'],
       'measurements.probe.steps must be integers >= 0'),
      (['--parallel', '2'], '--parallel'),
      (['--config.num_steps=1000000000000'], 'would run at about'),
  ]
  for flags, needle in cases:
    _one_error_line(_launch(parent / 'run', *flags, check=False), needle)
  no_config = run_python(['launch.py', '--workdir', str(parent / 'run')],
                         check=False)
  shipped = sorted(n for n in os.listdir(os.path.join(ROOT, 'configs'))
                   if n.endswith('.py')
                   and n not in ('__init__.py', 'common.py'))
  assert no_config.stderr.strip().splitlines() == [
      'error: --config is required, e.g. --config mnist_mlp.py:noise=0.5 '
      f"(cgjax's configs: {', '.join(shipped)}) (python launch.py --help "
      'lists the flags)'], no_config.stderr
  for text, needle in [('def get_config(:\n', 'SyntaxError'),
                       ('x = 1\n', 'defines no get_config'),
                       ('def get_config(arg):\n  raise RuntimeError("boom")\n',
                        'raised RuntimeError: boom')]:
    bad.write_text(text)
    for sweep in ([], ['--sweep']):
      proc = run_python(['launch.py', '--config', str(bad), '--workdir',
                         str(parent / 'run'), *sweep], check=False,
                        own_cache=True)
      _one_error_line(proc, needle, str(bad))
  assert os.listdir(parent) == []  # no run dir, no .jax_cache beside it
  assert 'jax_cache' not in ' '.join(os.listdir(tmp_path))


def test_a_sweep_validates_every_trial_before_starting_one(tmp_path):
  proc = run_python(['launch.py', '--config', CONFIG, '--sweep', '--workdir',
                     str(tmp_path / 'sweep'), '--config.optim.lr=-1'],
                    check=False)
  _one_error_line(proc, 'trial noise.rate=0.0:', 'optim.lr')
  assert not (tmp_path / 'sweep').exists()


def test_evaluate_refuses_a_training_run_and_writes_where_told(finished,
                                                               tmp_path):
  workdir = _copy(finished, tmp_path)
  lock = {'host': os.uname().nodename, 'pid': os.getpid(),
          'pid_start': lock_lib._started_at(os.getpid()),  # pylint: disable=protected-access
          'start': time.time(), 'heartbeat': time.time(), 'token': 'x'}
  (workdir / 'lock.json').write_text(json.dumps(lock))
  _one_error_line(_launch(workdir, '--evaluate', check=False), 'is training',
                  f'pid {os.getpid()}')
  (workdir / 'lock.json').unlink()
  before = sorted(os.listdir(workdir))
  out = tmp_path / 'elsewhere'
  _launch(workdir, '--evaluate', '--out', str(out))
  assert sorted(os.listdir(workdir)) == before  # nothing written there
  assert json.loads((out / 'metrics.json').read_text())['step'] == 12


def test_a_sweep_driver_passes_sigterm_to_its_trial(tmp_path):
  """SIGTERM to the driver alone: its running trial checkpoints and stops,
  the driver exits 75 with one line (before: 143, the trial an orphan), and
  the relaunch resumes the trial."""
  sweep_dir = tmp_path / 'sweep'
  first = sweep_dir / 'noise.rate=0.0'
  argv = [sys.executable, 'launch.py', '--config', f'{CONFIG}:one',
          '--sweep', '--workdir', str(sweep_dir)]  # one trial is enough
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
  driver = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 240
  while not workdir_lib.has_metrics(str(first)):  # the trial is training
    assert driver.poll() is None, driver.communicate()
    assert time.time() < deadline
    time.sleep(0.2)
  driver.send_signal(signal.SIGTERM)
  out, err = driver.communicate(timeout=240)
  assert driver.returncode == 75, out + err
  assert err.strip().splitlines()[-1].startswith('[sweep] SIGTERM: the '
                                                 'running trials checkpointed')
  assert workdir_lib.read_status(str(first)) in ('preempted', 'done')
  assert workdir_lib.owner_of(str(first), float('inf')) is None  # no orphan
  again = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=240)
  assert again.returncode == 0, again.stdout + again.stderr
  assert '1/1 trials done' in again.stdout, again.stdout


def test_sigterm_during_a_probe_stops_within_the_step(finished, tmp_path):
  """SIGTERM as step 8's measurements start: the probe stops at its next
  chunk instead of finishing, step 8 is checkpointed, and the relaunch runs
  step 8's measurements again: the run's rows are the uninterrupted ones."""
  workdir = tmp_path / 'run'
  proc = run_python(['-m', 'tests.fault_launch', 'TERM_IN_MEASURE', '8',
                     '--config', CONFIG, '--workdir', str(workdir)],
                    check=False)
  assert proc.returncode == 75, proc.stdout + proc.stderr
  assert 'step 8: measurements interrupted by a stop request' in proc.stdout
  assert workdir_lib.read_status_file(str(workdir))['step'] == 8
  assert not [r for r in metric_rows(workdir)
              if r['step'] == 8 and r['name'].startswith('probe/')]
  again = _launch(workdir).stdout
  assert f'resuming {workdir} from step 8' in again
  assert metric_rows(workdir) == metric_rows(finished)


def test_a_full_disk_during_a_checkpoint_never_hangs(tmp_path):
  """ENOSPC from the step-8 checkpoint, with a background writer that never
  ends: one line naming the file and the errno, status failed, and the
  process gone (before: it waited on the writer forever)."""
  workdir = tmp_path / 'run'
  proc = subprocess.run(
      [sys.executable, '-m', 'tests.fault_launch', 'ENOSPC_IN_SAVE', '8',
       '--config', CONFIG, '--workdir', str(workdir)], cwd=ROOT,
      env=dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT,
               CGJAX_EXIT_SECONDS='2'),
      capture_output=True, text=True, timeout=240)  # a guard, never reached
  _one_error_line(proc, '[Errno 28] No space left on device',
                  f'{workdir}/checkpoints/8')
  status = workdir_lib.read_status_file(str(workdir))
  assert status['state'] == 'failed' and status['step'] == 8, status


def test_a_sweep_leaves_live_trials_to_their_owner_and_takes_stale_ones(
    tmp_path):
  """Trial 1 owned by a live process (a first copy of the sweep): the second
  copy names it as run elsewhere and does not fail for it. Trial 2's lock
  names a live pid with a heartbeat older than lock_stale_after: nobody's,
  as for a launch, so the sweep runs it."""
  def lock(trial, heartbeat):
    (tmp_path / trial).mkdir()
    (tmp_path / trial / 'lock.json').write_text(json.dumps(
        {'host': os.uname().nodename, 'pid': os.getpid(),
         'pid_start': lock_lib._started_at(os.getpid()),  # pylint: disable=protected-access
         'start': 0, 'heartbeat': heartbeat, 'token': 'x'}))
  lock('noise.rate=0.0', time.time())
  lock('noise.rate=0.5', time.time() - 1000)
  out = run_python(['launch.py', '--config', CONFIG, '--sweep', '--workdir',
                    str(tmp_path)]).stdout
  assert f'noise.rate=0.0: running (pid {os.getpid()} on' in out, out
  assert ('[sweep] run by another process (see above), not here: '
          'noise.rate=0.0') in out
  assert workdir_lib.read_status(str(tmp_path / 'noise.rate=0.5')) == 'done'
