"""Each process of a multi-process run, watched from a small parent.

JAX's distributed client ends its process the moment it polls an error from
the coordination service, e.g. when the coordinator's process died: an
abort with pages of C++ and Python tracebacks, and no Python hook (the
client factory's callback argument cannot be called from Python: nanobind
has no caster for its absl::Status). So launch.py runs each process of a
multi-process run as a child of this parent, which passes the child's
output through, forwards SIGTERM / SIGINT (preemption), and, where the
child ends that way, prints one line and marks the run failed instead.
Losses JAX does not see first (a peer that stops beating, a collective
that fails) are handled inside the child (cgjax.parallel.watch_peers).
"""
import ctypes
import json
import os
import re
import signal
import subprocess
import sys

from cgjax import parallel
from cgjax import workdir as workdir_lib

CHILD = 'CGJAX_SUPERVISED'  # set in the child's environment
FATAL = ('Terminating process because the JAX distributed service detected '
         'fatal errors')


def _flag(argv: list[str], name: str) -> str:
  for i, a in enumerate(argv):
    if a == name and i + 1 < len(argv):
      return argv[i + 1]
    if a.startswith(name + '='):
      return a.split('=', 1)[1]
  return ''


def needed(argv: list[str]) -> bool:
  """A training or evaluation process of a multi-process job (not a sweep
  driver, which starts such processes itself), not yet supervised."""
  if os.environ.get(CHILD) or any(
      a.split('=')[0] in ('--sweep', '--print-commands') for a in argv):
    return False
  return bool(_flag(argv, '--coordinator_address')
              or parallel.detected_cluster())


def _die_with_parent():
  try:  # Linux: the child gets SIGKILL when this parent dies
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
  except (OSError, AttributeError):
    pass


def run(argv: list[str]):
  """Runs this very command line (sys.orig_argv) as the child; exits as it
  did (the same signal where it was killed by one), or 1 with one line."""
  child = subprocess.Popen([sys.executable, *sys.orig_argv[1:]],
                           env={**os.environ, CHILD: '1'},
                           stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
  for signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(signum, lambda s, f: child.send_signal(s))
  fatal, held = False, []
  for raw in child.stderr:
    line = raw.decode(errors='replace')
    if fatal or FATAL in line:  # then only C++ logs and stack dumps follow
      fatal, held = True, []  # and the error lines just before it
    elif _CPP_LOG.match(line):
      held.append(line)  # until a line of another kind shows it was no end
    else:
      sys.stderr.write(''.join(held) + line)
      sys.stderr.flush()
      held = []
  code = child.wait()
  sys.stderr.write(''.join(held))
  if fatal:
    sys.exit(_lost(argv))
  if code < 0:  # killed by a signal: so is this parent, as a shell expects
    try:
      signal.signal(-code, signal.SIG_DFL)
    except (OSError, ValueError):  # SIGKILL's cannot be set, nor caught
      pass
    os.kill(os.getpid(), -code)
  sys.exit(code)


# absl / XLA C++ log lines: 'E1201 19:21:59.743428  18018 file.cc:289] ...'
_CPP_LOG = re.compile(r'[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ ')


def _lost(argv) -> int:
  me = int(_flag(argv, '--process_id') or (parallel.detected_cluster()
                                           or (0, 0))[0])
  count = _flag(argv, '--num_processes') or (parallel.detected_cluster()
                                             or (0, '?'))[1]
  who, why = (('process 0', 'the coordinator stopped answering') if me else
              ('a process', "JAX's coordination service reported it"))
  workdir, step = _flag(argv, '--workdir'), '?'
  if workdir:
    try:
      status = workdir_lib.read_status_file(workdir)
      step = status.get('step', '?')
      if status['state'] == 'running':
        workdir_lib.set_status(workdir, 'failed', int(step),
                               f'{who} lost: {why} (seen by process {me})',
                               checkpoint=status.get('checkpoint'),
                               any_process=True)
    except (OSError, ValueError, TypeError, json.JSONDecodeError):
      pass  # the line below still says what happened
  sys.stderr.write(f'error: {who} of {count} is lost ({why}) at step {step}; '
                   f'process {me} stops (the '
                   'step is the last one logged). Relaunch every process to '
                   'resume from the last checkpoint\n')
  sys.stderr.flush()
  return 1
