"""The sbatch script of --slurm, read as text and by bash (the real SLURM
runs it in tests/slurm_test.py)."""
import subprocess

import pytest

from cgjax import slurm

RUNS = [(f'/s/noise.rate={r}', ['/py', '/l/launch.py', '--config', '/c.py',
                                '--workdir', f'/s/noise.rate={r}',
                                f'--config.noise.rate={r}'])
        for r in (0.0, 0.5, 1.0)]


def test_one_array_task_per_trial_with_the_requested_resources():
  text = slurm.script(RUNS, '/s', slurm.Options(
      nodes=2, tasks_per_node=4, gpus_per_task=1, max_running=2,
      signal_seconds=300, sbatch=('--time=4:00:00', '--partition=gpu')))
  header = [l[len('#SBATCH '):] for l in text.splitlines()
            if l.startswith('#SBATCH ')]
  assert header == ['--job-name=cgjax-s', '--array=0-2%2', '--nodes=2',
                    '--ntasks-per-node=4', '--gpus-per-task=1', '--requeue',
                    '--signal=TERM@300', '--open-mode=append',
                    '--output=/s/slurm/%A_%a.out', '--time=4:00:00',
                    '--partition=gpu']
  for i, (workdir, argv) in enumerate(RUNS):
    assert f'  {i}) WORKDIR={workdir}\n     RUN=({" ".join(argv)}) ;;' in text
  assert subprocess.run(['bash', '-n'], input=text, text=True).returncode == 0


def test_a_task_runs_its_own_trial_and_skips_a_done_one(tmp_path):
  """The script's case and skip, run by bash with task 1's variables and
  `srun` replaced by echo: task 1 runs trial 1 (noise 0.5); once its
  status.json says done, nothing."""
  workdir = tmp_path / 'noise.rate=0.5'
  runs = [(str(tmp_path / w), ['echo', 'trial', w]) for w in
          ('noise.rate=0.0', 'noise.rate=0.5')]
  text = slurm.script(runs, str(tmp_path), slurm.Options()).replace(
      'srun --kill-on-bad-exit=1 ', '')
  env = {'SLURM_ARRAY_TASK_ID': '1', 'PATH': '/usr/bin:/bin'}
  ran = subprocess.run(['bash'], input=text, text=True, env=env,
                       capture_output=True)
  assert ran.stdout == 'trial noise.rate=0.5\n', ran.stderr
  workdir.mkdir()
  (workdir / 'status.json').write_text('{\n  "state": "done",\n  "step": 4\n}')
  ran = subprocess.run(['bash'], input=text, text=True, env=env,
                       capture_output=True)
  assert ran.stdout == f'[slurm] {workdir} is done\n'


@pytest.mark.parametrize('options,message', [
    (slurm.Options(nodes=0), '--nodes must be >= 1, got 0'),
    (slurm.Options(gpus_per_task=-1), '--gpus_per_task must be >= 0'),
    (slurm.Options(max_running=-2), '--parallel must be >= 0, got -2'),
    (slurm.Options(sbatch=('time=10',)), "sbatch options such as "
     "--time=4:00:00, got 'time=10'"),
])
def test_bad_options_are_refused_naming_them(options, message):
  with pytest.raises(ValueError, match=message):
    slurm.script(RUNS, '/s', options)


def test_a_sweep_dir_in_a_bucket_is_refused_naming_it():
  with pytest.raises(ValueError, match="filesystem the nodes share, got "
                     "'gs://bucket/sweep'"):
    slurm.script(RUNS, 'gs://bucket/sweep', slurm.Options())
