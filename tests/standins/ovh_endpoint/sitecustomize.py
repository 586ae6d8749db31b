"""Points a deploy run by a test at the OVH API stand-in; only for tests, never shipped.

A host test puts this folder (and the repository) on ``PYTHONPATH`` with
``SOCLE_TEST_OVH_ENDPOINT`` set to the stand-in's URL (tests/standins/ovh_api.py): in the
``pyinfra`` process it starts, the API region ``ovh-eu`` then reaches the stand-in, and
socle waits for the stand-in's tasks without the real API's ten seconds between looks.
Without the variable it does nothing.
"""

import os

_URL = os.environ.get("SOCLE_TEST_OVH_ENDPOINT")
if _URL:
    import ovh.client

    import socle.vps_snapshot

    ovh.client.ENDPOINTS["ovh-eu"] = _URL
    socle.vps_snapshot.POLL_SECONDS = 0.05
