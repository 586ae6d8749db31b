"""Upload one large secret with socle's secret_file, or (as a control) pyinfra's files.put.

Not a phase of socle: the secret-upload host test runs it. Host data: ``upload_source``
(a file on the operator's machine), ``upload_dest`` (the path on the node) and
``upload_with`` (``secret_file`` or ``files.put``).
"""

from pathlib import Path

from pyinfra import host
from pyinfra.api import HiddenValue
from pyinfra.operations import files

from operations import secret_files

source = Path(host.data.upload_source)
if host.data.upload_with == "files.put":
    files.put(name="A file uploaded by pyinfra's files.put", src=str(source),
              dest=host.data.upload_dest, mode="600")  # fmt: skip
else:
    secret_files.secret_file(
        name="A secret uploaded by socle's secret_file",
        path=host.data.upload_dest,
        secret=HiddenValue(source.read_text()),
    )
