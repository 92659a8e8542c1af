"""Several processes: a lost peer, a sweep run by every process of a
jax.distributed job, and GPU sets for the trials of a --parallel sweep."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from cgjax import sweep
from cgjax import workdir as workdir_lib
from tests.conftest import (ROOT, free_port, metric_rows, run_processes,
                            run_python)

CONFIG = 'tests/sweep_config.py'
ENV = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT,
           XLA_FLAGS='--xla_force_host_platform_device_count=1')


def _processes(argvs, port, **popen):
  return [subprocess.Popen(
      [sys.executable, *argv, f'--coordinator_address=localhost:{port}',
       '--num_processes=2', f'--process_id={i}'], cwd=ROOT, env=ENV,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
          for i, argv in enumerate(argvs)]


@pytest.mark.parametrize('killed', [0, 1])
def test_a_killed_process_stops_the_other_with_one_line(killed, tmp_path):
  """kill -9 of either process at step 8: the other exits non-zero with one
  error line naming the lost process and the step, status 'failed'; after
  the coordinator's loss, relaunching both resumes from the step-4
  checkpoint and ends with every row once."""
  workdir = str(tmp_path)
  plain = ['launch.py', '--config', CONFIG, '--workdir', workdir]
  faulty = ['-m', 'tests.fault_launch', 'KILL', '8', *plain[1:]]
  procs = _processes([faulty if i == killed else plain for i in range(2)],
                     free_port())
  lost, other = procs[killed], procs[1 - killed]
  lost.communicate(timeout=300)
  assert lost.returncode == -signal.SIGKILL
  gone = time.monotonic()
  out, err = other.communicate(timeout=300)
  print(f'survivor exited {time.monotonic() - gone:.1f} s after the kill')
  assert other.returncode == 1, out + err
  errors = [l for l in err.splitlines() if l.startswith('error:')]
  assert len(errors) == 1 and 'Traceback' not in err, err
  assert errors[0].startswith(f'error: process {killed} of 2 is lost (')
  # The last status: a log line (4, 8), the commit of the step-4
  # checkpoint noticed a step later (5), or the step in flight (9).
  assert re.search(r'\) at step (4|5|8|9);', errors[0]), errors[0]
  status = workdir_lib.read_status_file(workdir)
  assert status['state'] == 'failed', status
  assert f'process {killed} lost' in status['message']
  if killed:
    return
  before = [r for r in metric_rows(workdir) if r['step'] <= 4]
  outputs = run_processes(plain, devices=1)
  assert f'resuming {workdir} from step 4' in outputs[0]
  assert workdir_lib.read_status(workdir) == 'done'
  rows = metric_rows(workdir)
  assert [r for r in rows if r['step'] <= 4] == before
  keys = [(r['step'], r['name']) for r in rows]
  assert len(keys) == len(set(keys))  # nothing twice
  assert {s for s, n in keys if n == 'train/loss'} == {4, 8, 12}
  assert {0, 4, 8, 12} <= {s for s, n in keys
                           if n == 'probe/test/m_coherence'}


def _decisions(out: str) -> list[str]:
  """The sweep's decisions: skipped / starting / resuming / how each trial
  ended (without timings)."""
  return [l.split(' (exit')[0] for l in out.splitlines()
          if l.startswith('[sweep]') and not l.startswith('[sweep] 2 trials')
          and ' | ETA ' not in l]


def test_every_process_runs_the_same_sweep(tmp_path):
  """Both processes of a jax.distributed job run the same --sweep: each
  trial is one two-process job, killed during trial 2 and relaunched, both
  resume trial 2 and skip trial 1, with the same decisions."""
  sweep_dir = str(tmp_path / 'sweep')
  first, second = (os.path.join(sweep_dir, n)
                   for n in ('noise.rate=0.0', 'noise.rate=0.5'))
  argv = ['launch.py', '--config', CONFIG, '--sweep', '--workdir', sweep_dir]
  port = free_port()
  drivers = _processes([argv, argv], port, start_new_session=True)
  deadline = time.time() + 300
  while workdir_lib.read_status(second) != 'running':
    assert all(d.poll() is None for d in drivers), [
        d.communicate() for d in drivers]
    assert time.time() < deadline, 'trial 2 never started'
    time.sleep(0.1)
  for d in drivers:  # every driver and its trial process
    os.killpg(d.pid, signal.SIGKILL)
  killed = [_decisions(d.communicate()[0]) for d in drivers]
  assert killed[0] == killed[1], killed
  assert killed[0][:3] == ['[sweep] starting noise.rate=0.0',
                           '[sweep] 1/2 noise.rate=0.0: done',
                           '[sweep] starting noise.rate=0.5'], killed[0]
  first_rows = metric_rows(first)
  while workdir_lib.owner_of(second, float('inf')) is not None:
    assert time.time() < deadline, 'the killed trial never exited'
    time.sleep(0.1)
  drivers = _processes([argv, argv], port)
  outs = [d.communicate(timeout=300) for d in drivers]
  assert [d.returncode for d in drivers] == [0, 0], outs
  again = [_decisions(out) for out, _ in outs]
  assert again[0] == again[1], again
  assert again[0][:3] == [
      '[sweep] noise.rate=0.0: done already, skipped',
      '[sweep] resuming noise.rate=0.5',
      '[sweep] 1/1 noise.rate=0.5: done'], again[0]
  assert metric_rows(first) == first_rows  # trial 1 ran once
  assert workdir_lib.read_status(second) == 'done'
  assert os.path.exists(os.path.join(second, 'log.process1.txt'))


def test_parallel_trials_get_disjoint_gpus(tmp_path):
  """--parallel 2 on a host with 4 (fake) GPUs: each trial logged its own
  two GPUs and a memory fraction."""
  env = {'CUDA_VISIBLE_DEVICES': '0,1,2,3'}
  saved = {k: os.environ.get(k) for k in env}
  os.environ.update(env)
  try:
    out = run_python(['launch.py', '--config', CONFIG, '--sweep',
                      '--parallel', '2', '--workdir', str(tmp_path)]).stdout
  finally:
    for k, v in saved.items():
      if v is None:
        os.environ.pop(k)
      else:
        os.environ[k] = v
  seen = []
  for trial in ('noise.rate=0.0', 'noise.rate=0.5'):
    log = (tmp_path / trial / 'log.txt').read_text()
    found = re.findall(r'\[cgjax\] devices: CUDA_VISIBLE_DEVICES=(\S+) '
                       r'XLA_PYTHON_CLIENT_MEM_FRACTION=(\S+)', log)
    assert len(found) == 1, log[:2000]
    seen.append(set(found[0][0].split(',')))
    assert 0 < float(found[0][1]) < 1
    assert f'[sweep] starting {trial} with CUDA_VISIBLE_DEVICES=' in out
  assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == {
      '0', '1', '2', '3'}, seen


def test_gpu_slots_split_the_host_or_refuse_in_one_line():
  four = {'CUDA_VISIBLE_DEVICES': '0,1,2,3'}
  assert sweep.gpu_slots(1, 0, four) == [{}]  # one trial: left as it is
  assert [s['CUDA_VISIBLE_DEVICES'] for s in sweep.gpu_slots(2, 0, four)] == [
      '0,1', '2,3']
  assert [s['CUDA_VISIBLE_DEVICES'] for s in sweep.gpu_slots(3, 0, four)] == [
      '0', '1', '2']
  assert [s['CUDA_VISIBLE_DEVICES'] for s in sweep.gpu_slots(2, 1, four)] == [
      '0', '1']
  assert sweep.gpu_slots(2, 0, {**four, 'XLA_PYTHON_CLIENT_MEM_FRACTION':
                                '0.4'})[1]['XLA_PYTHON_CLIENT_MEM_FRACTION'] == (
                                    '0.4')
  with pytest.raises(ValueError, match='--parallel 5 with no GPU'):
    sweep.gpu_slots(5, 0, four)
  with pytest.raises(ValueError, match='devices_per_trial must be >= 0'):
    sweep.gpu_slots(2, -1, four)
  with pytest.raises(ValueError, match='needs 6 GPUs; this host has 4'):
    sweep.gpu_slots(2, 3, four)
  if not os.path.exists('/dev/nvidia0'):
    with pytest.raises(ValueError, match='on a TPU host'):
      sweep.gpu_slots(2, 0, {'TPU_ACCELERATOR_TYPE': 'v4-8'})
    assert sweep.gpu_slots(2, 0, {}) == [{}, {}]  # a CPU host
