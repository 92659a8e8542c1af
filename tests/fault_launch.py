"""launch.py with a fault injected at a chosen step (never at a wall time).

    python -m tests.fault_launch FAULT STEP launch.py-flags...

FAULT, raised right after the metrics of STEP are written:
  KILL  SIGKILL (a crash: nothing runs after it)
  STOP  SIGSTOP (suspended, as by Ctrl-Z or scontrol suspend: it goes on
        where it was once it gets SIGCONT)
  TERM  SIGTERM (preemption), INT  SIGINT (Ctrl-C): the run checkpoints STEP
  ENOSPC  an OSError "No space left on device" from the metrics writer
  TERM_IN_MEASURE  SIGTERM as the measurements of STEP start (preemption
        during a long probe)
  ENOSPC_IN_SAVE  the checkpoint save of STEP fails with "No space left on
        device" and leaves a background writer that never ends (as orbax's
        threads do on a full disk)
and the moments of a crash before or between commits (SIGKILL; STEP is
ignored where no step applies):
  KILL_IMPORTS     while launch.py imports the train loop (INT_IMPORTS:
                   SIGINT there instead)
  KILL_COMPILE     while the train step is traced and compiled (INT_COMPILE:
                   SIGINT there instead)
  KILL_IN_MEASURE  as the measurements of STEP start (a probe)
  KILL_IN_SAVE     right after the asynchronous checkpoint save of STEP
                   started, while orbax writes it
Checkpoint saves are awaited before anything further happens (except with
KILL_IN_SAVE), so a fault never races an asynchronous checkpoint write.
"""
import errno
import os
import runpy
import signal
import sys
import threading

from cgjax import measurements
from cgjax import workdir

SIGNALS = {'KILL': signal.SIGKILL, 'TERM': signal.SIGTERM,
           'INT': signal.SIGINT, 'STOP': signal.SIGSTOP}
LAUNCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), 'launch.py')


def main():
  fault, at = sys.argv[1], int(sys.argv[2])
  write, save = workdir.MetricWriter.write, workdir.Checkpointer.save
  fired = []

  def faulty_write(self, step, scalars):
    if fault == 'ENOSPC' and step == at:
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self._path)
    write(self, step, scalars)
    if step == at and fault in SIGNALS and not fired:
      fired.append(step)  # once: a step's metrics may come in several writes
      os.kill(os.getpid(), SIGNALS[fault])

  def finished_save(self, step, *args):
    if fault == 'KILL_IN_SAVE' and step == at:
      save(self, step, *args)
      os.kill(os.getpid(), signal.SIGKILL)
    if fault == 'ENOSPC_IN_SAVE' and step == at:
      threading.Thread(target=threading.Event().wait, name='stuck-writer'
                       ).start()  # not a daemon: the interpreter waits for it
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC),
                    self.path(step))
    save(self, step, *args)
    self._manager.wait_until_finished()

  measure = measurements.Measurements.run

  def interrupted_run(self, state, step, *args, **kwargs):
    if fault == 'TERM_IN_MEASURE' and step == at and not fired:
      fired.append(step)
      os.kill(os.getpid(), signal.SIGTERM)
    if fault == 'KILL_IN_MEASURE' and step == at:
      os.kill(os.getpid(), signal.SIGKILL)
    return measure(self, state, step, *args, **kwargs)

  signum = signal.SIGINT if fault.startswith('INT_') else signal.SIGKILL
  if fault in ('KILL_COMPILE', 'INT_COMPILE'):
    from cgjax import train  # pylint: disable=g-import-not-at-top
    make_step = train.make_train_step

    def killed_in_compile(*args, **kwargs):
      step = make_step(*args, **kwargs)

      def traced(state, batch):  # runs while jax.jit traces it
        os.kill(os.getpid(), signum)
        return step(state, batch)
      return traced

    train.make_train_step = killed_in_compile
  if fault in ('KILL_IMPORTS', 'INT_IMPORTS'):
    sys.meta_path.insert(0, _SignalOnImport('cgjax.session', signum))

  workdir.MetricWriter.write = faulty_write
  measurements.Measurements.run = interrupted_run
  workdir.Checkpointer.save = finished_save
  sys.argv = ['launch.py'] + sys.argv[3:]
  runpy.run_path(LAUNCH, run_name='__main__')


class _SignalOnImport:
  """A meta path finder that signals the process when `name` is imported."""

  def __init__(self, name, signum):
    self._name, self._signum = name, signum

  def find_spec(self, name, path=None, target=None):
    del path, target
    if name == self._name:
      os.kill(os.getpid(), self._signum)


if __name__ == '__main__':
  main()
