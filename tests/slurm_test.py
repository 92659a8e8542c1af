"""Sweeps on a real SLURM (tests/slurm_cluster.py: munged, slurmctld and
slurmd on 127.0.0.1): an srun job, an array submitted by --slurm, a requeue
and a time limit that each resume, multi-task trials. Skipped where the
Debian packages are missing, except under CGJAX_CI (.ci/run installs them).
"""
import os
import re
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from cgjax import workdir as workdir_lib
from tests import doc_blocks
from tests import slurm_cluster
from tests.conftest import (ROOT, load_params, metric_rows, run_processes,
                            run_python)

CONFIG = 'tests/sweep_config.py'
# A run long enough to be stopped in (checkpoints every 2,000 steps).
LONG = ['--config.num_steps=8000', '--config.log_every=500',
        '--config.checkpoint_every=2000',
        '--config.measurements.eval.every=4000',
        '--config.measurements.probe.every=4000']
# Where the docs' SLURM script was generated (the test's own paths are
# written as these before comparing).
DOCS_ROOT, DOCS_PYTHON = '/home/me/cgjax', '/home/me/cgjax/.venv/bin/python'


@pytest.fixture(scope='module')
def cluster():
  lacking = slurm_cluster.missing()
  if lacking:
    message = (f'SLURM not installed ({", ".join(lacking)} missing): apt-get '
               'install slurmctld slurmd slurm-client munge')
    if os.environ.get('CGJAX_CI'):
      pytest.fail(message)
    pytest.skip(message)
  with slurm_cluster.serve() as env:
    yield env


def _env(cluster, devices=1):
  return {**cluster, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': ROOT,
          'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'}


def _launch(cluster, *args):
  proc = subprocess.run([sys.executable, 'launch.py', *args], cwd=ROOT,
                        env={**os.environ, **_env(cluster)}, text=True,
                        capture_output=True, timeout=300)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  return proc.stdout


def _job_id(out: str) -> str:
  return re.search(r'SLURM job array (\d+)', out).group(1)


def _states(cluster, job: str) -> list[str]:
  """'JOB_TASK STATE REASON' of each of the job's tasks in the queue."""
  return slurm_cluster.run(['squeue', '-h', '-r', '-j', job, '-o',
                            '%i %T %r'], cluster).stdout.splitlines()


# Job states of a task that will not run again.
ENDED = ('COMPLETED', 'FAILED', 'CANCELLED', 'TIMEOUT', 'NODE_FAIL',
         'OUT_OF_MEMORY', 'BOOT_FAIL', 'DEADLINE', 'PREEMPTED')


def _ended(cluster, job: str) -> bool:
  """Every task of the job ended, by scontrol's records (squeue can miss a
  task between its requeue and its pending state, where CI once saw none)."""
  out = slurm_cluster.run(['scontrol', 'show', 'job', job], cluster).stdout
  return all(s in ENDED for s in re.findall(r'JobState=(\w+)', out))


def _wait(cluster, job: str, until=None, timeout=420, step=1.0):
  """Polls until `until()` holds (default: every task ended); fails naming
  the job's states. A task SLURM holds back after a requeue (about 2
  minutes, `BeginTime`) is made eligible at once."""
  deadline = time.time() + timeout
  while True:
    states = _states(cluster, job)
    if until() if until else not states and _ended(cluster, job):
      return
    for line in states:
      if line.endswith('BeginTime'):
        slurm_cluster.run(['scontrol', 'update', f'JobId={line.split()[0]}',
                           'StartTime=now'], cluster)
    assert time.time() < deadline, states
    time.sleep(step)


def _requeue(cluster, task: str):
  out = slurm_cluster.run(['scontrol', 'requeue', task], cluster)
  assert out.returncode == 0, out.stderr


def _output(sweep_dir) -> str:
  folder = os.path.join(sweep_dir, 'slurm')
  return ''.join(open(os.path.join(folder, n)).read()
                 for n in sorted(os.listdir(folder)) if n.endswith('.out'))


def test_srun_of_two_tasks_is_the_two_process_run(cluster, tmp_path):
  """`srun -n 2 python launch.py ...`: JAX finds SLURM's two tasks itself,
  and the run's rows are those of the same run as two local processes."""
  reference, workdir = str(tmp_path / 'reference'), str(tmp_path / 'srun')
  run_processes(['launch.py', '--config', CONFIG, '--workdir', reference],
                devices=1)
  proc = slurm_cluster.run(
      ['srun', '-n', '2', sys.executable, 'launch.py', '--config', CONFIG,
       '--workdir', workdir], _env(cluster), cwd=ROOT)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert '2 process(es)' in proc.stdout, proc.stdout[-3000:]
  assert metric_rows(workdir) == metric_rows(reference)


def test_the_docs_array_runs_every_trial_and_a_requeue_reruns_none(
    cluster, tmp_path):
  """The docs' --slurm command: the script it writes is the docs' (paths
  aside), every trial of the array ends done, --status says so, and a
  requeue of the finished array runs no trial again."""
  block = next(b for b in doc_blocks.all_blocks() if b.kind == 'slurm-script')
  command = doc_blocks.blocks_before(block)[-1].commands()[0]
  sweep_dir = str(tmp_path / 'mnist_slurm')
  args = command.split()[2:]  # after `python launch.py`
  args[args.index('--workdir') + 1] = sweep_dir
  script = _launch(cluster, *args, '--dry_run')
  ours = script.replace(sys.executable, DOCS_PYTHON).replace(
      ROOT, DOCS_ROOT).replace(sweep_dir, f'{DOCS_ROOT}/runs/mnist_slurm')
  assert ours.rstrip('\n') == block.text, 'the docs show another script'
  job = _job_id(_launch(cluster, *args))
  assert open(os.path.join(sweep_dir, 'slurm', 'sweep.sbatch')).read() == script
  _wait(cluster, job)
  status = _launch(cluster, '--config', args[args.index('--config') + 1],
                   '--sweep', '--status', '--workdir', sweep_dir).splitlines()
  assert len(status) == 5 and all(': done at step 20' in s for s in status)
  rows = {t: metric_rows(os.path.join(sweep_dir, t))
          for t in os.listdir(sweep_dir) if t.startswith('noise')}
  _requeue(cluster, job)  # every task of the finished array
  _wait(cluster, job)
  assert _output(sweep_dir).count('is done') == 5
  assert rows == {t: metric_rows(os.path.join(sweep_dir, t)) for t in rows}


def test_a_requeued_trial_resumes_bitwise(cluster, tmp_path):
  """`scontrol requeue` of a running trial: it checkpoints the step it is
  in and exits 75, SLURM restarts it, it resumes there and ends with the
  params of a run never stopped."""
  sweep_dir = str(tmp_path / 'sweep')
  job = _job_id(_launch(cluster, '--config', f'{CONFIG}:one', '--sweep',
                        '--slurm', '--workdir', sweep_dir, *LONG))
  workdir = os.path.join(sweep_dir, 'noise.rate=0.0')
  _wait(cluster, job, lambda: re.search(r'step [1-9]\d{3}/8000',
                                        _read(sweep_dir)), step=0.2)
  _requeue(cluster, f'{job}_0')
  _wait(cluster, job)
  out = _output(sweep_dir)
  stopped = int(re.search(r'preempted at step (\d+)', out).group(1))
  assert f'resuming {workdir} from step {stopped}' in out
  assert workdir_lib.read_status(workdir) == 'done'
  reference = str(tmp_path / 'reference')
  run_python(['launch.py', '--config', CONFIG, '--workdir', reference,
              '--config.noise.rate=0.0', *LONG])
  jax.tree.map(np.testing.assert_array_equal, load_params(workdir, 8000),
               load_params(reference, 8000))


def _read(sweep_dir) -> str:
  try:
    return _output(sweep_dir)
  except FileNotFoundError:
    return ''


def test_a_time_limit_stops_the_trial_and_its_requeue_resumes(cluster,
                                                               tmp_path):
  """--time=1 with --signal_seconds=50: SIGTERM comes some 10 s into each
  attempt (SLURM checks its limits every few seconds), the run checkpoints
  and exits 75, the script requeues it, and the attempts add up to done."""
  sweep_dir = str(tmp_path / 'sweep')
  job = _job_id(_launch(cluster, '--config', f'{CONFIG}:one', '--sweep',
                        '--slurm', '--workdir', sweep_dir,
                        '--sbatch=--time=1', '--signal_seconds=50',
                        *LONG, '--config.num_steps=40000'))
  _wait(cluster, job, timeout=540)
  out = _output(sweep_dir)
  assert 'preempted at step' in out and 'resuming' in out, out[-3000:]
  assert workdir_lib.read_status(
      os.path.join(sweep_dir, 'noise.rate=0.0')) == 'done'


def test_a_trial_of_two_tasks_under_the_array(cluster, tmp_path):
  """--tasks_per_node=2: each array task is one jax.distributed run of two
  processes (what two nodes of one task each would be)."""
  sweep_dir = str(tmp_path / 'sweep')
  job = _job_id(_launch(cluster, '--config', f'{CONFIG}:one', '--sweep',
                        '--slurm', '--tasks_per_node=2', '--workdir',
                        sweep_dir))
  _wait(cluster, job)
  out = _output(sweep_dir)
  assert '2 process(es)' in out, out[-3000:]
  assert workdir_lib.read_status(
      os.path.join(sweep_dir, 'noise.rate=0.0')) == 'done'
