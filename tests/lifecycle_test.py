"""A run's lifecycle (cgjax.session.RunSession): the last finished checkpoint
is the commit point, so a crash at any moment relaunches, with the same
command, to the uninterrupted run's records; a refused launch changes
nothing; measurements carry their own policies; identical sweep drivers
share the trials.

Faults are injected at a chosen moment (tests/fault_launch.py), never at a
wall time; no test depends on timing.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from cgjax import measurements
from cgjax import runs
from cgjax import session
from cgjax import train
from cgjax import workdir as workdir_lib
from tests.cluster_test import _processes
from tests.conftest import (ROOT, free_port, load_params, metric_rows,
                            run_processes, run_python)
from tests.faults_test import _args, _assert_same_as, ref  # pylint: disable=unused-import
from tests.train_test import _config

SMALL = 'tests/sweep_config.py'  # 12 steps, checkpoints at 4, 8, 12


@pytest.mark.parametrize('fault,step', [
    ('KILL_IMPORTS', 0),      # nothing written yet
    ('KILL_COMPILE', 0),      # lock, config and status written
    ('KILL_IN_MEASURE', 0),   # during the step-0 probe
    ('KILL_IN_MEASURE', 4),   # during a later probe, before any checkpoint
    ('KILL_IN_SAVE', 10),     # while the first checkpoint is written
    ('KILL', 14),             # between saves: rows past the commit point
    ('KILL_IN_SAVE', 20),     # while a later checkpoint is written
])
def test_a_kill_at_any_moment_relaunches_to_the_uninterrupted_run(
    ref, tmp_path, fault, step):
  killed = run_python(['-m', 'tests.fault_launch', fault, str(step),
                       *_args(tmp_path)], check=False)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  relaunched = run_python(['launch.py', *_args(tmp_path)])
  assert 'Traceback' not in relaunched.stderr
  status = workdir_lib.read_status_file(str(tmp_path))
  assert (status['state'], status['step'], status['checkpoint']) == (
      'done', 20, 20)
  _assert_same_as(ref, tmp_path)


def test_ctrl_c_is_honoured_from_the_first_instant(ref, tmp_path):
  """SIGINT while the train loop is imported: exit 130, nothing written.
  SIGINT during the compile (once lock and config were written): the first
  step is checkpointed, exit 130, and the relaunch resumes bitwise."""
  early = run_python(['-m', 'tests.fault_launch', 'INT_IMPORTS', '0',
                      *_args(tmp_path / 'early')], check=False)
  assert early.returncode == 130, early.stderr[-2000:]
  assert 'Traceback' not in early.stderr
  assert not (tmp_path / 'early').exists()
  compiling = run_python(['-m', 'tests.fault_launch', 'INT_COMPILE', '0',
                          *_args(tmp_path / 'c')], check=False)
  assert compiling.returncode == 130, compiling.stderr[-2000:]
  status = workdir_lib.read_status_file(str(tmp_path / 'c'))
  assert (status['state'], status['step'], status['checkpoint']) == (
      'interrupted', 1, 1)
  resumed = run_python(['launch.py', *_args(tmp_path / 'c')])
  assert 'from step 1\n' in resumed.stdout
  _assert_same_as(ref, tmp_path / 'c')


@pytest.fixture(scope='module')
def two_process_ref(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('ref2'))
  run_processes(['launch.py', '--config', SMALL, '--workdir', workdir],
                devices=1)
  return workdir


@pytest.mark.parametrize('killed', [0, 1])
def test_a_two_process_run_killed_before_its_first_save_relaunches(
    two_process_ref, tmp_path, killed):
  """kill -9 of either process at step 2, before the first checkpoint (4):
  the relaunch of both, with the same command, starts afresh and ends with
  the rows and params of the uninterrupted 2-process run."""
  workdir = str(tmp_path)
  plain = ['launch.py', '--config', SMALL, '--workdir', workdir]
  faulty = ['-m', 'tests.fault_launch', 'KILL', '2', *plain[1:]]
  procs = _processes([faulty if i == killed else plain for i in range(2)],
                     free_port())
  for proc in procs:
    proc.communicate(timeout=300)
  assert procs[killed].returncode == -signal.SIGKILL
  run_processes(plain, devices=1)
  assert workdir_lib.read_status(workdir) == 'done'
  assert metric_rows(workdir) == metric_rows(two_process_ref)
  jax.tree.map(np.testing.assert_array_equal, load_params(two_process_ref, 12),
               load_params(workdir, 12))


def test_a_plug_in_measurement_of_any_name_keeps_divergence_detection(
    tmp_path):
  """A user's measurement named unlike the built-ins: its NaN stops the run
  as diverged (every value of a measurement is checked unless its module
  says otherwise)."""
  config = _config()
  config.measurements = {'weights': measurements.spec(
      'tests.toy_measurement', steps=(0, 3), at_end=False,
      scale=float('nan'))}
  with pytest.raises(session.Diverged,
                     match='diverged at step 0: weights/param_sq_norm nan'):
    train.train_and_evaluate(config, str(tmp_path))
  status = workdir_lib.read_status_file(str(tmp_path))
  assert (status['state'], status['step']) == ('diverged', 0)
  assert 'no checkpoint was finished' in status['message']


@pytest.mark.parametrize('names,clash', [
    (('eval', 'eval/extra'), "'eval' and 'eval/extra'"),
    (('train', 'probe'), "'train' and 'train'"),
])
def test_measurements_that_would_share_keys_are_refused_at_start(
    tmp_path, names, clash):
  config = _config()
  config.measurements = {n: measurements.spec('tests.toy_measurement')
                         for n in names}
  with pytest.raises(ValueError, match=f'measurements {clash} would write '
                     'the same keys'):
    train.train_and_evaluate(config, str(tmp_path / 'w'))
  assert not (tmp_path / 'w').exists()


@pytest.fixture(scope='module')
def finished(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('finished') / 'run'
  run_python(['launch.py', '--config', SMALL, '--workdir', str(workdir)])
  return workdir


def _snapshot(root):
  """Every file under root with its bytes (the listing, status and records
  of a workdir)."""
  out = {}
  for folder, _, files in os.walk(root):
    for name in files:
      path = os.path.join(folder, name)
      with open(path, 'rb') as f:
        out[os.path.relpath(path, root)] = f.read()
  return out


def _metrics_line(text):
  def edit(workdir):
    lines = (workdir / 'metrics.jsonl').read_text().splitlines(True)
    lines[3] = text + '\n'
    (workdir / 'metrics.jsonl').write_text(''.join(lines))
  return edit


def _write(name, text):
  return lambda workdir: (workdir / name).write_text(text)


@pytest.mark.parametrize('damage,needle', [
    (_metrics_line('not json'), 'metrics.jsonl, line 4: not a JSON row'),
    (_metrics_line('{"a": 1}'), 'metrics.jsonl, line 4: not a metric row'),
    (_metrics_line('{"step": "4", "name": "x", "value": "1"}'),
     'metrics.jsonl, line 4: not a metric row'),
    (_write('lock.json', '[]'), 'lock.json is not a lock of cgjax'),
    (_write('lock.json', '{"pid": "abc"}'), 'lock.json is not a lock of cgjax'),
    (_write('config.json', '[1, 2]'), 'config.json holds a JSON list'),
])
def test_a_damaged_workdir_is_one_line_and_changes_nothing(
    finished, tmp_path, damage, needle):
  workdir = tmp_path / 'run'
  shutil.copytree(finished, workdir)
  damage(workdir)
  before = _snapshot(workdir)
  proc = run_python(['launch.py', '--config', SMALL, '--workdir',
                     str(workdir)], check=False, own_cache=True)
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr
  assert len(lines) == 1 and lines[0].startswith('error: '), proc.stderr
  assert needle in lines[0] and str(workdir) in lines[0], lines[0]
  assert _snapshot(workdir) == before  # status 'done' too
  assert not (tmp_path / '.jax_cache').exists()


@pytest.mark.parametrize('flags,needle', [
    (['--config.seed=99999999999999999999'], 'seed must be < 2**32'),
    (['--num_processes=2', '--process_id=0'], 'need --coordinator_address'),
    (['--config', 'configs'], "'configs' is a folder"),
    (['--config', 'tests/lifecycle_configs.py:dict'],
     "returned a dict, not an ml_collections.ConfigDict"),
    (['--config', 'tests/lifecycle_configs.py:none'],
     "returned a NoneType, not an ml_collections.ConfigDict"),
    (['--config.num_steps=abc'], "error: flag --config.num_steps=abc: "
                                 "invalid literal for int()"),
    (['--nosuchflag'], "error: Unknown command line flag 'nosuchflag'"),
    (['--config.nosuch=3'], "error: unknown config key 'config.nosuch'"),
    (['--config', 'configs/mnist_mlp.py:noise=abc'],
     "error: config arg noise='abc' is not a float"),
    (['--nodes=2'], 'error: --nodes needs --slurm (and --sweep)'),
    (['--slurm'], '--slurm, --parallel and --devices_per_trial need --sweep'),
    (['--sweep', '--slurm', '--status'], '--slurm submits the sweep'),
    (['--sweep', '--slurm', '--dry_run', '--sbatch=time=1'],
     "error: --sbatch takes sbatch options such as --time=4:00:00, got "
     "'time=1'"),
])
def test_bad_launches_are_one_line_and_write_nothing(tmp_path, flags, needle):
  config = [] if '--config' in flags else ['--config', SMALL]
  proc = run_python(['launch.py', *config, '--workdir',
                     str(tmp_path / 'run'), *flags], check=False,
                    own_cache=True)
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr
  assert len(lines) == 1 and needle in lines[0], proc.stderr
  assert os.listdir(tmp_path) == []  # no workdir, no .jax_cache beside it


@pytest.mark.parametrize('case', ['file', 'other run', 'same run'])
def test_check_runs_the_launchs_workdir_checks_writing_nothing(
    finished, tmp_path, case):
  """--check refuses what the launch would refuse before training: a file
  in the workdir's place, a workdir holding a run of another config."""
  workdir = tmp_path / 'run'
  flags = []
  if case == 'file':
    workdir.write_text('not a folder')
  else:
    shutil.copytree(finished, workdir)
    flags = ['--config.noise.rate=0.3'] if case == 'other run' else []
  before = _snapshot(tmp_path)
  proc = run_python(['launch.py', '--config', SMALL, '--workdir',
                     str(workdir), '--check', *flags], check=False)
  assert _snapshot(tmp_path) == before
  if case == 'same run':
    assert proc.returncode == 0, proc.stderr
    assert 'workdir: would resume the run it holds' in proc.stdout
    return
  assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr
  assert proc.stderr.startswith('error: '), proc.stderr
  assert ('is a file, not a workdir' if case == 'file'
          else 'noise.rate: 0.5 in the workdir, 0.3 now') in proc.stderr


@pytest.fixture
def small_disk(tmp_path):
  """A tmpfs of 4 MiB at tmp_path/disk (root only, as on CI and here)."""
  disk = tmp_path / 'disk'
  disk.mkdir()
  if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=4m', 'tmpfs',
                     str(disk)], capture_output=True).returncode:
    pytest.skip('mounting a tmpfs needs root (CI and the dev machines are)')
  yield disk
  subprocess.run(['umount', '-l', str(disk)], check=True)


@pytest.mark.parametrize('size', ['160k', '240k'])
def test_a_full_disk_is_one_line_and_the_relaunch_ends_as_uninterrupted(
    finished, small_disk, size):
  """A real full disk (a tmpfs of `size`: full while the per-example files,
  or while the first checkpoint, are written): one line naming the file or
  the checkpoint's step, no traceback, no hang; once there is room again,
  the same command ends with the uninterrupted run's rows and params."""
  subprocess.run(['mount', '-o', f'remount,size={size}', str(small_disk)],
                 check=True)
  argv = ['launch.py', '--config', SMALL, '--workdir',
          str(small_disk / 'run'), '--jax_cache_dir', 'none']
  full = run_python(argv, check=False)
  lines = [l for l in full.stderr.splitlines() if l.strip()]
  assert full.returncode == 1 and 'Traceback' not in full.stderr, full.stderr
  assert len(lines) == 1 and lines[0].startswith('error: '), full.stderr
  assert (str(small_disk / 'run') in lines[0]
          and 'No space left on device' in lines[0]
          or 'the checkpoint of step 4' in lines[0]), lines[0]
  subprocess.run(['mount', '-o', 'remount,size=4m', str(small_disk)],
                 check=True)
  run_python(argv)
  assert metric_rows(str(small_disk / 'run')) == metric_rows(str(finished))
  jax.tree.map(np.testing.assert_array_equal, load_params(str(finished), 12),
               load_params(str(small_disk / 'run'), 12))


@pytest.mark.parametrize('server', ['none', 'silent'])
def test_an_object_store_that_does_not_answer_fails_in_bounded_time(
    tmp_path, server):
  """No server at the address, or one that accepts and never answers: a
  progress line while the launch waits, then one line naming the workdir
  after CGJAX_STORAGE_TIMEOUT, nothing written."""
  with socket.socket() as sock:
    sock.bind(('127.0.0.1', 0))
    if server == 'silent':
      sock.listen()
    url = f'http://127.0.0.1:{sock.getsockname()[1]}'
    env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT,
               STORAGE_EMULATOR_HOST=url, TENSORSTORE_GCS_HTTP_URL=url,
               CGJAX_STORAGE_TIMEOUT='3')
    proc = subprocess.run(
        [sys.executable, 'launch.py', '--config', SMALL, '--workdir',
         'gs://bucket/run', '--jax_cache_dir', str(tmp_path / 'cache')],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr
  assert lines[0].startswith('[cgjax] waiting for gs://bucket/run to answer')
  assert lines[-1] == ('error: gs://bucket/run: the object store did not '
                       'answer within 3 s (CGJAX_STORAGE_TIMEOUT); check its '
                       'address (STORAGE_EMULATOR_HOST for an emulator) and '
                       'the network'), proc.stderr
  assert all(l.startswith('[cgjax] waiting') for l in lines[:-1]), lines
  assert os.listdir(tmp_path) == []


def test_two_identical_sweep_drivers_share_the_trials(tmp_path):
  """Started together: both exit 0, each trial is run by one of them, once,
  and no log holds another launch's refusal."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT,
             XLA_FLAGS='--xla_force_host_platform_device_count=1')
  argv = [sys.executable, 'launch.py', '--config', SMALL, '--sweep',
          '--workdir', str(tmp_path)]
  drivers = [subprocess.Popen(argv, cwd=ROOT, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
  outputs = [d.communicate(timeout=600) for d in drivers]
  for driver, (out, err) in zip(drivers, outputs):
    assert driver.returncode == 0, out + err
    assert '[sweep] 2/2 trials done' in out, out
  started = [l for out, _ in outputs for l in out.splitlines()
             if l.startswith('[sweep] starting ')]
  assert sorted(started) == ['[sweep] starting noise.rate=0.0',
                             '[sweep] starting noise.rate=0.5'], started
  for trial in ('noise.rate=0.0', 'noise.rate=0.5'):
    log = (tmp_path / trial / 'log.txt').read_text()
    assert workdir_lib.read_status(str(tmp_path / trial)) == 'done'
    assert log.count('[cgjax] done: step 12') == 1, log
    assert 'error' not in log, log


def test_a_workdir_naming_a_foreign_module_is_not_code_to_run(finished,
                                                              tmp_path):
  """A shared workdir's config.json is data: a measurement module outside
  cgjax and the plug-in folders is refused by every reader, in one line."""
  workdir = tmp_path / 'run'
  shutil.copytree(finished, workdir)
  config = json.loads((workdir / 'config.json').read_text())
  config['measurements']['eval']['type'] = 'somewhere_else.evil'
  (workdir / 'config.json').write_text(json.dumps(config))
  with pytest.raises(ValueError, match="config.json: measurements.eval.type "
                     "'somewhere_else.evil' is not cgjax's"):
    runs.load(str(workdir)).config  # pylint: disable=expression-not-assigned
  report = run_python(['-m', 'experiments.report', str(workdir), '--out',
                       str(tmp_path / 'report')], check=False)
  assert report.returncode == 1 and 'Traceback' not in report.stderr
  assert "'somewhere_else.evil' is not cgjax's" in report.stderr
  assert not (tmp_path / 'report').exists()
