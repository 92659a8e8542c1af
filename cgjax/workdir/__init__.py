"""Everything a run keeps in its workdir, and nothing lost on a crash.

    lock.json       the live owner (host, pid, start, token, heartbeat); taken
                    before anything else is written, released at exit (lock.py)
    config.json     the full config; a relaunch with a different one is
                    refused (identity.py)
    status.json     {"state": running|done|failed|diverged|preempted|
                    interrupted, "step", "message", "checkpoint", "time",
                    "heartbeat"}; "checkpoint" is the run's commit point, its
                    last finished checkpoint (records.py)
    metrics.jsonl   one JSON object per line: {"step": int, "name": str,
                    "value": float}; rows past the commit point are
                    provisional and dropped by the next launch (records.py)
    metrics.parts/  object stores only (no append there): the rows since
                    metrics.jsonl was last written whole, one object per
                    flush; readers merge them, a resume folds them in
    events.out.tfevents.*
                    TensorBoard: the same scalars, the config as text and as
                    hparams (`tensorboard --logdir runs` lists each run by its
                    workdir name)
    checkpoints/    orbax checkpoints: train state, data iterator state and
                    the measurements' own state (checkpoints.py)
    ...             files of the measurements (probe_ids.json, learning.npz)

Every file goes through cgjax.storage, so a workdir can be local or on
gs://. Only process 0 writes the plain files; orbax coordinates its own
writes. Every error about a workdir file names the file. The run that owns
these files is cgjax.session.RunSession; cgjax.runs reads them.
"""
# The one namespace of the workdir layer: its modules split it by concern.
from cgjax.workdir.checkpoints import Checkpointer
from cgjax.workdir.checkpoints import CheckpointFailed
from cgjax.workdir.checkpoints import saved_steps
from cgjax.workdir.identity import config_changes
from cgjax.workdir.identity import fingerprint
from cgjax.workdir.identity import check_config
from cgjax.workdir.identity import config_dict
from cgjax.workdir.identity import read_config
from cgjax.workdir.identity import write_config
from cgjax.workdir.lock import check_owner
from cgjax.workdir.lock import is_writer
from cgjax.workdir.lock import Lock
from cgjax.workdir.lock import Locked
from cgjax.workdir.lock import LockLost
from cgjax.workdir.lock import owner_of
from cgjax.workdir.records import check_records
from cgjax.workdir.records import committed_step
from cgjax.workdir.records import has_metrics
from cgjax.workdir.records import latest_values
from cgjax.workdir.records import load_json
from cgjax.workdir.records import METRIC_PARTS
from cgjax.workdir.records import MetricWriter
from cgjax.workdir.records import read_metrics
from cgjax.workdir.records import read_status
from cgjax.workdir.records import read_status_file
from cgjax.workdir.records import RecordsAtRisk
from cgjax.workdir.lock import Refused
from cgjax.workdir.records import remove_litter
from cgjax.workdir.records import set_aside_records
from cgjax.workdir.records import set_status
from cgjax.workdir.records import write_file
from cgjax.workdir.records import write_json
