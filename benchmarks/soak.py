"""Soak test of recovery: random kill -9 / SIGTERM / relaunch cycles.

    python -m benchmarks.soak [--cycles 30] [--seed 0] [--root DIR]

A reference run of the training loop test config (tests/train_test.py: the
embedded MNIST, 20 steps, checkpoints at 10 and 20, metrics every 2 steps),
then --cycles cycles, each in a fresh workdir: 1-3 faults, each a SIGKILL or
a SIGTERM at a random step (injected by tests/fault_launch.py at the step,
not at a time), a relaunch after each, and a last relaunch to the end.
Prints one line per cycle and the totals:

  cycles, recoveries (relaunches that resumed from a checkpoint), runs
  bitwise equal to the reference (every metrics row and every final param),
  rows lost (reference metrics rows missing at the end, over all cycles)
"""
import argparse
import os
import random
import subprocess
import sys
import tempfile

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _launch(args, fault=None):
  cmd = ([sys.executable, '-m', 'tests.fault_launch', *fault] if fault
         else [sys.executable, 'launch.py'])
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
  return subprocess.run(cmd + args, cwd=ROOT, env=env, capture_output=True,
                        text=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--cycles', type=int, default=30)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--root', default='')
  args = parser.parse_args()
  sys.path.insert(0, ROOT)
  from tests.conftest import load_params, metric_rows  # pylint: disable=g-import-not-at-top
  from tests.train_test import CONFIG, FLAGS  # pylint: disable=g-import-not-at-top
  root = args.root or tempfile.mkdtemp(prefix='cgjax-soak-')
  rng = random.Random(args.seed)
  flags = lambda w: ['--config', CONFIG, '--workdir', w, *FLAGS]
  ref = os.path.join(root, 'ref')
  done = _launch(flags(ref))
  assert done.returncode == 0, done.stderr[-2000:]
  want_rows, want_params = metric_rows(ref), load_params(ref, 20)
  totals = {'cycles': 0, 'recoveries': 0, 'bitwise equal': 0, 'rows lost': 0}
  for cycle in range(args.cycles):
    workdir = os.path.join(root, f'cycle{cycle}')
    faults = [(rng.choice(['KILL', 'TERM']), rng.randint(1, 19))
              for _ in range(rng.randint(1, 3))]
    recovered = 0
    for fault, step in faults:
      out = _launch(flags(workdir), (fault, str(step)))
      expected = {'KILL': -9, 'TERM': 75}[fault]
      if out.returncode not in (expected, 0):  # 0: the step was not reached
        print(f'cycle {cycle}: {fault}@{step} exited {out.returncode}:\n'
              f'{out.stderr[-1500:]}')
      recovered += 'resuming' in out.stdout
    final = _launch(flags(workdir))
    recovered += 'resuming' in final.stdout
    rows = metric_rows(workdir) if final.returncode == 0 else []
    equal = final.returncode == 0 and rows == want_rows and all(
        np.array_equal(a, b) for a, b in zip(
            jax.tree.leaves(want_params),
            jax.tree.leaves(load_params(workdir, 20))))
    lost = len(set(map(str, want_rows)) - set(map(str, rows)))
    totals['cycles'] += 1
    totals['recoveries'] += recovered
    totals['bitwise equal'] += equal
    totals['rows lost'] += lost
    print(f'cycle {cycle}: faults {faults}, resumed {recovered}x, '
          f'{"bitwise equal" if equal else "DIFFERENT"}, rows lost {lost}',
          flush=True)
  print(', '.join(f'{k}: {v}' for k, v in totals.items()))


if __name__ == '__main__':
  main()
