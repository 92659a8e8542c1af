"""Config files whose get_config returns no ConfigDict (tests/lifecycle_test.py)."""


def get_config(arg=None):
  return {'dict': {'num_steps': 1}, 'none': None}[arg]
