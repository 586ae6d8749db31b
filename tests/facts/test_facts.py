"""Fact parsing tests, generated from the fixture folders beside this file.

Each folder is named ``<module>.<Fact>`` and holds one JSON file per scenario: the
fact's arguments, the command it runs, the raw output and the value it must parse to.
"""

from pathlib import Path

from pyinfra_testing.facts import make_fact_tests

_HERE = Path(__file__).parent

for _folder in sorted(p for p in _HERE.iterdir() if p.is_dir() and "." in p.name):
    _cls = make_fact_tests("facts", _folder.name, _folder)
    globals()[f"TestFact_{_folder.name.replace('.', '_')}"] = _cls

del _folder, _cls
