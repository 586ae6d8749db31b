"""Operation tests, generated from the fixture folders beside this file.

Each folder is named ``<module>.<operation>`` and holds one JSON file per scenario:
the arguments, the fact values the host reports, and the exact commands expected
(or the no-op message, or the error raised).
"""

from pathlib import Path

from pyinfra_testing.operations import make_operation_tests

_HERE = Path(__file__).parent

for _folder in sorted(p for p in _HERE.iterdir() if p.is_dir() and "." in p.name):
    _cls = make_operation_tests("operations", _folder.name, _folder)
    globals()[f"TestOperation_{_folder.name.replace('.', '_')}"] = _cls

del _folder, _cls
