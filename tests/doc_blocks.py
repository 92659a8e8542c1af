"""The code blocks of README.md and docs/, as the tests read them.

A block is an indented (4+ spaces, after a blank line) or fenced one. Each
carries a marker, an HTML comment (invisible on the page) on the last
non-blank line before it:

    <!-- docs: run -->      executed by tests/runs_test.py in a folder with
                            small runs under runs/ (runs/noise_sweep, ...);
                            a launch.py / cgjax-train line that would train
                            runs with --check (config and every trial
                            validated, nothing written: training itself is
                            what the other tests run), `pip install` lines
                            are the fresh-venv test's, sbatch / srun /
                            gcloud lines are left out
    <!-- docs: long -->     as run, but a `python -m MODULE` line (minutes of
                            work) runs as `MODULE --help`;
                            benchmarks/doc_commands.py runs these in full
    <!-- docs: output -->   what a command prints, a file tree
    <!-- docs: fragment --> lines of a larger file (compiled, not run)
    <!-- docs: not-cpu REASON -->  needs what CPU CI lacks (ImageNet, a pod,
                            SLURM, a GPU); REASON says what
    <!-- docs: slurm-script -->  the sbatch script that the launch.py --slurm
                            line of the block before it writes (paths as
                            /home/me/cgjax): tests/slurm_test.py compares
                            and submits it

Fenced python blocks whose first line is `# my_lab/NAME.py` are files of
the example lab (written out and run by tests/plugins_test.py) and need no
marker.
"""
import dataclasses
import glob
import os
import re

from tests.conftest import ROOT

KINDS = ('run', 'long', 'output', 'fragment', 'not-cpu', 'lab',
         'slurm-script')
# README.md and every page of docs/ but the generated config reference.
FILES = ('README.md',) + tuple(sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, 'docs',
                                                             '*.md'))
    if not p.endswith('config.md')))
MARKER = re.compile(r'<!-- docs: ([\w-]+)\s*(.*?)\s*-->')
LAB_FILE = re.compile(r'# (my_lab/\w+\.py)$')


@dataclasses.dataclass
class Block:
  path: str       # README.md, docs/howto.md
  line: int       # 1-based, of the block's first line
  text: str       # dedented, without fences
  lang: str       # 'python', 'bash' or '' (indented blocks)
  kind: str | None  # the marker's kind; 'lab' for a my_lab/ file
  why: str        # the marker's reason (not-cpu)

  @property
  def where(self) -> str:
    return f'{self.path}:{self.line}'

  def commands(self) -> list[str]:
    """Shell lines, continuations joined."""
    return [c for c in self.text.replace('\\\n', ' ').splitlines()
            if c.strip()]


def _marker(lines, start):
  for i in range(start - 1, -1, -1):
    if lines[i].strip():
      m = MARKER.search(lines[i])
      return (m.group(1), m.group(2)) if m else (None, '')
  return None, ''


def blocks(path: str) -> list[Block]:
  with open(os.path.join(ROOT, path)) as f:
    lines = f.read().split('\n')
  out, i = [], 0
  while i < len(lines):
    line = lines[i]
    if line.startswith('```'):
      end = next(j for j in range(i + 1, len(lines))
                 if lines[j].startswith('```'))
      text = '\n'.join(lines[i + 1:end])
      kind, why = _marker(lines, i)
      first = text.split('\n', 1)[0]
      if LAB_FILE.match(first):
        kind = 'lab'
      out.append(Block(path, i + 2, text, line[3:].strip(), kind, why))
      i = end + 1
      continue
    indented = re.match(r'( {4,})\S', line)
    if indented and (i == 0 or not lines[i - 1].strip()) and not re.match(
        r'\s*([-*] |\d+\. |\|)', lines[i - 1] if i else ''):
      pad = len(indented.group(1))
      end = i
      while end < len(lines) and (lines[end].startswith(' ' * pad)
                                  or not lines[end].strip()):
        end += 1
      while not lines[end - 1].strip():
        end -= 1
      text = '\n'.join(l[pad:] for l in lines[i:end])
      kind, why = _marker(lines, i)
      # An indented continuation of a list item is prose, not code.
      prev = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()),
                  '')
      if not (prev.lstrip().startswith(('- ', '* ')) and pad == 4
              and not kind and not text.startswith(('python', 'pip', 'cgjax',
                                                    '['))):
        out.append(Block(path, i + 1, text, '', kind, why))
      i = end
      continue
    i += 1
  return out


def all_blocks() -> list[Block]:
  return [b for path in FILES for b in blocks(path)]


def blocks_before(block: Block) -> list[Block]:
  """The blocks of block's file above it, in order."""
  return [b for b in blocks(block.path) if b.line < block.line]


def docs_folder(folder: str, lab_only: bool = False) -> str:
  """Makes `folder` one the docs' commands run in: the example lab written
  out and (unless lab_only) the checkout's top level linked in."""
  for name in () if lab_only else ('launch.py', 'configs', 'experiments',
                                    'benchmarks'):
    if not os.path.lexists(os.path.join(folder, name)):
      os.symlink(os.path.join(ROOT, name), os.path.join(folder, name))
  for name, source in lab_files().items():
    os.makedirs(os.path.join(folder, os.path.dirname(name)), exist_ok=True)
    with open(os.path.join(folder, name), 'w') as f:
      f.write(source)
  return folder


def lab_files() -> dict[str, str]:
  """{'my_lab/NAME.py': source} of every my_lab/ block."""
  return {LAB_FILE.match(b.text.split('\n', 1)[0]).group(1): b.text
          for b in all_blocks() if b.kind == 'lab'}


SCHEDULERS = ('sbatch', 'srun', 'gcloud')
LAUNCH = re.compile(r'(^|\s)(python \S*launch\.py|cgjax-train)\s')


def suite_command(command: str, kind: str) -> str | None:
  """A shell line as the suite runs it (see the module doc); None where it
  is left out."""
  command = re.sub(r'\s+#[^\'"]*$', '', command).strip()
  if command.startswith(SCHEDULERS):
    return None
  parts = []
  for part in re.split(r'(;|&&| do )', command):
    if part.strip().startswith('pip install'):
      continue
    if LAUNCH.search(part + ' ') and '--print-commands' not in part:
      part = part.rstrip() + ' --check'
    elif kind == 'long':
      part = re.sub(r'(python -m [\w.]+)(\s.*)?$', r'\1 --help', part)
    parts.append(part)
  joined = ''.join(parts).strip()
  joined = re.sub(r'^(&&|;)\s*', '', joined)
  return joined or None
