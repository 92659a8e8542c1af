"""Launches one cgjax training run.

  python launch.py --config configs/mnist_mlp.py:noise=0.5 --workdir runs/x \\
      --config.optim.lr=0.05

Flags:
  --config        config file, optionally ':arg' for its get_config(arg);
                  any field can be overridden with --config.a.b=value
  --workdir       where results go; relaunching with the same workdir and
                  config resumes. Default: a fresh dir under runs/
  --coordinator_address, --num_processes, --process_id
                  explicit jax.distributed settings for multi-process runs
                  (TPU pods and SLURM are detected without them); with
                  --sweep, every process runs the same sweep and trial k
                  is one job over all of them (coordinator port + k)
  --sweep         run every trial of the config's get_sweep(arg), each in
                  WORKDIR/<trial> (WORKDIR default: a new runs/<config>_sweep_*);
                  finished trials are skipped, unfinished ones resumed;
                  --config.x overrides apply to every trial
  --parallel N    with --sweep: N trials at a time as local processes; on a
                  GPU host each gets its own GPUs (CUDA_VISIBLE_DEVICES) and
                  a memory fraction
  --devices_per_trial  with --parallel: GPUs per trial (default: all / N)
  --print-commands  with --sweep: print one command per trial and exit
  --status        with --sweep: print each trial's state (from the sweep
                  dir: what a SLURM array or a pod did) and exit
  --slurm         with --sweep: write WORKDIR/slurm/sweep.sbatch, one SLURM
                  job array (task k = trial k under srun, requeued when
                  stopped, done trials skipped) and submit it with sbatch;
                  --parallel N limits the tasks running at once (%N)
  --dry_run       with --slurm: print the script only
  --sbatch OPT    with --slurm: an sbatch option for every task, as sbatch
                  takes it (--sbatch=--time=4:00:00 --sbatch=--partition=gpu)
  --nodes, --tasks_per_node, --gpus_per_task
                  with --slurm: one trial's job (default 1 node, 1 task, no
                  GPU asked); its processes form one jax.distributed run
  --signal_seconds  with --slurm: SIGTERM this long before the time limit
                  (default 120: the step in flight, its measurements and a
                  checkpoint; see a run's 'time:' split)
  --retry_failed  with --sweep: rerun failed and diverged trials too (they are
                  skipped, and listed, otherwise)
  --evaluate      no training: every measurement of the config, once, on the
                  checkpoint of --workdir at --step (default: the newest);
                  the config may differ from the run's in measurements only;
                  results in WORKDIR/evaluations/step_STEP/
  --step          with --evaluate: the checkpoint's step
  --out DIR       with --evaluate: results there instead (a read-only workdir)
  --restart       move the workdir's old records to WORKDIR/restart_N/ (never
                  deleted) and start over: a run whose checkpoints (or
                  metrics) are gone is refused otherwise, since a fresh start
                  would replace its records with fewer
  --check         resolve and validate the config (with --sweep: every
                  trial's), print what would run, and exit 0 without
                  writing anything: a command checked before a long job
  --traceback     print Python tracebacks of errors (one line otherwise)

Exit codes: 0 done; 1 an error (one line naming the bad value, file or path);
75 preempted (SIGTERM: the current step was checkpointed; relaunch resumes);
130 interrupted (SIGINT, likewise); 3 diverged.
"""
import datetime
import importlib.util
import os
import re
import sys
import threading

from absl import app
from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags

# After an error, the process is gone this many seconds later at the most
# (CGJAX_EXIT_SECONDS overrides it).
EXIT_SECONDS = float(os.environ.get('CGJAX_EXIT_SECONDS', 20.0))

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file[:arg].',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', '', 'Run directory (default: new '
                               'one under runs/).')
_COORDINATOR = flags.DEFINE_string('coordinator_address', '',
                                   'jax.distributed coordinator host:port.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', 0,
                                      'jax.distributed process count.')
_PROCESS_ID = flags.DEFINE_integer('process_id', -1,
                                   'jax.distributed id of this process.')
_SWEEP = flags.DEFINE_bool('sweep', False, "Run the config's get_sweep(arg).")
_RETRY_FAILED = flags.DEFINE_bool('retry_failed', False,
                                  'With --sweep: rerun failed/diverged trials.')
_TRACEBACK = flags.DEFINE_bool('traceback', False,
                               'Print tracebacks of errors.')
_PARALLEL = flags.DEFINE_integer('parallel', 1, 'Sweep trials run at once.')
_DEVICES_PER_TRIAL = flags.DEFINE_integer(
    'devices_per_trial', 0, 'With --sweep --parallel N on a GPU host: GPUs '
    'per trial (default: all GPUs / N).')
_JAX_CACHE = flags.DEFINE_string(
    'jax_cache_dir', '', "XLA's persistent compilation cache (default: "
    "$JAX_COMPILATION_CACHE_DIR where set, else WORKDIR/../.jax_cache, "
    "shared by a sweep's trials and by resumes; 'none': off).")
_EVALUATE = flags.DEFINE_bool(
    'evaluate', False, "Measure the checkpoint of --workdir at --step; no "
    'training.')
_STEP = flags.DEFINE_integer('step', None, 'With --evaluate: the checkpoint '
                             'step (default: the newest).')
_OUT = flags.DEFINE_string('out', '', 'With --evaluate: where results go '
                           '(default: WORKDIR/evaluations/step_STEP/), e.g. '
                           'for a read-only workdir.')
_CHECK = flags.DEFINE_bool(
    'check', False, 'Validate the config (every trial with --sweep), print '
    'what would run, exit 0; nothing is written.')
_RESTART = flags.DEFINE_bool(
    'restart', False, "Move the workdir's old records to WORKDIR/restart_N/ "
    '(nothing is deleted) and start the run over.')
_PRINT_COMMANDS = flags.DEFINE_bool('print-commands', False,
                                    'Print the sweep trial commands and exit.')
_STATUS = flags.DEFINE_bool('status', False, "With --sweep: each trial's "
                            'state from the sweep dir, and exit.')
_SLURM = flags.DEFINE_bool('slurm', False, 'With --sweep: submit the sweep as '
                           'one SLURM job array (cgjax.slurm).')
_DRY_RUN = flags.DEFINE_bool('dry_run', False, 'With --slurm: print the sbatch '
                             'script, submit nothing.')
_SBATCH = flags.DEFINE_multi_string('sbatch', [], 'With --slurm: an sbatch '
                                    'option for every task, e.g. '
                                    '--sbatch=--time=4:00:00 (repeatable).')
_NODES = flags.DEFINE_integer('nodes', 1, 'With --slurm: nodes per trial.')
_TASKS_PER_NODE = flags.DEFINE_integer('tasks_per_node', 1, 'With --slurm: '
                                       'processes per node.')
_GPUS_PER_TASK = flags.DEFINE_integer('gpus_per_task', 0, 'With --slurm: '
                                      'GPUs per process.')
_SIGNAL_SECONDS = flags.DEFINE_integer(
    'signal_seconds', 120, 'With --slurm: SIGTERM this long before the time '
    'limit (the step in flight, its measurements and a checkpoint).')


def _config_spec(argv):
  for i, a in enumerate(argv):
    if a == '--config' and i + 1 < len(argv):
      return argv[i + 1]
    if a.startswith('--config='):
      return a.split('=', 1)[1]
  return None


def _installed_configs() -> str:
  """The folder of the configs that ship with cgjax (cgjax/configs)."""
  import cgjax.configs  # pylint: disable=g-import-not-at-top
  return os.path.dirname(os.path.abspath(cgjax.configs.__file__))


def _config_names() -> str:
  return ', '.join(sorted(n for n in os.listdir(_installed_configs())
                          if n.endswith('.py') and n not in (
                              '__init__.py', 'common.py')))


def config_path(spec: str) -> str:
  """The absolute path of the spec's config file (printed commands work
  from any directory): the path as given, else a config of cgjax's own by
  name (`mnist_mlp.py`, `configs/mnist_mlp.py` or `cgjax/configs/...`, so
  one command serves a checkout and an installed package). One line naming
  where it looked where neither exists."""
  path = spec.partition(':')[0]
  if os.path.isdir(path):
    sys.exit(f'error: --config {path!r} is a folder; name a config file in '
             f'it, e.g. {os.path.join(path, "mnist_mlp.py")}')
  if os.path.exists(path):
    return os.path.abspath(path)
  shipped = os.path.join(_installed_configs(), os.path.basename(path))
  if os.path.dirname(path) in ('', 'configs', os.path.join('cgjax', 'configs')) \
      and os.path.exists(shipped):
    return shipped
  sys.exit(f'error: config file {path!r} does not exist (looked in '
           f'{os.getcwd()} and in cgjax\'s configs, {_installed_configs()}: '
           f'{_config_names()})')


def with_config_path(argv: list[str]) -> list[str]:
  """argv with its --config file as config_path gives it."""
  spec = _config_spec(argv)
  if not spec:
    return argv
  resolved = config_path(spec) + spec[len(spec.partition(':')[0]):]
  out = list(argv)
  for i, a in enumerate(out):
    if a == '--config' and i + 1 < len(out):
      out[i + 1] = resolved
      break
    if a.startswith('--config='):
      out[i] = f'--config={resolved}'
      break
  return out


def config_module(spec: str):
  """The config file as a module; one line naming the file where it does not
  exist, does not load, or defines no get_config."""
  path = config_path(spec)
  module_spec = importlib.util.spec_from_file_location('_cgjax_config', path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except Exception as err:  # pylint: disable=broad-except
    sys.exit(f'error: config file {path!r} does not load: {_one_line(err)}')
  if not callable(getattr(module, 'get_config', None)):
    sys.exit(f'error: config file {path!r} defines no get_config(arg)')
  return module


def _one_line(err: BaseException) -> str:
  """'SyntaxError: invalid syntax (mnist.py, line 3)', never a traceback."""
  text = str(err).strip().splitlines()
  return f'{type(err).__name__}: {text[0] if text else ""}'[:300]


def get_config(spec: str):
  """get_config(arg) of the config file; one line where it raises."""
  path, _, arg = spec.partition(':')
  module = config_module(spec)
  try:
    config = module.get_config(arg or None)
  except ValueError as err:
    sys.exit(f'error: {err}')
  except Exception as err:  # pylint: disable=broad-except
    sys.exit(f'error: {path}: get_config({arg!r}) raised {_one_line(err)}')
  if not isinstance(config, ml_collections.ConfigDict):
    sys.exit(f'error: {path}: get_config({arg!r}) returned a '
             f'{type(config).__name__}, not an ml_collections.ConfigDict')
  return config


def _program() -> str:
  """How the user called it: `cgjax-train` or `python launch.py`."""
  return ('cgjax-train' if os.path.basename(sys.argv[0]) == 'cgjax-train'
          else 'python launch.py')


def _usage(message: str):
  """A usage error as one line (absl would print every flag's help first)."""
  sys.exit(f'error: {message} ({_program()} --help lists the flags)')


def check_overrides(argv):
  """Rejects unknown --config.a.b keys with a message naming them.

  ml_collections would otherwise fail deep in flag parsing with a bare
  AttributeError.
  """
  spec = _config_spec(argv)
  if not spec:
    return
  config = get_config(spec)
  for a in argv:
    m = re.match(r'--config\.([\w.]+)(=|$)', a)
    if not m:
      continue
    node, walked = config, []
    for part in m.group(1).split('.'):
      if not hasattr(node, 'keys') or part not in node.keys():
        known = ', '.join(sorted(node.keys())) if hasattr(node, 'keys') else ''
        sys.exit(f"error: unknown config key 'config.{m.group(1)}': "
                 f"{'.'.join(['config'] + walked)} has no field {part!r}"
                 + (f' (fields: {known})' if known else ''))
      node = node[part]
      walked.append(part)


def resolved_config(argv):
  """The config that launch.py would run for argv (file, arg and every
  --config.a.b override), parsed by the same flag as --config."""
  args = ['launch.py', '--config', _config_spec(argv),
          *[a for a in argv if a.startswith('--config.')]]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, '', flag_values=values,
                                  lock_config=True, sys_argv=args)
  try:
    values(args)
  except flags.Error as err:
    sys.exit(f'error: {_one_line(err)}')
  return values.config


def default_workdir(spec: str, suffix: str = '') -> str:
  path, _, arg = spec.partition(':')
  name = os.path.splitext(os.path.basename(path))[0] + suffix
  if arg:
    name += '_' + re.sub(r'[^\w.=-]+', '_', arg)
  stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
  return os.path.join('runs', f'{name}_{stamp}')


def _check_flags(argv):
  """Usage errors, one line each, before anything starts."""
  if len(argv) > 1:
    _usage(f'unexpected arguments: {argv[1:]}')
  if _CONFIG.value is None:
    _usage('--config is required, e.g. --config mnist_mlp.py:noise=0.5 '
           f'(cgjax\'s configs: {_config_names()})')
  if _SWEEP.value and (_EVALUATE.value or _STEP.present):
    _usage('--evaluate measures one workdir; drop --sweep (or '
           'evaluate each trial dir)')
  if (_NUM_PROCESSES.present or _PROCESS_ID.present) and not _COORDINATOR.value:
    _usage('--num_processes and --process_id need --coordinator_address '
           '(host:port of process 0); SLURM and TPU pods need none of them')
  if _RESTART.value and (_EVALUATE.value or _SWEEP.value):
    _usage('--restart starts one run over; not with --evaluate or --sweep')
  slurm_only = [name for name in ('dry_run', 'sbatch', 'nodes',
                                   'tasks_per_node', 'gpus_per_task',
                                   'signal_seconds')
                if flags.FLAGS[name].present]
  if slurm_only and not _SLURM.value:
    _usage(f'--{slurm_only[0]} needs --slurm (and --sweep)')
  if _SWEEP.value:
    if _SLURM.value and (_STATUS.value or _PRINT_COMMANDS.value):
      _usage('--slurm submits the sweep; --status and --print-commands '
             'only read or print it')
    return
  if (_PRINT_COMMANDS.value or _PARALLEL.present or _DEVICES_PER_TRIAL.present
      or _STATUS.value or _SLURM.value):
    _usage('--print-commands, --status, --slurm, --parallel and '
           '--devices_per_trial need --sweep')
  if (_STEP.present or _OUT.value) and not _EVALUATE.value:
    _usage('--step and --out need --evaluate')
  if _EVALUATE.value and not _WORKDIR.value:
    _usage('--evaluate needs --workdir (the run to measure)')


def main(argv):
  _check_flags(argv)
  if not flags.FLAGS['verbosity'].present and not _TRACEBACK.value:
    # cgjax reports every error itself, in one line naming the file: the
    # libraries' own logs (orbax logs each failed writer thread of a full
    # disk with its traceback, ~320 lines) only with --verbosity or
    # --traceback.
    logging.set_verbosity(logging.FATAL)
  if _SWEEP.value:
    return run_sweep(sys.argv)
  from cgjax import parallel  # pylint: disable=g-import-not-at-top
  parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value,
                                  _PROCESS_ID.value)
  import jax  # pylint: disable=g-import-not-at-top
  workdir = _WORKDIR.value
  if not workdir:
    if jax.process_count() > 1:
      _usage('multi-process runs need an explicit --workdir')
    workdir = default_workdir(_config_spec(sys.argv))
  if jax.process_index() == 0:
    print(f'[cgjax] workdir: {workdir}', flush=True)
    assigned = ' '.join(f'{k}={os.environ[k]}' for k in (
        'CUDA_VISIBLE_DEVICES', 'XLA_PYTHON_CLIENT_MEM_FRACTION')
                        if k in os.environ)
    if assigned:  # e.g. a trial of a --parallel sweep on a GPU host
      print(f'[cgjax] devices: {assigned}', flush=True)
  from cgjax import storage  # pylint: disable=g-import-not-at-top
  from cgjax import train  # pylint: disable=g-import-not-at-top
  try:  # a refused config leaves nothing behind, not even the XLA cache
    train.validate(_CONFIG.value)
    storage.check_reachable(workdir, log=lambda line: print(
        f'[cgjax] {line}', file=sys.stderr, flush=True))
  except (ValueError, OSError) as err:
    if _TRACEBACK.value:
      raise
    sys.exit(f'error: {err}')
  if _CHECK.value:
    config = _CONFIG.value
    from cgjax import session  # pylint: disable=g-import-not-at-top
    try:
      workdir_plan = ('' if _EVALUATE.value else '; workdir: ' +
                      session.check_launch(config, workdir, _RESTART.value))
    except ValueError as err:  # workdir.Refused: one line, nothing written
      if _TRACEBACK.value:
        raise
      sys.exit(f'error: {err}')
    print(f'[cgjax] check: config valid; would '
          f'{"evaluate" if _EVALUATE.value else "train"} {config.model.name} '
          f'on {config.data.name}, {config.num_steps} steps, measurements: '
          f'{", ".join(sorted(config.measurements))}{workdir_plan}')
    return
  created_cache = _compilation_cache(workdir)
  final = _launch(workdir, created_cache)
  if jax.process_index() == 0:
    from cgjax import measurements  # pylint: disable=g-import-not-at-top
    headline = measurements.headline_keys(_CONFIG.value.measurements, final)
    print('[cgjax] final: ' + ', '.join(f'{k}={final[k]:.4f}'
                                        for k in headline))
    if not _EVALUATE.value:
      print(f'[cgjax] results in {workdir}: metrics.jsonl, TensorBoard '
            f'events, checkpoints/; report: cgjax-report {workdir} (in a '
            f'checkout: python -m experiments.report {workdir})')


def _compilation_cache(workdir: str) -> str | None:
  """XLA's persistent cache (resumes and sweep trials skip recompiling);
  returns its path where this launch created it (removed again if the
  launch is refused)."""
  import jax  # pylint: disable=g-import-not-at-top
  from cgjax import storage  # pylint: disable=g-import-not-at-top
  # JAX's own variable, where set, names the cache of every run (the tests'
  # one cache per session: no launch compiles what another compiled).
  cache = (_JAX_CACHE.value or os.environ.get('JAX_COMPILATION_CACHE_DIR')
           or storage.join(storage.dirname(storage.absolute(workdir)),
                           '.jax_cache'))
  if cache == 'none':
    return None
  created = not storage.exists(cache)
  try:
    storage.makedirs(cache)
    jax.config.update('jax_compilation_cache_dir', cache)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
  except OSError as err:  # a cache is no reason to fail the run
    print(f'[cgjax] warning: --jax_cache_dir={cache!r} is not usable '
          f'({err.strerror}); compiling without a persistent cache',
          file=sys.stderr, flush=True)
    return None
  return cache if created else None


def _launch(workdir: str, created_cache: str | None) -> dict:
  """Trains (or evaluates); every ending but done exits here, in one line
  with its exit code."""
  import jax  # pylint: disable=g-import-not-at-top
  from cgjax import session  # pylint: disable=g-import-not-at-top
  from cgjax import storage  # pylint: disable=g-import-not-at-top
  from cgjax import train  # pylint: disable=g-import-not-at-top
  from cgjax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  try:
    if _EVALUATE.value:
      return train.evaluate(_CONFIG.value, workdir, _STEP.value, _OUT.value)
    return train.train_and_evaluate(_CONFIG.value, workdir, _RESTART.value)
  except session.Stopped as stopped:
    print(f'[cgjax] {stopped}', flush=True)
    sys.exit(stopped.exit_code)
  except Exception as err:  # pylint: disable=broad-except
    expected = (ValueError, OSError, FloatingPointError, workdir_lib.LockLost)
    if _TRACEBACK.value or (not isinstance(err, expected)
                            and jax.process_count() == 1):
      raise
    if created_cache and isinstance(err, ValueError):  # refused: left as found
      storage.rmtree(created_cache)
    text = str(err) if isinstance(err, expected) else (
        f'{type(err).__name__}: {str(err).splitlines()[0][:300]}')
    print(f'error: {text}', file=sys.stderr, flush=True)
    code = 3 if isinstance(err, session.Diverged) else 1
    if jax.process_count() > 1:
      # Not through jax's shutdown barrier, which would wait for peers that
      # wait for this process in a collective: they see it gone and stop.
      sys.stdout.flush()
      os._exit(code)  # pylint: disable=protected-access
    # A background writer stuck on the failed storage (orbax's threads on a
    # full disk) would keep the interpreter from ever exiting: not past this.
    exit_timer = threading.Timer(EXIT_SECONDS, os._exit, [code])  # pylint: disable=protected-access
    exit_timer.daemon = True
    exit_timer.start()
    sys.exit(code)


def run_sweep(argv):
  """Every trial as its own launch.py process (or its command printed)."""
  from cgjax import storage  # pylint: disable=g-import-not-at-top
  from cgjax import parallel  # pylint: disable=g-import-not-at-top
  from cgjax import sweep  # pylint: disable=g-import-not-at-top
  cluster = None
  if _COORDINATOR.value:
    if _NUM_PROCESSES.value < 1 or not 0 <= _PROCESS_ID.value < _NUM_PROCESSES.value:
      _usage('--coordinator_address needs --num_processes >= 1 '
                           'and 0 <= --process_id < --num_processes, got '
                           f'{_NUM_PROCESSES.value} and {_PROCESS_ID.value}')
    cluster = sweep.Cluster(_PROCESS_ID.value, _NUM_PROCESSES.value,
                            _COORDINATOR.value)
  elif parallel.detected_cluster():
    cluster = sweep.Cluster(*parallel.detected_cluster())
  if cluster and not _WORKDIR.value:
    _usage('a multi-process sweep needs an explicit --workdir '
                         'that every process can reach')
  spec = _config_spec(argv)
  try:
    trials = sweep.load_trials(config_module(spec), spec.partition(':')[2])
  except ValueError as err:
    sys.exit(f'error: {err}')
  sweep_dir = storage.absolute(_WORKDIR.value or default_workdir(spec, '_sweep'))
  shared = [a for a in argv[1:] if a.startswith('--config.')]
  launch = os.path.abspath(__file__)
  runs = sweep.commands(launch, spec, trials, sweep_dir, shared)
  from cgjax import train  # pylint: disable=g-import-not-at-top
  for workdir, cmd in runs:  # every trial's config is valid, before any starts
    check_overrides(cmd[1:])
    try:
      train.validate(resolved_config(cmd[1:]))
    except ValueError as err:
      sys.exit(f'error: trial {storage.basename(workdir)}: {err}')
  if _PRINT_COMMANDS.value:
    for _, cmd in runs:
      print(sweep.shell_command(cmd))
    return
  if _STATUS.value:
    print('\n'.join(sweep.status_lines([w for w, _ in runs])))
    return
  if _CHECK.value:
    how = 'submit as a SLURM job array' if _SLURM.value else 'run'
    print(f'[sweep] check: {len(runs)} trials valid, would {how} in '
          f'{sweep_dir}: {", ".join(storage.basename(w) for w, _ in runs)}')
    return
  if _SLURM.value:
    return _submit(runs, sweep_dir, [
        sys.executable, launch, '--config', spec, '--sweep', '--status',
        '--workdir', sweep_dir, *shared])
  where = (f'; process {cluster.process_id} of {cluster.num_processes}'
           if cluster else '')
  print(f'[sweep] {len(trials)} trials in {sweep_dir}{where}', flush=True)
  try:
    states = sweep.run(launch, spec, trials, sweep_dir, shared,
                       _PARALLEL.value, _RETRY_FAILED.value, cluster,
                       _DEVICES_PER_TRIAL.value)
  except ValueError as err:
    sys.exit(f'error: {err}')
  except sweep.Stopped as stopped:
    print(f'[sweep] {stopped}', file=sys.stderr, flush=True)
    sys.exit(stopped.exit_code)
  elsewhere = [storage.basename(w) for w, s in states.items()
               if s == 'running elsewhere']
  failed = [storage.basename(w) for w, s in states.items()
            if s not in ('done', 'running elsewhere')]
  print(f'[sweep] {len(states) - len(failed) - len(elsewhere)}/{len(states)} '
        f'trials done in {sweep_dir}; report: cgjax-report {sweep_dir} (in a '
        f'checkout: python -m experiments.report {sweep_dir})')
  if elsewhere:  # e.g. the same sweep launched twice: it shares the work
    print(f'[sweep] run by another process (see above), not here: '
          f'{", ".join(elsewhere)}', flush=True)
  if failed:
    sys.exit(f'error: trials not done: {", ".join(failed)} (see their log.txt)')


def _submit(runs, sweep_dir: str, status_command: list[str]):
  """The sweep as one SLURM job array: its script written, then submitted
  (with --dry_run: printed)."""
  from cgjax import slurm  # pylint: disable=g-import-not-at-top
  from cgjax import sweep  # pylint: disable=g-import-not-at-top
  options = slurm.Options(
      nodes=_NODES.value, tasks_per_node=_TASKS_PER_NODE.value,
      gpus_per_task=_GPUS_PER_TASK.value,
      max_running=_PARALLEL.value if _PARALLEL.present else 0,
      signal_seconds=_SIGNAL_SECONDS.value, sbatch=tuple(_SBATCH.value))
  try:
    text = slurm.script(runs, sweep_dir, options)
    if _DRY_RUN.value:
      print(text, end='')
      return
    path = slurm.write(text, sweep_dir)
    job = slurm.submit(path)
  except ValueError as err:
    sys.exit(f'error: {err}')
  print(f'[sweep] {len(runs)} trials submitted as SLURM job array {job} '
        f'({path}); their states: {sweep.shell_command(status_command)}')


def _thread_failed(args):
  """A library's background thread that fails (a writer on a full disk)
  says so in one line, not a traceback; the run reports the error itself
  where it matters."""
  if not issubclass(args.exc_type, (SystemExit, OSError)):  # a storage
    # error is the run's own to report (it names the file)
    print(f'[cgjax] warning: background thread {args.thread.name} failed: '
          f'{_one_line(args.exc_value)}', file=sys.stderr, flush=True)


def _parse_flags(argv):
  """absl's parse, with a bad flag or override value as one line (absl's
  own: 'FATAL Flags parsing error: ...' and a help hint)."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as err:
    sys.exit(f'error: {err}')


def run():
  """The command line: `python launch.py`, `python -m cgjax.launch` or the
  installed `cgjax-train`."""
  if any(a in ('--help', '-h', '-?', '--helpshort') for a in sys.argv[1:]):
    # The flags with their help, also as the installed cgjax-train (whose
    # absl --help lists only the entry script's own flags: none).
    print(__doc__.replace('python launch.py', _program()))
    sys.exit(0)
  from cgjax import stops  # pylint: disable=g-import-not-at-top
  stops.install()  # before JAX is imported: Ctrl-C is honoured at once
  threading.excepthook = _thread_failed
  try:
    sys.argv = with_config_path(sys.argv)
    from cgjax import plugins  # pylint: disable=g-import-not-at-top
    plugins.search(os.getcwd(), 'the current directory')
    if _config_spec(sys.argv):
      plugins.search(os.path.dirname(_config_spec(sys.argv).partition(':')[0]),
                     "the config file's folder")
    check_overrides(sys.argv)
    from cgjax import supervisor  # pylint: disable=g-import-not-at-top
    if supervisor.needed(sys.argv):  # one line when JAX ends it for a peer
      supervisor.run(sys.argv)
    app.run(main, flags_parser=_parse_flags)
  except KeyboardInterrupt:  # Ctrl-C in a multi-process run (cgjax.stops):
    # one line, no traceback; whatever was checkpointed resumes with the
    # same command.
    print('\n[cgjax] interrupted; relaunch the same command to resume',
          file=sys.stderr, flush=True)
    sys.exit(130)


if __name__ == '__main__':
  run()
