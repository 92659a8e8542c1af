"""Where a run's time goes and when it will end: the progress lines.

Training time is the wall time between progress points minus what the
measurements and checkpoints took in between; the first interval after a
(re)start, which compiles the train step, is booked as 'compile'. The ETA is
the remaining train steps at the rate of training alone, plus each
measurement's remaining scheduled runs and the remaining checkpoints at their
measured mean cost per run (a first run, which compiles, counts only until a
second one is timed). A rate that included the probes was off by 0.05x to 14x
on the quick start, whose probes crowd the first steps.
"""
import contextlib
import time

RECENT = 3  # intervals the training rate is taken over


def duration(seconds: float) -> str:
  """One family of units from start to end: '12.3s', '1m05s', '2h03m04s',
  '1d 03h01m01s' (a clock format after '59.9s' read as another kind of
  number mid-run; tenths only under a minute, where they still move)."""
  if seconds < 59.95:
    return f'{max(seconds, 0):.1f}s'
  seconds = int(round(seconds))
  days, rest = divmod(seconds, 86400)
  hours, rest = divmod(rest, 3600)
  minutes, secs = divmod(rest, 60)
  if days:
    return f'{days}d {hours:02d}h{minutes:02d}m{secs:02d}s'
  if hours:
    return f'{hours}h{minutes:02d}m{secs:02d}s'
  return f'{minutes}m{secs:02d}s'


class Progress:
  """Seconds per phase and the ETA of one run (or of its rest, resumed)."""

  def __init__(self, num_steps: int, start: int,
               schedules: dict[str, set[int]], checkpoint_steps: set[int],
               clock=time.perf_counter):
    self._num_steps, self._clock = num_steps, clock
    self._schedules = schedules
    self._checkpoints = checkpoint_steps
    self._runs = {name: [] for name in (*schedules, 'checkpoint')}
    self.seconds = {'train': 0.0, 'compile': 0.0}
    self._intervals = []  # (steps, seconds of training) per interval
    self._mark, self._mark_step, self._outside = clock(), start, 0.0
    self._compiled = False
    self.started = self._mark

  @contextlib.contextmanager
  def timed(self, phase: str):
    """Books the block's wall time to `phase` (a measurement name or
    'checkpoint'), outside training."""
    begin = self._clock()
    try:
      yield
    finally:
      spent = self._clock() - begin
      self._runs.setdefault(phase, []).append(spent)
      self._outside += spent

  def point(self, step: int):
    """A progress point, `step` steps trained and their results ready."""
    now = self._clock()
    train = now - self._mark - self._outside
    if self._compiled:
      self.seconds['train'] += train
      self._intervals.append((step - self._mark_step, train))
    else:  # the first interval compiles the train step
      self.seconds['compile'] += train
      self._compiled = True
    self._mark, self._mark_step, self._outside = now, step, 0.0

  def rate(self) -> float | None:
    """Steps per second of training alone over the last RECENT intervals
    (None before one is timed): the quick start's rate rose from 260 to 450
    steps/s as the log-spaced probes thinned out, and the mean since the
    start put its ETA 1.4x too high."""
    steps = sum(n for n, _ in self._intervals[-RECENT:])
    seconds = sum(t for _, t in self._intervals[-RECENT:])
    return steps / seconds if steps and seconds > 0 else None

  def _cost(self, phase: str) -> float:
    runs = self._runs.get(phase, [])
    runs = runs[1:] if len(runs) > 1 else runs
    return sum(runs) / len(runs) if runs else 0.0

  def eta(self, step: int) -> float | None:
    """Seconds until the end, `step` trained but not yet measured or
    checkpointed (None before a rate is known)."""
    rate = self.rate()
    if rate is None:
      return None
    rest = (self._num_steps - step) / rate
    for name, steps in self._schedules.items():
      rest += sum(s >= step for s in steps) * self._cost(name)
    rest += sum(s >= step for s in self._checkpoints) * self._cost(
        'checkpoint')
    return rest

  def split(self) -> str:
    """'train 41%, probe 38%, ...': the shares of the time so far."""
    spent = dict(self.seconds)
    for phase, runs in self._runs.items():
      if runs:
        spent[phase] = sum(runs)
    total = sum(spent.values()) or 1.0
    return ', '.join(f'{phase} {100 * s / total:.0f}%' for phase, s in
                     sorted(spent.items(), key=lambda kv: -kv[1]) if s > 0)

  def elapsed(self) -> str:
    return duration(self._clock() - self.started)

  def line(self, step: int, loss: float) -> str:
    """A progress line: step, loss, training rate, elapsed, ETA, split."""
    eta, rate = self.eta(step), self.rate()
    return (f'step {step}/{self._num_steps} ({100 * step // self._num_steps}%)'
            f' | loss {loss:.4f} | '
            + (f'{rate:.1f} steps/s training | ' if rate else '')
            + f'elapsed {self.elapsed()} | ETA '
            f'{duration(eta) if eta is not None else "?"} | time: '
            f'{self.split()}')
