"""The Weak-and-Strong easy/hard study: do examples learned early (easy)
generalize better among themselves than the others (hard) do?

    python -m experiments.easy_hard --config configs/ws_imagenet.py \
        --workdir runs/easy_hard [--config.data.data_dir=DATA_DIR ...]

The recipe comes from the config module's `get_easy_hard(arg)`:
  1. WORKDIR/select: a short SGD run (`select_arg`, e.g. 2 epochs) whose
     learning-times measurement classifies every training example at its
     `learned_at` step and writes the keys classified correctly (easy) and
     the others (hard);
  2. WORKDIR/easy and WORKDIR/hard: the config trained on one key list only
     (`data.include_keys`), a deterministic `heldout_size` of it held out as
     the test split and at most `train_size` of the rest trained on (all of
     it where fewer: the authors' 500K of "around 600K"); the arg gets
     `train_examples` = that number, so epochs, the lr schedule and the
     measurement cadence count on the subset; the original validation set
     is evaluated too (eval/validation_*).
Every stage is an ordinary launch.py run (resumed if interrupted, skipped if
done); other --config.* flags go to every stage. The table (easy_hard.md):
subset | examples | train acc | held-out test acc (same kind) | validation acc.
"""
import argparse
import json
import subprocess
import sys

from cgjax import storage
from cgjax import sweep
from cgjax import workdir as workdir_lib
from . import claims
from . import runs as runs_lib

SUBSETS = {'easy': 'learned', 'hard': 'not_learned'}


def _launch(spec, workdir, flags):
  if workdir_lib.read_status(workdir) == 'done':
    print(f'[easy_hard] {workdir}: done already', flush=True)
    return
  print(f'[easy_hard] running {workdir}', flush=True)
  subprocess.run([sys.executable, claims.LAUNCH, '--config', spec,
                  '--workdir', workdir, *flags], check=True)


def key_list(select_dir, kind) -> str:
  """The selection run's `learning_{kind}_at_N.json` (one N expected)."""
  found = [storage.join(select_dir, f) for f in storage.listdir(select_dir)
           if f.endswith('.json') and f'_{kind}_at_' in f
           and (kind == 'not_learned' or '_not_learned_at_' not in f)]
  if len(found) != 1:
    raise SystemExit(f'error: expected one {kind} key list in {select_dir} '
                     f'(measurements.learning.learned_at), found {found}')
  return found[0]


def trained_on(keys_file, heldout: int, most: int) -> int:
  """Examples a subset run trains on: what its hold-out leaves, at most
  `most` (0: no limit)."""
  n = len(json.loads(storage.read_text(keys_file))['keys'])
  if n <= heldout:
    raise SystemExit(f'error: {keys_file} holds {n} keys, not more than the '
                     f'{heldout} to hold out')
  return min(n - heldout, most) if most else n - heldout


def table(workdirs) -> str:
  lines = ['| subset | train examples | held-out test examples | train acc | '
           'held-out test acc | validation acc |', '|---' * 6 + '|']
  for name, workdir in workdirs.items():
    run, = runs_lib.find([workdir])
    values = [run.final(run.key('evaluation', k))
              for k in ('train_acc', 'test_acc', 'validation_acc')]
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
  select = storage.join(args.workdir, 'select')
  _launch(sweep.trial_spec(args.config, {'arg': recipe['select_arg']}),
          select, flags)
  workdirs = {}
  for name, kind in SUBSETS.items():
    keys = key_list(select, kind)
    n = trained_on(keys, recipe['heldout_size'], recipe['train_size'])
    arg = ','.join(filter(None, [recipe.get('subset_arg', ''),
                                 f'train_examples={n}']))
    workdirs[name] = storage.join(args.workdir, name)
    print(f'[easy_hard] {name}: {n} examples trained on, '
          f'{recipe["heldout_size"]} held out', flush=True)
    _launch(sweep.trial_spec(args.config, {'arg': arg}), workdirs[name], [
        *flags, f'--config.data.include_keys={keys}',
        f'--config.data.heldout_size={recipe["heldout_size"]}',
        f'--config.data.train_size={n}',
        *[f'--config.{k}={v}' for k, v in recipe['overrides'].items()]])
  runs_lib.write_text(args.workdir, 'easy_hard.md', table(workdirs))


if __name__ == '__main__':
  main()
