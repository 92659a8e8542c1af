"""SIGTERM (preemption) and SIGINT (Ctrl-C), honoured from a launch's first
instant.

`install()` (launch.py, before it imports JAX) makes both signals append
(state, exit code) to REQUESTS. Until a run has written anything
(`begin_writes`), a signal also ends the process at once: there is nothing
to keep. A KeyboardInterrupt raised inside a garbage-collector callback is
swallowed by Python (`Exception ignored in: <function _xla_gc_callback>`:
the run then trained to done), so the request is recorded first and the
run checks it before its first write. From then on a signal only records:
the train loop stops at the end of its step, checkpoints it and exits 75
(SIGTERM) or 130 (SIGINT); long measurements check between chunks. A second
signal ends the process at once (a run stuck on a hung store would never
reach the end of its step); the commit point makes that safe.
Imports nothing heavy, so that it can be installed before JAX is.
"""
import os
import signal
import sys
import threading

SIGNALS = {signal.SIGTERM: ('preempted', 75), signal.SIGINT: ('interrupted',
                                                              130)}
# (state, exit code) of every stop request of this process, in order.
REQUESTS: list[tuple[str, int]] = []
_state = {'writing': False}


class StoppedBeforeWriting(SystemExit):
  """A stop request came before the run wrote anything: the launch exits
  with the signal's code, and the workdir is as it was."""

  def __init__(self, how: str, code: int):
    print(f'[cgjax] {how} before the run wrote anything; relaunch the same '
          'command to start it', file=sys.stderr, flush=True)
    super().__init__(code)


def _handle(signum, frame):
  del frame
  if REQUESTS:  # a second request: a stuck run (a hung store) ends now
    print(f'[cgjax] {SIGNALS[signum][0]} again: exiting at once; the '
          'relaunch resumes from the last finished checkpoint',
          file=sys.stderr, flush=True)
    os._exit(SIGNALS[signum][1])  # pylint: disable=protected-access
  REQUESTS.append(SIGNALS[signum])
  if not _state['writing']:
    raise StoppedBeforeWriting(*SIGNALS[signum])


def install():
  """Both signals to REQUESTS (main thread only: signals reach it alone)."""
  if threading.current_thread() is threading.main_thread():
    for signum in SIGNALS:
      signal.signal(signum, _handle)


def multi_process():
  """After jax.distributed started: its own SIGTERM handler (installed over
  this one) agrees with the peers on the step to stop at, since one
  process's signal must not make it checkpoint alone; Ctrl-C ends this
  process (KeyboardInterrupt), which its peers then see lost."""
  if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGINT, signal.default_int_handler)


def check_before_writing():
  """Exits (StoppedBeforeWriting) where a stop request came already; else
  from now on signals only record (the run has things to keep)."""
  if REQUESTS:
    raise StoppedBeforeWriting(*REQUESTS[0])
  _state['writing'] = True


def requested() -> tuple[str, int] | None:
  return REQUESTS[0] if REQUESTS else None
