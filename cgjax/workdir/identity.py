"""config.json and the fingerprint: which run a workdir and its checkpoints
belong to."""
import hashlib
import json

from cgjax import storage
from cgjax.workdir.records import load_json
from cgjax.workdir.records import METRIC_PARTS
from cgjax.workdir.records import Refused
from cgjax.workdir.records import write_json


def _diff(old, new, prefix=''):
  keys = sorted(set(old) | set(new))
  out = []
  for k in keys:
    a, b = old.get(k, '<absent>'), new.get(k, '<absent>')
    if isinstance(a, dict) and isinstance(b, dict):
      out += _diff(a, b, f'{prefix}{k}.')
    elif a != b:
      out.append(f'{prefix}{k}: {a!r} in the workdir, {b!r} now')
  return out



def config_dict(config) -> dict:
  """The config as config.json holds it."""
  return json.loads(config.to_json_best_effort(sort_keys=True))


def read_config(workdir: str) -> dict:
  """The run's config.json, as a dict; an error naming the file if absent
  or not a JSON object."""
  path = storage.join(workdir, 'config.json')
  if not storage.exists(path):
    raise ValueError(f'{path} does not exist: {workdir!r} is not a run '
                     'workdir')
  return load_json(path)


def config_changes(workdir: str, config) -> list[str]:
  """'field: old in the workdir, new now' for each field of `config` that
  differs from the run's config.json (dotted field names)."""
  return _diff(read_config(workdir), config_dict(config))


def check_config(workdir: str, config) -> bool:
  """Whether workdir holds this run already (its config.json equals
  `config`); Refused, having written nothing, when it holds another run's
  config, or a run's checkpoints or metrics without config.json."""
  path = storage.join(workdir, 'config.json')
  if storage.exists(path):
    old, new = load_json(path), config_dict(config)
    if old != new:
      raise Refused(
          f'workdir {workdir} holds a run with a different config; use a new '
          'workdir (or the same config to resume). Differences:\n  '
          + '\n  '.join(_diff(old, new)))
    return True
  leftovers = [n for n in ('checkpoints', 'metrics.jsonl', METRIC_PARTS)
               if storage.exists(storage.join(workdir, n))]
  if leftovers:
    raise Refused(f'{path} is missing but the workdir holds '
                  f'{" and ".join(leftovers)} of a run: restore config.json '
                  'to resume, or use a new workdir')
  return False


def write_config(workdir: str, config):
  write_json(workdir, 'config.json', config_dict(config))


def fingerprint(config) -> str:
  """The run's identity, stored in each checkpoint: a hash of every config
  field but the measurements (which `--evaluate` may change) and those that
  do not shape the train state."""
  fields = config_dict(config)
  for name in ('measurements', 'lock_stale_after', 'trackers'):
    fields.pop(name, None)
  for name in ('prefetch', 'workers', 'threads'):  # how, not what, is read
    fields.get('data', {}).pop(name, None)
  return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()
                        ).hexdigest()[:16]

