"""A sweep as one SLURM job array: the sbatch script, its submission, and
the requeue that resumes a trial SLURM stopped.

Array task k runs trial k under `srun` (one jax.distributed job over the
task's nodes and tasks: JAX reads SLURM's variables). SLURM stops a task
with SIGTERM on preemption, on `scontrol requeue` and, with
`--signal=TERM@S`, S seconds before its time limit; the run checkpoints the
step it is in and exits 75 (cgjax.stops). A preemption or a requeue puts the
task back in the queue by itself; a time limit ends it, so the script
requeues a task whose run exited 75, and the restarted task resumes. A trial
already done is skipped (a requeue of the whole array reruns nothing).
"""
import dataclasses
import shlex
import subprocess

from cgjax import storage
from cgjax import sweep

# The exit code of a run stopped by SIGTERM after checkpointing (cgjax.stops).
STOPPED = 75


@dataclasses.dataclass(frozen=True)
class Options:
  """What each array task asks of SLURM.

  nodes, tasks_per_node: one trial's jax.distributed job (one task per
    node that owns all its GPUs, or one per GPU);
  gpus_per_task: `--gpus-per-task` (0: none asked);
  max_running: the array's `%N` limit (0: none);
  signal_seconds: SIGTERM this long before the time limit, time for the
    step in flight and its checkpoint;
  sbatch: more `#SBATCH` options as given (`--time=4:00:00`,
    `--partition=gpu`)."""
  nodes: int = 1
  tasks_per_node: int = 1
  gpus_per_task: int = 0
  max_running: int = 0
  signal_seconds: int = 120
  sbatch: tuple[str, ...] = ()

  def check(self):
    for name in ('nodes', 'tasks_per_node'):
      if getattr(self, name) < 1:
        raise ValueError(f'--{name} must be >= 1, got {getattr(self, name)}')
    # As the flags name them (max_running is --parallel's %N).
    for name, flag in (('gpus_per_task', 'gpus_per_task'),
                       ('max_running', 'parallel'),
                       ('signal_seconds', 'signal_seconds')):
      if getattr(self, name) < 0:
        raise ValueError(f'--{flag} must be >= 0, got {getattr(self, name)}')
    for option in self.sbatch:
      if not option.startswith('-'):
        raise ValueError(f'--sbatch takes sbatch options such as '
                         f'--time=4:00:00, got {option!r}')


def script(runs: list[tuple[str, list[str]]], sweep_dir: str,
           options: Options) -> str:
  """The sbatch script of a sweep: `runs` is sweep.commands' (workdir,
  argv) per trial, array task k running trial k."""
  options.check()
  if not storage.is_local(sweep_dir):
    # SLURM writes the tasks' output files, and the script reads each
    # trial's status.json, on the nodes' own filesystem.
    raise ValueError(f'--slurm needs a sweep dir on a filesystem the nodes '
                     f'share, got {sweep_dir!r}')
  limit = f'%{options.max_running}' if options.max_running else ''
  header = [
      f'--job-name=cgjax-{storage.basename(sweep_dir)}',
      f'--array=0-{len(runs) - 1}{limit}',
      f'--nodes={options.nodes}',
      f'--ntasks-per-node={options.tasks_per_node}',
      *([f'--gpus-per-task={options.gpus_per_task}']
        if options.gpus_per_task else []),
      '--requeue',  # preemption and `scontrol requeue` restart the task
      f'--signal=TERM@{options.signal_seconds}',
      '--open-mode=append',  # a restarted task's output follows the first's
      f'--output={storage.join(sweep_dir, "slurm", "%A_%a.out")}',
      *options.sbatch]
  cases = []
  for index, (workdir, argv) in enumerate(runs):
    cases.append(f'  {index}) WORKDIR={shlex.quote(workdir)}\n'
                 f'     RUN=({sweep.shell_command(argv)}) ;;')
  return '\n'.join([
      '#!/bin/bash',
      f'# The sweep {sweep_dir} as a SLURM job array, one task per trial '
      '(cgjax launch.py --sweep --slurm).',
      *[f'#SBATCH {line}' for line in header],
      '',
      'case "$SLURM_ARRAY_TASK_ID" in',
      *cases,
      'esac',
      '# A trial already done is not run again (a requeue of the array).',
      'if grep -qs \'"state": "done"\' "$WORKDIR/status.json"; then',
      '  echo "[slurm] $WORKDIR is done"; exit 0',
      'fi',
      '# SLURM\'s SIGTERM at the time limit must not end this script before',
      '# its requeue below: the trap waits for srun (KillWait later, KILL).',
      'trap \'echo "[slurm] SIGTERM: the run checkpoints"\' TERM',
      'srun --kill-on-bad-exit=1 "${RUN[@]}"',
      'code=$?',
      f'# {STOPPED}: stopped by SIGTERM and checkpointed. Before a time limit '
      'SLURM',
      '# would end the task: requeued, it resumes from that checkpoint.',
      f'if [ "$code" -eq {STOPPED} ]; then',
      '  scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"',
      'fi',
      'exit "$code"',
      ''])


def write(text: str, sweep_dir: str) -> str:
  """The script as SWEEP_DIR/slurm/sweep.sbatch (the tasks' output goes
  beside it); returns its path."""
  folder = storage.join(sweep_dir, 'slurm')
  storage.makedirs(folder)
  path = storage.join(folder, 'sweep.sbatch')
  storage.write_atomic(path, text)
  return path


def submit(path: str) -> str:
  """`sbatch --parsable PATH`; the job id, or one line with sbatch's own
  error."""
  try:
    proc = subprocess.run(['sbatch', '--parsable', path], capture_output=True,
                          text=True, timeout=120, check=False)
  except FileNotFoundError:
    raise ValueError('sbatch not found: --slurm submits from a host with '
                     'SLURM\'s commands (or add --dry_run to see the '
                     'script)') from None
  if proc.returncode:
    raise ValueError(f'sbatch {path} failed: '
                     f'{proc.stderr.strip().splitlines()[-1:]}')
  return proc.stdout.strip().split(';')[0]

