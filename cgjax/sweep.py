"""Sweeps: every trial of a config's `get_sweep(arg)`, one workdir each.

A config module may define `get_sweep(arg) -> list[dict]`, one dict of config
overrides per trial (e.g. `{'noise.rate': 0.25}`); the key 'arg' adds to the
config's own arg instead, for settings that change several fields together
(e.g. `{'arg': 'optimizer=m3'}`: M3's batch, momentum and lr). Each trial
is an ordinary `launch.py` run in `SWEEP_DIR/<trial name>`, started as its
own process (so a sweep is just those commands: `--print-commands` hands them
to a cluster scheduler instead). Relaunching a sweep skips the trials whose status.json
says 'done' and resumes the others from their checkpoints.
"""
import json
import os
import shlex
import subprocess
import sys
import time

from cgjax import progress
from cgjax import workdir as workdir_lib


ARG = 'arg'


def trial_name(overrides: dict) -> str:
  """{'noise.rate': 0.25, 'seed': 1} -> 'noise.rate=0.25,seed=1'
  ({'arg': 'optimizer=m3'} -> 'optimizer=m3')."""
  if not overrides:
    return 'default'
  return ','.join(str(v) if k == ARG else f'{k}={v}'
                  for k, v in overrides.items()).replace('/', '_')


def trial_spec(config_spec: str, overrides: dict) -> str:
  """The config spec with the trial's 'arg' appended to its arg."""
  if ARG not in overrides:
    return config_spec
  return config_spec + (',' if ':' in config_spec else ':') + overrides[ARG]


def _check(trials) -> list[dict]:
  if not isinstance(trials, (list, tuple)) or not trials:
    raise ValueError(f'get_sweep() must return a non-empty list of override '
                     f'dicts, got {trials!r}')
  for t in trials:
    if not isinstance(t, dict):
      raise ValueError(f'get_sweep() trial {t!r} is not a dict of overrides')
  names = [trial_name(t) for t in trials]
  if len(set(names)) != len(names):
    raise ValueError(f'get_sweep() repeats a trial: {names}')
  return list(trials)


def load_trials(module, arg) -> list[dict]:
  if not hasattr(module, 'get_sweep'):
    raise ValueError(f'{module.__file__} defines no get_sweep(arg); add one '
                     'returning a list of override dicts to use --sweep')
  return _check(module.get_sweep(arg or None))


def _format(value) -> str:
  if isinstance(value, (tuple, list)):
    return '(' + ','.join(map(str, value)) + (',)' if len(value) == 1 else ')')
  return str(value)


def commands(launch: str, config_spec: str, trials: list[dict],
             sweep_dir: str, extra_flags: list[str]
             ) -> list[tuple[str, list[str]]]:
  """(workdir, argv) of each trial: `launch` with the trial's overrides."""
  out = []
  for t in trials:
    workdir = os.path.join(sweep_dir, trial_name(t))
    argv = [sys.executable, launch, '--config', trial_spec(config_spec, t),
            '--workdir', workdir, *extra_flags,
            *[f'--config.{k}={_format(v)}' for k, v in t.items() if k != ARG]]
    out.append((workdir, argv))
  return out


# Trial states a relaunched sweep leaves alone (unless retry_failed for the
# last two): finished, or ended by an error a rerun would repeat.
FINAL = ('done', 'failed', 'diverged')


PROGRESS_SECONDS = 60  # between the sweep's lines on its running trials


def _last_progress(log_path: str) -> str:
  """The last progress line ('step a/b (x%) | ... | ETA ...') of a trial's
  log, without its '[cgjax] ' prefix; '' if none yet."""
  try:
    with open(log_path, 'rb') as f:
      f.seek(max(os.path.getsize(log_path) - 65536, 0))
      lines = f.read().decode(errors='replace').splitlines()
  except OSError:
    return ''
  found = [l for l in lines if ' | ETA ' in l]
  return found[-1].removeprefix('[cgjax] ') if found else ''


def run(launch: str, config_spec: str, trials: list[dict], sweep_dir: str,
        extra_flags: list[str], parallel: int = 1,
        retry_failed: bool = False) -> dict[str, str]:
  """Runs the unfinished trials, `parallel` at a time; returns their states.

  Skipped: done trials; failed and diverged ones unless `retry_failed`; a
  trial whose workdir lock has a live owner (started by another sweep or by
  hand: never run twice). Each trial's output goes to WORKDIR/log.txt;
  stdout gets each running trial's latest progress line every
  PROGRESS_SECONDS, a line per finished trial with the sweep's ETA (the
  remaining trials at the rate trials have finished), and a summary.
  """
  if parallel < 1:
    raise ValueError(f'--parallel must be >= 1, got {parallel}')
  os.makedirs(sweep_dir, exist_ok=True)
  todo = commands(launch, config_spec, trials, sweep_dir, extra_flags)
  with open(os.path.join(sweep_dir, 'sweep.json'), 'w') as f:
    json.dump({'config': config_spec, 'flags': extra_flags, 'trials': [
        {'name': trial_name(t), 'overrides': t, 'workdir': w}
        for t, (w, _) in zip(trials, todo)]}, f, indent=1)
  states, pending, running = {}, [], {}
  for workdir, argv in todo:
    state = workdir_lib.read_status(workdir)
    owner = workdir_lib.owner_of(workdir, stale_after=float('inf'))
    if state in FINAL and (state == 'done' or not retry_failed):
      states[workdir] = state
      print(f'[sweep] {os.path.basename(workdir)}: {state} already, skipped'
            + ('' if state == 'done' else ' (--retry_failed reruns it)'),
            flush=True)
    elif owner is not None:
      states[workdir] = 'running elsewhere'
      print(f'[sweep] {os.path.basename(workdir)}: running (pid '
            f'{owner["pid"]} on {owner["host"]}), skipped', flush=True)
    else:
      pending.append((workdir, argv))
  total, finished = len(pending), 0
  t0 = last_report = time.time()
  while pending or running:
    while pending and len(running) < parallel:
      workdir, argv = pending.pop(0)
      os.makedirs(workdir, exist_ok=True)
      log = open(os.path.join(workdir, 'log.txt'), 'a')
      verb = 'resuming' if workdir_lib.read_status(workdir) != 'new' else 'starting'
      print(f'[sweep] {verb} {os.path.basename(workdir)}', flush=True)
      running[workdir] = (subprocess.Popen(argv, stdout=log,
                                           stderr=subprocess.STDOUT), log)
    time.sleep(0.5)
    if time.time() - last_report >= PROGRESS_SECONDS:
      for workdir in running:  # each running trial's latest progress line
        line = _last_progress(os.path.join(workdir, 'log.txt'))
        if line:
          print(f'[sweep] {os.path.basename(workdir)}: {line}', flush=True)
      last_report = time.time()
    for workdir, (proc, log) in list(running.items()):
      if proc.poll() is None:
        continue
      log.close()
      del running[workdir]
      finished += 1
      states[workdir] = workdir_lib.read_status(workdir)
      elapsed = time.time() - t0
      # Trials finish at this rate, `parallel` at a time.
      eta = elapsed / finished * (total - finished)
      print(f'[sweep] {finished}/{total} {os.path.basename(workdir)}: '
            f'{states[workdir]} (exit {proc.returncode}; '
            f'{progress.duration(elapsed)} so far, sweep ETA '
            f'{progress.duration(eta)}; log '
            f'{os.path.join(workdir, "log.txt")})', flush=True)
  for workdir, state in states.items():
    print(f'[sweep]   {os.path.basename(workdir)}: {state}', flush=True)
  return states


def shell_command(argv: list[str]) -> str:
  """argv as one shell line, with 'python' for the interpreter path."""
  return shlex.join(['python', *argv[1:]])

