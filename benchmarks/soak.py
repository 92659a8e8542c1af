"""Soak test of recovery: cycles of mixed faults and relaunches.

    python -m benchmarks.soak [--cycles 30] [--seed 0] [--root DIR]

A reference run (benchmarks/soak_config.py: the training loop test's config,
20 steps, checkpoints at 10 and 20, metrics every 2 steps), then --cycles
cycles, each in a fresh workdir: 1-3 faults at random steps (each injected
at its step by tests/fault_launch.py or by watching the run's metrics, never
at a time), a relaunch after each, and a last relaunch to the end:

  KILL      kill -9 of the run
  TERM      SIGTERM to the run (preemption: checkpoint the step, exit 75)
  MEASURE   SIGTERM as the step's measurements start (stop mid-probe)
  ENOSPC    "No space left on device" from the metrics writer (exit 1)
  DRIVER    SIGTERM to a sweep driver running the run as its trial
  TAKEOVER  the run suspended (SIGSTOP) past lock_stale_after, a second
            launch takes the workdir over and finishes, the first continued
            (it must stop at its next write, exit 1)
  DELETE    kill -9, then checkpoints/ deleted: the relaunch must refuse
            (exit 1) where a checkpoint had been committed, and a relaunch
            with --restart start over
and kill -9 at the moments before and between commits:
  IMPORTS   while launch.py imports the train loop (nothing written yet)
  COMPILE   while the train step compiles (lock, config, status written)
  PROBE     as the step's measurements start
  SAVE      while the checkpoint of step 10 or 20 is written (async)

Prints one line per cycle and the totals: faults by kind, recoveries
(relaunches that resumed from a checkpoint), runs bitwise equal to the
reference (every metrics row and every final param), rows lost (reference
rows missing at the end, over all cycles; rows set aside by --restart are
not counted as lost: they are kept in restart_N/).
"""
import argparse
import collections
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = 'benchmarks/soak_config.py:runlocal'
FAULTS = ('KILL', 'TERM', 'MEASURE', 'ENOSPC', 'DRIVER', 'TAKEOVER',
          'DELETE', 'IMPORTS', 'COMPILE', 'PROBE', 'SAVE')
# The early-crash moments, as tests/fault_launch.py names them.
MOMENTS = {'IMPORTS': 'KILL_IMPORTS', 'COMPILE': 'KILL_COMPILE',
           'PROBE': 'KILL_IN_MEASURE', 'SAVE': 'KILL_IN_SAVE'}
ENV = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)


def _command(workdir, fault=None, extra=()):
  from tests.train_test import FLAGS  # pylint: disable=g-import-not-at-top
  launch = ([sys.executable, '-m', 'tests.fault_launch', *fault] if fault
            else [sys.executable, 'launch.py'])
  # One XLA cache for every cycle (beside each cycle's dir, each cycle
  # compiled everything again: 3.5 min a cycle on 2 cores).
  cache = os.path.join(os.path.dirname(os.path.dirname(workdir)), '.jax_cache')
  return launch + ['--config', CONFIG, '--workdir', workdir, *FLAGS,
                   '--jax_cache_dir', cache, *extra]


def _run(cmd):
  return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True,
                        text=True, timeout=600)


def _reached(workdir, step, since) -> bool:
  """The run started after `since` is training and has logged `step` (or
  resumed past it)."""
  from cgjax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  status = workdir_lib.read_status_file(workdir)
  if status['state'] != 'running' or status.get('time', 0) < since:
    return False
  try:
    return any(r['step'] >= step for r in workdir_lib.read_metrics(workdir))
  except (OSError, ValueError):
    return False


def _wait(proc, until, deadline=600):
  end = time.time() + deadline
  while proc.poll() is None and not until():
    if time.time() > end:
      raise TimeoutError('the run did not get there')
    time.sleep(0.1)


def _stopped(pid) -> bool:
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().rsplit(')', 1)[1].split()[0] == 'T'
  except OSError:
    return False


def inject(kind, step, sweep_dir, workdir) -> tuple[bool, str]:
  """One fault and what follows it; (as expected, what happened)."""
  if kind in ('KILL', 'TERM', 'ENOSPC'):
    out = _run(_command(workdir, (kind, str(step))))
    want = {'KILL': -9, 'TERM': 75, 'ENOSPC': 1}[kind]
  elif kind in MOMENTS:
    at = (10 if step <= 10 else 20) if kind == 'SAVE' else step
    out = _run(_command(workdir, (MOMENTS[kind], str(at))))
    want = -9
  elif kind == 'MEASURE':
    out = _run(_command(workdir, ('TERM_IN_MEASURE', str(step))))
    want = 75
  elif kind == 'DELETE':
    out = _run(_command(workdir, ('KILL', str(step))))
    shutil.rmtree(os.path.join(workdir, 'checkpoints'), ignore_errors=True)
    refused = _run(_command(workdir))
    ok = refused.returncode in (0, 1) and (
        refused.returncode == 0 or '--restart' in refused.stderr)
    out = _run(_command(workdir, extra=['--restart']))
    return ok and out.returncode == 0, f'restart exit {out.returncode}'
  elif kind == 'DRIVER':
    since = time.time()
    driver = subprocess.Popen(
        [sys.executable, 'launch.py', '--config', CONFIG, '--sweep',
         '--workdir', sweep_dir, *_command(workdir)[6:]], cwd=ROOT, env=ENV,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait(driver, lambda: _reached(workdir, step, since))
    if driver.poll() is None:
      driver.send_signal(signal.SIGTERM)
    driver.communicate(timeout=600)
    return driver.returncode in (75, 0, 1), f'driver exit {driver.returncode}'
  else:  # TAKEOVER
    # A session of its own: stopped in the soak's process group, which is
    # orphaned when the soak runs in the background, the kernel would send
    # it SIGHUP as soon as another process of the group exits (seen once in
    # 32 cycles: exit -1).
    first = subprocess.Popen(_command(workdir, ('STOP', str(step))),
                             cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    _wait(first, lambda: _stopped(first.pid))
    if first.poll() is not None:  # the step was not reached
      return first.returncode == 0, 'finished before the step'
    time.sleep(3)  # past lock_stale_after (2 s): the owner beats no more
    second = _run(_command(workdir))
    first.send_signal(signal.SIGCONT)
    first.communicate(timeout=600)
    return (second.returncode == 0 and first.returncode == 1,
            f'second exit {second.returncode}, first {first.returncode}')
  return out.returncode in (want, 0), f'exit {out.returncode}'  # 0: no step


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--cycles', type=int, default=30)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--root', default='')
  args = parser.parse_args()
  sys.path.insert(0, ROOT)
  from tests.conftest import load_params, metric_rows  # pylint: disable=g-import-not-at-top
  root = args.root or tempfile.mkdtemp(prefix='cgjax-soak-')
  rng = random.Random(args.seed)
  ref = os.path.join(root, 'ref', 'default')  # the cycles' cache
  done = _run(_command(ref))
  assert done.returncode == 0, done.stderr[-2000:]
  want_rows, want_params = metric_rows(ref), load_params(ref, 20)
  totals = collections.Counter()
  kinds = collections.Counter()
  for cycle in range(args.cycles):
    sweep_dir = os.path.join(root, f'cycle{cycle}')
    workdir = os.path.join(sweep_dir, 'default')  # the sweep's one trial
    faults = [(rng.choice(FAULTS), rng.randint(1, 19))
              for _ in range(rng.randint(1, 3))]
    recovered, surprises = 0, []
    for kind, step in faults:
      kinds[kind] += 1
      ok, what = inject(kind, step, sweep_dir, workdir)
      if not ok:
        surprises.append(f'{kind}@{step}: {what}')
    final = _run(_command(workdir))
    recovered += 'resuming' in final.stdout
    rows = metric_rows(workdir) if final.returncode == 0 else []
    equal = final.returncode == 0 and rows == want_rows and all(
        np.array_equal(a, b) for a, b in zip(
            jax.tree.leaves(want_params),
            jax.tree.leaves(load_params(workdir, 20))))
    lost = len(set(map(str, want_rows)) - set(map(str, rows)))
    totals['cycles'] += 1
    totals['bitwise equal'] += equal
    totals['rows lost'] += lost
    totals['unexpected exits'] += len(surprises)
    print(f'cycle {cycle}: faults {faults}, '
          f'{"bitwise equal" if equal else "DIFFERENT"}, rows lost {lost}'
          + (f'; unexpected: {surprises}' if surprises else ''), flush=True)
  print('faults: ' + ', '.join(f'{k} {kinds[k]}' for k in FAULTS))
  print(', '.join(f'{k}: {totals[k]}' for k in
                  ('cycles', 'bitwise equal', 'rows lost',
                   'unexpected exits')))


if __name__ == '__main__':
  main()
