"""Weights & Biases: the run's scalars, and its config as the W&B config.

One W&B run per workdir: its id is a hash of the workdir's absolute path,
so a relaunch (a resume after preemption) continues the same W&B run. W&B
reads its own settings from the environment: WANDB_PROJECT (default here:
'cgjax'), WANDB_ENTITY, WANDB_MODE ('offline' writes the run locally for a
later `wandb sync`, with no network: what the tests use), WANDB_API_KEY.
Its local files go to WORKDIR/wandb/ (a temporary folder for a gs://
workdir, whose records W&B uploads itself). Needs `pip install wandb`
(requirements-wandb.txt).
"""
import hashlib
import os
import tempfile

from cgjax import storage


class Tracker:

  def __init__(self, workdir: str, config: dict):
    try:
      import wandb  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise ValueError("trackers=('wandb',) needs the wandb package: pip "
                       'install -r requirements-wandb.txt') from None
    where = storage.absolute(workdir)
    # W&B writes into DIR/wandb/.
    local = (where if storage.is_local(workdir)
             else tempfile.mkdtemp(prefix='cgjax-wandb-'))
    self._run = wandb.init(
        project=os.environ.get('WANDB_PROJECT', 'cgjax'), dir=local,
        id=hashlib.sha256(where.encode()).hexdigest()[:16],
        name=storage.basename(where), resume='allow', config=config,
        settings=wandb.Settings(console='off', silent=True))

  def write(self, step: int, scalars: dict):
    self._run.log(dict(scalars), step=int(step))

  def flush(self):
    pass  # W&B streams in its own process

  def close(self):
    self._run.finish()
