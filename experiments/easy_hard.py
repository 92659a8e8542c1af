"""The Weak-and-Strong easy/hard study: do examples learned early (easy)
generalize better among themselves than the others (hard) do?

    python -m experiments.easy_hard --config configs/ws_imagenet.py \
        --workdir runs/easy_hard [--config.data.data_dir=DATA_DIR ...]

The recipe comes from the config module's `get_easy_hard(arg)`:
  1. WORKDIR/select: a short SGD run (`select_arg`, e.g. 2 epochs) whose
     learning-times measurement writes, at its `learned_at` step, the keys
     classified correctly (easy) and the others (hard);
  2. WORKDIR/easy and WORKDIR/hard: the config trained on one key list only
     (`data.include_keys`), a deterministic `heldout_size` of it held out as
     the test split and `train_size` of the rest trained on; the original
     validation set is evaluated too (eval/validation_*).
Every stage is an ordinary launch.py run (resumed if interrupted, skipped if
done); other --config.* flags go to every stage. The table (easy_hard.md):
subset | examples | train acc | held-out test acc (same kind) | validation acc.
"""
import argparse
import glob
import os
import subprocess
import sys

from cgjax import sweep
from cgjax import workdir as workdir_lib
from . import runs as runs_lib

SUBSETS = {'easy': 'learned', 'hard': 'not_learned'}


def _launch(spec, workdir, flags):
  if workdir_lib.read_status(workdir) == 'done':
    print(f'[easy_hard] {workdir}: done already', flush=True)
    return
  print(f'[easy_hard] running {workdir}', flush=True)
  subprocess.run([sys.executable, 'launch.py', '--config', spec, '--workdir',
                  workdir, *flags], check=True)


def key_list(select_dir, kind) -> str:
  """The selection run's `learning_{kind}_at_N.json` (one N expected)."""
  found = [f for f in glob.glob(os.path.join(select_dir, f'*_{kind}_at_*.json'))
           if kind == 'not_learned' or '_not_learned_at_' not in f]
  if len(found) != 1:
    raise SystemExit(f'error: expected one {kind} key list in {select_dir} '
                     f'(measurements.learning.learned_at), found {found}')
  return found[0]


def table(workdirs) -> str:
  lines = ['| subset | train examples | held-out test examples | train acc | '
           'held-out test acc | validation acc |', '|---' * 6 + '|']
  for name, workdir in workdirs.items():
    run, = runs_lib.find([workdir])
    values = [run.final(k) for k in ('eval/train_acc', 'eval/test_acc',
                                     'eval/validation_acc')]
    sizes = [run.final(f'data/{k}_examples') for k in ('train', 'test')]
    lines.append(f'| {name} | {sizes[0]:.0f} | {sizes[1]:.0f} | '
                 + ' | '.join(f'{v:.4f}' for v in values) + ' |')
  return '\n'.join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', required=True, help='config[:arg]')
  parser.add_argument('--workdir', required=True)
  args, flags = parser.parse_known_args()
  import launch  # pylint: disable=g-import-not-at-top
  module = launch.config_module(args.config)
  if not hasattr(module, 'get_easy_hard'):
    raise SystemExit(f'error: {args.config} defines no get_easy_hard(arg)')
  recipe = module.get_easy_hard(args.config.partition(':')[2] or None)
  select = os.path.join(args.workdir, 'select')
  _launch(sweep.trial_spec(args.config, {'arg': recipe['select_arg']}),
          select, flags)
  workdirs = {}
  for name, kind in SUBSETS.items():
    workdirs[name] = os.path.join(args.workdir, name)
    _launch(args.config, workdirs[name], [
        *flags, f'--config.data.include_keys={key_list(select, kind)}',
        f'--config.data.heldout_size={recipe["heldout_size"]}',
        f'--config.data.train_size={recipe["train_size"]}',
        *[f'--config.{k}={v}' for k, v in recipe['overrides'].items()]])
  runs_lib.write_text(args.workdir, 'easy_hard.md', table(workdirs))


if __name__ == '__main__':
  main()
