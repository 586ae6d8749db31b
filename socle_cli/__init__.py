"""The operator's command line, `socle`: commands run on the operator's machine.

It sits on top of everything else: it may read the inventory, call the project's own
facts and operations over SSH, and use the deploy helpers in ``socle``; nothing imports it.
"""
