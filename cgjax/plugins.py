"""Plug-ins chosen by name from the config: a module of one of cgjax's
packages (`mlp`, `coherence`), or a module path of the user's own
(`my_lab.wide_mlp`). The launcher puts the config file's folder and the
current directory on the import path first, so a lab's modules beside its
configs are found without PYTHONPATH (also by the installed cgjax-train,
whose sys.path holds neither).

A config read from a workdir (`cgjax.runs`, the report, `--evaluate`) is
data, not code to run (a shared gs:// workdir could name any module): its
plug-ins are loaded only from cgjax itself and the searched folders.
"""
import importlib
import importlib.machinery
import os
import sys

# (folder, why it is searched), as the error of a module not found lists them.
SEARCHED: list[tuple[str, str]] = []


def search(folder: str, why: str):
  """Puts folder first on the import path (once)."""
  folder = os.path.abspath(folder)
  if folder not in [f for f, _ in SEARCHED]:
    SEARCHED.append((folder, why))
  if folder in sys.path:
    sys.path.remove(folder)
  sys.path.insert(0, folder)


def trusted(module_path: str) -> bool:
  """Whether a module path is cgjax's or lies in a searched folder (found
  without importing anything)."""
  top = module_path.split('.')[0]
  return top == 'cgjax' or any(
      importlib.machinery.PathFinder.find_spec(top, [folder]) is not None
      for folder, _ in SEARCHED)


def check_trusted(names: dict[str, str], source: str):
  """Refuses, naming `source` (a config.json), a plug-in name (by field) that
  is a module path outside cgjax and the searched folders."""
  for field, name in names.items():
    if '.' in name and not trusted(name):
      where = ', '.join(folder for folder, _ in SEARCHED) or 'none'
      raise ValueError(
          f'{source}: {field} {name!r} is not cgjax\'s, nor in a plug-in '
          f'folder (searched: {where}); a workdir is data, not code to run: '
          'put the module in the current directory to use it')


def load(name: str, package: str, kind: str, builtin: list[str]):
  """The module for `name`: `package.name` for a bare name, else the module
  path itself. ValueError naming where it looked where there is none (an
  import error inside the module is raised as it is)."""
  if not name:
    raise ValueError(f'a {kind} needs a name: one of {", ".join(builtin)}, or '
                     'a module path (my_lab.x)')
  path = name if '.' in name else f'{package}.{name}'
  try:
    return importlib.import_module(path)
  except ModuleNotFoundError as err:
    if not (err.name and path.startswith(err.name)):
      raise  # the plug-in itself imports something missing
  where = ', '.join(f'{folder} ({why})' for folder, why in SEARCHED)
  raise ValueError(
      f'unknown {kind} {name!r}: not one of cgjax\'s ({", ".join(builtin)}), '
      f'and no module {path} ' + (f'in {where} or on sys.path' if where else
                                  'on sys.path') +
      '; a module of your own is given by its module path (my_lab.x) and '
      'found beside the config file or in the current directory') from None
