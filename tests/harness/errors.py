"""Errors the test-host harness raises: each says what is missing and what to do."""


class HarnessError(RuntimeError):
    """A test host could not be provided; the message says why and what to do."""


class EngineUnavailable(HarnessError):
    """No usable container engine (Docker or Podman's Docker-compatible API)."""


class ImageBuildFailed(HarnessError):
    """The base image or the test-host image could not be built."""


class HostBootFailed(HarnessError):
    """A test host started but never became ready (systemd running, sshd answering)."""
