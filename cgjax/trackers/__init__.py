"""Experiment trackers beside TensorBoard, chosen by `config.trackers`.

metrics.jsonl and TensorBoard are always written. A tracker named in
`config.trackers` (a module here, 'wandb', or a module path of your own,
`my_lab.mlflow_tracker`, found as models and measurements are: cgjax.plugins)
receives the same scalars at the same steps, from process 0 only. A tracker
module defines one class:

    class Tracker:
      def __init__(self, workdir: str, config: dict): ...
          # once per launch, before the first scalar; `config` is the flat
          # resolved config ({'optim.lr': 0.1, ...}), for the tracker's
          # hyperparameters; a relaunch of the same workdir should continue
          # the same tracked run (e.g. an id derived from `workdir`)
      def write(self, step: int, scalars: dict[str, float]): ...
      def flush(self): ...   # at each checkpoint
      def close(self): ...   # at the run's end, however it ends

`cgjax/trackers/wandb.py` is the example to copy for MLflow or another.
Rows a relaunch drops (past the last checkpoint of a crashed run) are
written again by the resumed run at the same steps; a tracker that cannot
overwrite a step (W&B) keeps its first value.
"""
from cgjax import plugins

BUILTIN = ['wandb']


def module(name: str):
  """The tracker's module: cgjax.trackers.NAME, or the module path NAME."""
  return plugins.load(name, 'cgjax.trackers', 'tracker', BUILTIN)


def check_names(names):
  """Raises ValueError naming a tracker that does not exist."""
  for name in names:
    module(name)


def open_all(names, workdir: str, config: dict) -> list:
  return [module(name).Tracker(workdir, config) for name in names]
