"""launch.py with a fault injected at a chosen step (never at a wall time).

    python -m tests.fault_launch FAULT STEP launch.py-flags...

FAULT, raised right after the metrics of STEP are written:
  KILL  SIGKILL (a crash: nothing runs after it)
  STOP  SIGSTOP (suspended, as by Ctrl-Z or scontrol suspend: it goes on
        where it was once it gets SIGCONT)
  TERM  SIGTERM (preemption), INT  SIGINT (Ctrl-C): the run checkpoints STEP
  ENOSPC  an OSError "No space left on device" from the metrics writer
Checkpoint saves are awaited before anything further happens, so a fault
never races an asynchronous checkpoint write.
"""
import errno
import os
import runpy
import signal
import sys

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

  def finished_save(self, *args):
    save(self, *args)
    self._manager.wait_until_finished()

  workdir.MetricWriter.write = faulty_write
  workdir.Checkpointer.save = finished_save
  sys.argv = ['launch.py'] + sys.argv[3:]
  runpy.run_path(LAUNCH, run_name='__main__')


if __name__ == '__main__':
  main()
