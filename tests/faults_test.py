"""Runs survive preemption, crashes, torn files, concurrent launches and full
disks, and come back bitwise equal to an uninterrupted run.

Faults are injected at a step (tests/fault_launch.py), never at a wall time,
and checkpoint writes are awaited before a fault, so nothing here depends on
timing. The reference is the uninterrupted run of train_test.py's config
(20 steps, checkpoints at 10 and 20, metrics every 2 steps).
"""
import json
import os
import shutil
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from cgjax import train
from cgjax import workdir as workdir_lib
from tests.conftest import load_params, metric_rows, run_python
from tests.train_test import CONFIG, FLAGS, _config


@pytest.fixture(scope='module')
def ref(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('ref'))
  train.train_and_evaluate(_config(), workdir)
  return workdir


def _args(workdir):
  return ['--config', CONFIG, '--workdir', str(workdir), *FLAGS]


def _fault(fault, step, workdir):
  return run_python(['-m', 'tests.fault_launch', fault, str(step),
                     *_args(workdir)], check=False)


def _status(workdir):
  return json.load(open(os.path.join(workdir, 'status.json')))


def _assert_same_as(ref, workdir):
  assert metric_rows(str(workdir)) == metric_rows(ref)
  jax.tree.map(np.testing.assert_array_equal, load_params(ref, 20),
               load_params(str(workdir), 20))


@pytest.mark.parametrize('fault,step,code,state', [
    ('TERM', 14, 75, 'preempted'), ('INT', 6, 130, 'interrupted')])
def test_a_stop_signal_checkpoints_the_step_and_resumes_bitwise(
    ref, tmp_path, fault, step, code, state):
  stopped = _fault(fault, step, tmp_path)
  assert stopped.returncode == code, stopped.stderr[-2000:]
  assert f'{state} at step {step}: checkpointed' in stopped.stdout
  status = _status(tmp_path)
  assert (status['state'], status['step']) == (state, step)
  assert status['heartbeat'] > 0
  assert str(step) in os.listdir(tmp_path / 'checkpoints')
  assert not (tmp_path / 'lock.json').exists()  # released
  resumed = run_python(['launch.py', *_args(tmp_path)])
  assert f'from step {step}\n' in resumed.stdout, resumed.stdout
  _assert_same_as(ref, tmp_path)


def test_torn_metrics_line_and_unrestorable_checkpoint(ref, tmp_path):
  """A crash mid-write leaves half a metrics row and a broken newest
  checkpoint: the row is dropped and the checkpoint set aside, both with a
  warning naming the file, and the run resumes from the previous one."""
  assert _fault('TERM', 14, tmp_path).returncode == 75
  with open(tmp_path / 'metrics.jsonl', 'a') as f:
    f.write('{"step": 14, "name": "eval/te')
  for root, _, files in os.walk(tmp_path / 'checkpoints' / '14'):
    for name in files:
      with open(os.path.join(root, name), 'wb') as f:
        f.write(b'\x00garbage')
  resumed = run_python(['launch.py', *_args(tmp_path)])
  out = resumed.stdout
  assert f'{tmp_path}/metrics.jsonl: dropped a torn last line' in out, out
  assert f'checkpoint {tmp_path}/checkpoints/14 does not restore' in out, out
  assert 'from step 10\n' in out, out
  assert (tmp_path / 'unrestorable_checkpoints' / '14').is_dir()
  _assert_same_as(ref, tmp_path)


def test_bad_metrics_line_inside_the_file_is_refused(ref, tmp_path):
  shutil.copytree(ref, tmp_path, dirs_exist_ok=True)
  lines = open(tmp_path / 'metrics.jsonl').readlines()
  lines[3] = 'not json\n'
  open(tmp_path / 'metrics.jsonl', 'w').writelines(lines)
  with pytest.raises(ValueError, match=r'metrics.jsonl, line 4: not a JSON '
                     'row'):
    workdir_lib.read_metrics(str(tmp_path))


def test_missing_config_next_to_a_runs_files_is_refused(ref, tmp_path):
  shutil.copytree(ref, tmp_path, dirs_exist_ok=True)
  os.remove(tmp_path / 'config.json')
  with pytest.raises(ValueError, match='config.json is missing but the '
                     'workdir holds checkpoints and metrics.jsonl'):
    train.train_and_evaluate(_config(), str(tmp_path))
  assert os.listdir(tmp_path / 'checkpoints')  # nothing deleted


def test_a_full_disk_is_one_line_and_the_relaunch_resumes(ref, tmp_path):
  failed = _fault('ENOSPC', 14, tmp_path)
  assert failed.returncode == 1
  assert 'Traceback' not in failed.stderr, failed.stderr[-2000:]
  last = failed.stderr.strip().splitlines()[-1]
  assert last == (f'error: [Errno 28] No space left on device: '
                  f"'{tmp_path}/metrics.jsonl'"), last
  status = _status(tmp_path)
  assert (status['state'], status['step']) == ('failed', 14)
  resumed = run_python(['launch.py', *_args(tmp_path)])
  assert 'from step 10\n' in resumed.stdout, resumed.stdout
  _assert_same_as(ref, tmp_path)


def test_a_workdir_that_is_a_file_is_one_line(tmp_path):
  path = tmp_path / 'file'
  path.write_text('x')
  out = run_python(['launch.py', *_args(path)], check=False)
  assert out.returncode == 1 and 'Traceback' not in out.stderr
  assert str(path) in out.stderr.strip().splitlines()[-1], out.stderr


def test_a_live_owner_keeps_the_workdir_and_a_dead_one_loses_it(tmp_path):
  lock = {'host': os.uname().nodename, 'pid': os.getpid(),
          'start': time.time(), 'heartbeat': time.time()}
  (tmp_path / 'lock.json').write_text(json.dumps(lock))
  refused = run_python(['launch.py', *_args(tmp_path)], check=False)
  assert refused.returncode == 1
  assert (f'in use by pid {os.getpid()} on {lock["host"]}'
          in refused.stderr), refused.stderr
  assert os.listdir(tmp_path) == ['lock.json']  # nothing written
  # A crashed owner: a pid of this host that no longer runs.
  dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                        capture_output=True, text=True, check=True)
  (tmp_path / 'lock.json').write_text(json.dumps(
      {**lock, 'pid': int(dead.stdout)}))
  taken = run_python(['launch.py', *_args(tmp_path), '--config.num_steps=2'])
  assert 'taking over the stale' in taken.stdout
  assert workdir_lib.read_status(str(tmp_path)) == 'done'


def test_tensorboard_is_flushed_at_each_checkpoint(tmp_path):
  """Killed at step 14, the TB events hold every scalar up to the step-10
  checkpoint, read as TensorBoard reads them: the kill may cut the last
  record short (CI met one), which TensorBoard's loader stops at."""
  from tensorboard.backend.event_processing import event_file_loader  # pylint: disable=g-import-not-at-top
  assert _fault('KILL', 14, tmp_path).returncode == -9
  steps = set()
  for name in os.listdir(tmp_path):
    if not name.startswith('events.out.tfevents.'):
      continue
    for event in event_file_loader.EventFileLoader(str(tmp_path / name)).Load():
      steps |= {event.step for v in event.summary.value
                if v.tag == 'eval/test_acc'}
  assert {0, 2, 4, 6, 8, 10} <= steps, steps


@pytest.mark.parametrize('overrides,message', [
    ({'optim.momentum': 1.5}, r'optim.momentum must be in \[0, 1\), got 1.5'),
    ({'optim.lr': float('nan')}, 'optim.lr must be a finite number > 0'),
    ({'optim.lr': -0.1}, 'optim.lr must be a finite number > 0'),
    ({'optim.weight_decay': -1.0}, 'optim.weight_decay must be a finite'),
    ({'optim.b2': 1.0}, r'optim.b2 must be in \[0, 1\)'),
    ({'optim.warmup_steps': -5}, 'optim.warmup_steps must be >= 0'),
    ({'optim.step_boundaries': (0.75, 0.5)}, 'strictly increasing'),
    ({'optim.step_boundaries': (0.5, 1.0)}, r'in \(0, 1\)'),
    ({'model.kwargs': {'widths': (8, -4)}}, 'model.kwargs.widths must be '
     'positive integers'),
    ({'seed': -1}, 'seed must be >= 0'),
    ({'lock_stale_after': 0.0}, 'lock_stale_after must be > 0'),
])
def test_out_of_range_fields_are_refused_before_writing(tmp_path, overrides,
                                                        message):
  with pytest.raises(ValueError, match=message):
    train.train_and_evaluate(_config(**overrides), str(tmp_path / 'w'))
  assert not (tmp_path / 'w').exists()


def test_the_probe_declares_which_of_its_values_mean_divergence():
  """m-coherence is 0/0 for all-zero gradients (every example fitted): only
  the probe's loss and norms are checked; other measurements check every
  value (the default; a plug-in's is tested in lifecycle_test)."""
  from cgjax.measurements import coherence  # pylint: disable=g-import-not-at-top
  assert coherence.diverges('clean/mean_loss')
  assert coherence.diverges('clean/per_layer/dense0/kernel/sum_of_sq_norms')
  assert not coherence.diverges('clean/m_coherence')
  assert not coherence.diverges('clean/alpha')


def test_a_sweep_skips_failed_trials_unless_asked(tmp_path):
  from cgjax import sweep  # pylint: disable=g-import-not-at-top
  trials = [{'seed': 0}, {'seed': 1}]
  for trial in trials:
    workdir = tmp_path / sweep.trial_name(trial)
    workdir.mkdir()
    (workdir / 'status.json').write_text(json.dumps(
        {'state': 'failed', 'step': 3, 'message': 'x', 'time': 0}))
  states = sweep.run('launch.py', 'configs/mnist_mlp.py:runlocal,digits',
                     trials, str(tmp_path), [])
  assert set(states.values()) == {'failed'}  # nothing started
  # A trial whose owner still runs is not started a second time.
  owned = tmp_path / sweep.trial_name(trials[0])
  (owned / 'lock.json').write_text(json.dumps(
      {'host': os.uname().nodename, 'pid': os.getpid(), 'start': 0,
       'heartbeat': time.time()}))
  states = sweep.run('launch.py', 'configs/mnist_mlp.py:runlocal,digits',
                     trials[:1], str(tmp_path), [], retry_failed=True)
  assert list(states.values()) == ['running elsewhere']
