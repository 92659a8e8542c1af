"""A real SLURM cluster of one node on 127.0.0.1 for tests: Debian's munged,
slurmctld and slurmd, with a temporary munge key, slurm.conf and state dirs.

    with slurm_cluster.serve() as env:   # env: SLURM_CONF for sbatch & co
      subprocess.run(['sbatch', ...], env={**os.environ, **env})

The node is this host with its CPUs; process tracking by /proc
(proctrack/linuxproc) and no task plugin, so no cgroups are needed; no
accounting database (sacct has none to read: squeue and scontrol report,
and each job's end is a line of ROOT/jobcomp.txt).
Stopped by pid at the end, jobs and all. `missing()` names the programs a
machine lacks (the tests are skipped there, except under CGJAX_CI).
"""
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from tests.conftest import free_port

PROGRAMS = ('munged', 'slurmctld', 'slurmd', 'sbatch', 'srun', 'squeue', 'sinfo',
            'scontrol', 'scancel')


def missing() -> list[str]:
  return [p for p in PROGRAMS if not shutil.which(p) and not os.path.exists(
      f'/usr/sbin/{p}')]


def _program(name: str) -> str:
  return shutil.which(name) or f'/usr/sbin/{name}'


def _conf(root: str, host: str, cpus: int) -> str:
  ctld, slurmd = free_port(), free_port()
  return f"""ClusterName=cgjaxtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld}
SlurmdPort={slurmd}
AuthType=auth/munge
AuthInfo=socket={root}/munge.socket
CredType=cred/munge
SlurmUser={os.environ.get('USER', 'root')}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobCompType=jobcomp/filetxt
JobCompLoc={root}/jobcomp.txt
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
KillWait=30
MinJobAge=600
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def run(args: list[str], env: dict, **kw) -> subprocess.CompletedProcess:
  """A SLURM command against the test cluster."""
  return subprocess.run(args, env={**os.environ, **env}, capture_output=True,
                        text=True, timeout=60, **kw)


@contextlib.contextmanager
def serve(cpus: int = 2):
  root = tempfile.mkdtemp(prefix='cgjax-slurm-')
  for sub in ('state', 'spool'):
    os.makedirs(os.path.join(root, sub))
  with open(os.path.join(root, 'munge.key'), 'wb') as f:
    f.write(os.urandom(1024))
  os.chmod(os.path.join(root, 'munge.key'), 0o600)
  host = socket.gethostname().split('.')[0]
  conf = os.path.join(root, 'slurm.conf')
  with open(conf, 'w') as f:
    f.write(_conf(root, host, cpus))
  env = {'SLURM_CONF': conf}
  pids = []
  try:
    subprocess.run([_program('munged'), '--force',
                    f'--socket={root}/munge.socket',
                    f'--key-file={root}/munge.key',
                    f'--log-file={root}/munged.log',
                    f'--pid-file={root}/munged.pid',
                    f'--seed-file={root}/munged.seed'], check=True,
                   capture_output=True, timeout=30)
    pids.append(f'{root}/munged.pid')
    for daemon in ('slurmctld', 'slurmd'):
      subprocess.run([_program(daemon), '-f', conf], check=True,
                     capture_output=True, timeout=30,
                     env={**os.environ, **env})
      pids.append(f'{root}/{daemon}.pid')
    deadline = time.time() + 60
    while True:  # the node registered and idle: jobs start at once
      out = run(['sinfo', '-h', '-o', '%t'], env).stdout.strip()
      if out == 'idle':
        break
      if time.time() > deadline:
        raise RuntimeError(f'the test SLURM node is {out!r}, not idle; see '
                           f'{root}/slurmctld.log, slurmd.log')
      time.sleep(0.5)
    yield env
  finally:
    run(['scancel', '--full', '--user', str(os.getuid())], env)
    for pid_file in reversed(pids):
      try:
        with open(pid_file) as f:
          os.kill(int(f.read().strip()), signal.SIGTERM)
      except (OSError, ValueError):
        pass
    time.sleep(1)
    shutil.rmtree(root, ignore_errors=True)
