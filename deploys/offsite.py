"""The off-site repository on the node: restic, its password and destination, root only.

    pyinfra inventories/prod.py deploys/offsite.py

The host's ``offsite`` table (socle/offsite_settings.py) chooses the destination: restic's
REST protocol, SSH to a host that forces ``rclone serve restic --append-only``, or
S3-compatible storage. It is checked, and its secrets decrypted from SOPS on the
operator's machine, before anything on the node changes. The files it writes and their
format, which the agent's off-site job reads, are in docs/offsite.md. A host without
``offsite`` gets nothing.
"""

from pyinfra import host
from pyinfra.api import HiddenValue
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, files

from operations import offsite, secret_files, text_files
from socle import offsite_files
from socle.offsite_settings import SftpDestination, offsite_settings, read_offsite_secrets

data = host.data.dict()
settings = offsite_settings(data, host.name)

if settings is not None:
    secrets = read_offsite_secrets(settings)
    environment = HiddenValue(offsite_files.environment_file(settings, secrets))
    sftp = settings.destination if isinstance(settings.destination, SftpDestination) else None

    installed = host.get_fact(DebPackages)
    packages = ["restic", "openssh-client"] if sftp else ["restic"]
    apt.packages(
        name="restic, from the distribution",
        packages=packages,
        update=any(name not in installed for name in packages),
    )

    for path, mode in (
        ("/etc/socle", "700"),
        (offsite_files.OFFSITE_DIR, "700"),
        (offsite_files.CACHE_DIR, "700"),
        ("/usr/local/lib/socle", "755"),
    ):
        files.directory(name=f"{path}, mode {mode}", path=path, user="root", group="root",
                        mode=mode)  # fmt: skip

    secret_files.secret_file(
        name="Off-site repository password",
        path=offsite_files.PASSWORD_FILE,
        secret=HiddenValue(secrets["offsite_restic_password"]),
    )
    secret_files.secret_file(
        name="Off-site destination and credentials",
        path=offsite_files.ENV_FILE,
        secret=environment,
    )
    if sftp:
        secret_files.secret_file(
            name="Off-site SSH key",
            path=offsite_files.SSH_KEY_FILE,
            secret=HiddenValue(secrets["offsite_ssh_private_key"].rstrip("\n") + "\n"),
        )
        text_files.file(
            name="Off-site host key, pinned",
            path=offsite_files.KNOWN_HOSTS_FILE,
            content=offsite_files.known_hosts(sftp),
            mode="600",
        )
        text_files.file(
            name="Off-site SSH settings",
            path=offsite_files.SSH_CONFIG_FILE,
            content=offsite_files.ssh_config(sftp),
            mode="600",
        )
        text_files.file(
            name="Off-site SSH program for restic",
            path=offsite_files.SSH_PROGRAM,
            content=offsite_files.SSH_PROGRAM_TEXT,
            mode="755",
        )
    else:
        for path in (
            offsite_files.SSH_KEY_FILE,
            offsite_files.KNOWN_HOSTS_FILE,
            offsite_files.SSH_CONFIG_FILE,
            offsite_files.SSH_PROGRAM,
        ):
            files.file(name=f"{path} removed (not an SSH destination)", path=path,
                       present=False)  # fmt: skip

    text_files.file(
        name="socle-offsite-restic: restic on the off-site repository",
        path=offsite_files.RESTIC_WRAPPER,
        content=offsite_files.RESTIC_WRAPPER_TEXT,
        mode="755",
    )
    offsite.repository(name="Off-site repository ready (initialised when absent)")
