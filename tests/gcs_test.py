"""gs:// workdirs end to end against a real GCS server on 127.0.0.1, and the
workdir lock's takeover and fencing (local and gs://)."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse

import jax
import numpy as np
import pytest

from cgjax import runs
from cgjax import storage
from cgjax import workdir as workdir_lib
from cgjax.workdir import lock as lock_lib
from tests import gcs_server
from tests.conftest import ROOT, metric_rows

BUCKET = 'cgjax-test'
QUICK = [f'{ROOT}/configs/mnist_mlp.py:runlocal']


@pytest.fixture(scope='module')
def gcs():
  with gcs_server.serve(BUCKET) as env:
    yield env


def _launch(args, cwd, fault=None, wait=True):
  """launch.py (through tests.fault_launch with `fault` = (FAULT, STEP)) from
  `cwd`, the repository only on PYTHONPATH."""
  prefix = ['-m', 'tests.fault_launch', *fault] if fault else [
      f'{ROOT}/launch.py']
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
  proc = subprocess.Popen([sys.executable, *prefix, *args], cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  if not wait:
    return proc
  out, err = proc.communicate(timeout=300)
  return proc.returncode, out, err


def _config(workdir, *extra):
  return ['--config', *QUICK, '--workdir', str(workdir), *extra]


@pytest.fixture(scope='module')
def local_reference(tmp_path_factory):
  """The quick start's runlocal, uninterrupted, in a local dir."""
  workdir = tmp_path_factory.mktemp('reference')
  code, out, err = _launch(_config(workdir), workdir)
  assert code == 0, out + err
  return str(workdir)


def _same_as(reference, workdir, step=20):
  assert metric_rows(workdir) == metric_rows(reference)
  a, b = runs.load(reference).restore(step), runs.load(workdir).restore(step)
  leaves = [jax.tree.leaves(x['params']) for x in (a, b)]
  assert len(leaves[0]) == len(leaves[1]) > 0
  for x, y in zip(*leaves):
    np.testing.assert_array_equal(x, y)  # bitwise


@pytest.fixture(scope='module')
def gs_run(gcs, tmp_path_factory):
  """The quick start's runlocal on gs://, from an empty directory: killed
  -9 at step 14, then relaunched to the end. (run, empty dir, relaunch's
  stdout)."""
  del gcs
  cwd = tmp_path_factory.mktemp('empty')
  run = f'gs://{BUCKET}/run'
  code, out, err = _launch(_config(run), cwd, fault=('KILL', '14'))
  assert code == -signal.SIGKILL, out + err
  assert workdir_lib.read_status(run) == 'running'
  code, out, err = _launch(_config(run), cwd)
  assert code == 0, out + err
  return run, cwd, out


def test_quick_start_on_gs_leaves_nothing_local_and_resumes_bitwise(
    gs_run, local_reference):
  run, cwd, out = gs_run
  assert f'resuming {run} from step 10' in out
  assert os.listdir(cwd) == []  # no local gs: directory, no cache
  assert not os.path.exists(os.path.join(ROOT, 'gs:'))
  names = storage.listdir(run)
  assert any(n.startswith('events.out.tfevents.') for n in names), names
  for name in ('config.json', 'status.json', 'checkpoints',
               workdir_lib.METRIC_PARTS, 'probe_ids.json', 'learning.npz'):
    assert name in names, names
  assert 'lock.json' not in names  # released
  assert storage.listdir(storage.join(run, 'checkpoints')) == ['10', '20']
  assert workdir_lib.read_status(run) == 'done'
  _same_as(local_reference, run)
  # TensorBoard's own reader on the bucket (as `tensorboard --logdir gs://`
  # reads it): every scalar row of the run, the resume's purge applied.
  read = subprocess.run([sys.executable, '-c', TB_READ, run],
                        capture_output=True, text=True, timeout=120)
  assert read.returncode == 0, read.stderr
  seen = {tuple(x) for x in json.loads(read.stdout)
          if x[0] != 'train/steps_per_sec'}
  assert seen == {(r['name'], r['step']) for r in metric_rows(run)}


# TensorBoard's no-TensorFlow build (its stub reads gs:// through fsspec; with
# TensorFlow installed it uses tf.io.gfile, which knows no storage emulator).
TB_READ = """
import json, sys, types
sys.modules['tensorboard.compat.notf'] = types.ModuleType('notf')
from tensorboard.backend.event_processing import event_accumulator
events = event_accumulator.EventAccumulator(sys.argv[1])
events.Reload()
print(json.dumps([[tag, e.step] for tag in events.Tags()['scalars']
                  for e in events.Scalars(tag)]))
"""


def test_report_and_runs_api_read_a_gs_run(gs_run, local_reference):
  run = gs_run[0]
  loaded = runs.load(run)
  assert loaded.status['state'] == 'done'
  assert loaded.checkpoint_steps() == [10, 20]
  local = runs.load(local_reference).metrics.drop(
      columns='train/steps_per_sec')
  np.testing.assert_array_equal(
      loaded.metrics.drop(columns='train/steps_per_sec').to_numpy(),
      local.to_numpy())
  assert set(loaded.per_example()) == {'learning', 'probe_ids'}
  env = dict(os.environ, PYTHONPATH=ROOT)
  report = subprocess.run(
      [sys.executable, '-m', 'experiments.report', run, '--out',
       f'{run}/report'], cwd=ROOT, env=env, capture_output=True, text=True,
      timeout=300)
  assert report.returncode == 0, report.stderr
  page = storage.read_text(f'{run}/report/index.html')
  assert '<img src="coherence.png"' in page
  assert storage.read_bytes(f'{run}/report/coherence.png')[:4] == b'\x89PNG'


def test_a_two_trial_sweep_on_gs(gcs, tmp_path):
  del gcs
  sweep_dir = f'gs://{BUCKET}/sweep'
  code, out, err = _launch(['--config', f'{ROOT}/tests/sweep_config.py',
                            '--sweep', '--workdir', sweep_dir], tmp_path)
  assert code == 0, out + err
  assert '2/2 trials done' in out
  assert os.listdir(tmp_path) == []
  found = runs.load(sweep_dir)
  assert [r.overrides for r in found] == [{'noise.rate': 0.0},
                                          {'noise.rate': 0.5}]
  for run in found:
    assert run.status['state'] == 'done'
    log = storage.read_text(storage.join(run.workdir, 'log.txt'))
    assert '[cgjax] done: step 12' in log
  assert json.loads(storage.read_text(f'{sweep_dir}/sweep.json'))['trials']


def _stopped(pid):
  with open(f'/proc/{pid}/stat') as f:
    return f.read().rsplit(')', 1)[1].split()[0] == 'T'


@pytest.mark.parametrize('where', ['local', 'gs'])
def test_a_suspended_owner_taken_over_stops_without_writing(
    where, gcs, local_reference, tmp_path):
  """Suspended at step 14 past lock_stale_after, taken over by a second
  launch that finishes the run, then continued: the first stops with one
  line at its next write, and the run is the uninterrupted one, every row."""
  del gcs
  run = str(tmp_path / 'run') if where == 'local' else f'gs://{BUCKET}/taken'
  stale = '--config.lock_stale_after=2'
  # The reference ran with the default lock_stale_after: only that differs.
  first = _launch(_config(run, stale), tmp_path, fault=('STOP', '14'),
                  wait=False)
  deadline = time.time() + 240
  while not _stopped(first.pid):
    assert first.poll() is None, first.communicate()
    assert time.time() < deadline
    time.sleep(0.2)
  time.sleep(3)  # the suspended owner's heartbeat is now older than 2 s
  code, out, err = _launch(_config(run, stale), tmp_path)
  assert code == 0, out + err
  assert 'taking over the stale' in out and 'resuming' in out
  first.send_signal(signal.SIGCONT)
  out, err = first.communicate(timeout=120)
  assert first.returncode == 1, out + err
  assert err.strip().splitlines()[-1].startswith('error: ') and (
      'was taken over; stopping without writing' in err), err
  assert 'Traceback' not in err
  assert workdir_lib.read_status(run) == 'done'
  assert metric_rows(run) == metric_rows(local_reference)  # none lost


def test_a_lock_naming_a_reused_pid_is_stale_at_once(tmp_path):
  started = lock_lib._started_at(os.getpid())  # pylint: disable=protected-access
  assert started is not None and abs(started - time.time()) < 3600 * 24 * 30
  lock = {'host': os.uname().nodename, 'pid': os.getpid(),
          'pid_start': started, 'start': time.time(),
          'heartbeat': time.time(), 'token': 'x'}
  (tmp_path / 'lock.json').write_text(json.dumps(lock))
  assert workdir_lib.owner_of(str(tmp_path), 3600)['token'] == 'x'
  (tmp_path / 'lock.json').write_text(json.dumps(
      {**lock, 'pid_start': started - 50}))  # this pid, another process
  assert workdir_lib.owner_of(str(tmp_path), 3600) is None
  taken = workdir_lib.Lock(str(tmp_path), 3600).acquire()
  try:
    assert json.loads((tmp_path / 'lock.json').read_text())['token'] == (
        taken.owner['token'])
  finally:
    taken.release()
  assert not (tmp_path / 'lock.json').exists()


def test_a_lock_is_created_exclusively_and_fences_its_owner(gcs, tmp_path):
  del gcs
  for workdir in (str(tmp_path), f'gs://{BUCKET}/fence'):
    path = storage.join(workdir, 'lock.json')
    assert storage.create_exclusive(path, '{}')
    assert not storage.create_exclusive(path, '{"other": 1}')
    assert storage.read_text(path) == '{}'
    storage.remove(path)
    lock = workdir_lib.Lock(workdir, 3600).acquire()
    workdir_lib.write_json(workdir, 'a.json', {})  # the owner writes
    storage.write_atomic(path, json.dumps({**json.loads(
        storage.read_text(path)), 'token': 'another launch'}))
    with pytest.raises(workdir_lib.LockLost, match='now belongs to pid'):
      workdir_lib.write_json(workdir, 'b.json', {})
    assert not storage.exists(storage.join(workdir, 'b.json'))
    lock.release()
    assert storage.exists(path)  # not its lock any more: left alone


# Requests whose number depends on time, not on steps: the lock's heartbeat
# (every 10 s), orbax's checkpoint writes (its async save polls while it
# finishes) and the XLA cache's (what compiles past its 1 s threshold).
TIMED = ('lock.json', '/checkpoints', '.jax_cache')


def test_plain_steps_cost_no_storage_calls(gcs, tmp_path):
  """Requests the GCS server answered, for a run of 20 steps and one of 60
  (the XLA cache warmed by a first run), measurements and the checkpoint at
  step 0 and the end only: the 40 steps with nothing due must cost no
  storage call of the run's records (budget: 2, less than one per 20
  steps), TIMED left out; only the README's two variables are set
  (gcs_server.serve)."""
  assert set(gcs) == {'STORAGE_EMULATOR_HOST', 'TENSORSTORE_GCS_HTTP_URL'}
  counts = {}
  for name, steps in (('warm', 20), ('a', 20), ('b', 60)):
    args = ['--config', *QUICK, '--workdir', f'gs://{BUCKET}/budget_{name}',
            f'--config.num_steps={steps}', f'--config.log_every={steps}',
            f'--config.checkpoint_every={steps}']
    for measurement in ('eval', 'learning', 'shares', 'probe'):
      args += [f'--config.measurements.{measurement}.every=0',
               f'--config.measurements.{measurement}.num_log_spaced=0']
    before = len(gcs_server.requests())
    code, out, err = _launch(args, tmp_path)
    assert code == 0, out + err
    counts[name] = [r for r in map(urllib.parse.unquote,
                                   gcs_server.requests()[before:])
                    if not any(x in r for x in TIMED)]
  counts = {k: len(v) for k, v in counts.items()}
  assert counts["b"] - counts["a"] <= 2, counts
