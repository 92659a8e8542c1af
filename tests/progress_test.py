"""The ETA of the progress lines against a simulated run with a fake clock."""
import numpy as np
import pytest

from cgjax import measurements
from cgjax import progress


class Clock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def _simulate(num_steps, log_every, step_cost, costs, schedules, every_ckpt):
  """Runs the train loop's order of events on a fake clock: [(step, eta,
  actual remaining)] at each progress point."""
  clock = Clock()
  ckpts = set(range(every_ckpt, num_steps + 1, every_ckpt)) | {num_steps}
  tracker = progress.Progress(num_steps, 0, schedules, ckpts, clock)

  def measure(step):
    for name, steps in schedules.items():
      if step in steps:
        with tracker.timed(name):
          first = all(s >= step for s in steps)
          clock.now += costs[name] * (6 if first else 1)  # compiles once

  measure(0)
  points, naive = [], []  # naive: the rate of everything (the old ETA)
  for step in range(1, num_steps + 1):
    clock.now += step_cost + (20.0 if step == 1 else 0)  # compile
    if step == 1 or step % log_every == 0:
      tracker.point(step)
      points.append((step, tracker.eta(step), clock.now))
      naive.append((step, (num_steps - step) * clock.now / step, clock.now))
    measure(step)
    if step in ckpts:
      with tracker.timed('checkpoint'):
        clock.now += 0.4
  remaining = lambda rows: [(s, eta, clock.now - t) for s, eta, t in rows]
  return remaining(points), remaining(naive), tracker


def _schedule(**fields):
  cfg = measurements.spec('evaluation', **fields)
  return measurements.schedule_steps(cfg, 4000)


@pytest.mark.parametrize('name, probe_cost', [('quick start', 0.1),
                                              ('probe heavy', 3.0)])
def test_eta_is_within_25_percent_from_the_10_percent_point(name, probe_cost):
  schedules = {'probe': _schedule(every=400, num_log_spaced=30),
               'eval': _schedule(every=200, num_log_spaced=10),
               'learning': _schedule(every=50, num_log_spaced=20)}
  costs = {'probe': probe_cost, 'eval': 0.05, 'learning': 0.05}
  points, naive, tracker = _simulate(4000, 200, 0.004, costs, schedules,
                                     1000)
  assert points[0][1] is None  # step 1: the rate is not known yet
  late = [(s, eta, actual) for s, eta, actual in points if s >= 400]
  error = lambda rows: max(abs(eta - actual) / actual for s, eta, actual
                           in rows[:-1] if s >= 400)
  assert error(points) <= 0.25, (name, late)
  assert error(naive) > 0.25  # the simulated runs tell the two apart
  # The time split: training's 4000 x 4 ms, apart from the compile.
  np.testing.assert_allclose(tracker.seconds['train'], 3999 * 0.004, rtol=1e-6)
  assert tracker.seconds['compile'] == pytest.approx(20.004)


def test_duration_shows_days():
  assert progress.duration(27 * 3600 + 61) == '1d 03h01m01s'
  assert progress.duration(3599.6) == '1h00m00s'
  assert progress.duration(61) == '1m01s'
  assert progress.duration(59.94) == '59.9s'


def test_progress_line_states_rate_elapsed_eta_and_split():
  clock = Clock()
  tracker = progress.Progress(100, 0, {'probe': {0, 100}}, {100}, clock)
  with tracker.timed('probe'):
    clock.now += 2.0
  clock.now += 3.0  # step 1: 3 s of compile, the 2 s probe booked apart
  tracker.point(1)
  assert tracker.line(1, 2.5) == ('step 1/100 (1%) | loss 2.5000 | elapsed '
                                  '5.0s | ETA ? | time: compile 60%, probe 40%')
  clock.now += 9.8  # 49 steps: 5 steps/s
  tracker.point(50)
  # ETA: 50 steps / 5 per s + the probe at step 100 (2 s; no checkpoint
  # timed yet); split of 14.8 s: train 9.8, compile 3, probe 2.
  assert tracker.line(50, 1.0) == (
      'step 50/100 (50%) | loss 1.0000 | 5.0 steps/s training | elapsed '
      '14.8s | ETA 12.0s | time: train 66%, compile 20%, probe 14%')
