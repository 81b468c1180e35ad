"""The verbs, one module each: its options dataclass, its ``arguments``, its ``run`` and the
``VERB`` that ties them together. ``VERBS`` is the registry, in the order ``--help`` lists them;
adding a verb is one module and one line here.
"""

from __future__ import annotations

from typing import Any

from tvmaniac_refreshd.cli.grammar import Group, Verb
from tvmaniac_refreshd.cli.verbs import (
    completion,
    config_accounts,
    config_check,
    config_example,
    config_init,
    config_set_secret,
    exec,  # the verb's name; the builtin is never needed here
    git_credential,
    job_list,
    job_run,
    login,
    logout,
    refresh,
    run,
    service_install,
    service_status,
    service_uninstall,
    status,
    store_migrate,
    token,
)

# The verbs whose actions are verbs of their own: "service install" is in the group "service".
GROUPS = {
    group.name: group
    for group in (
        Group(
            "service",
            "Install, remove or inspect the OS service (systemd user units, launchd agent).",
            "daemon mode: a long-running `run` (systemd Type=notify, or a launchd KeepAlive "
            "agent).\ntimer mode: `refresh --all` every hour (systemd timer with "
            "Persistent=true, or launchd\nStartCalendarInterval), for machines where nothing "
            "should stay resident.\nThen control it with systemctl --user / launchctl; logs: "
            "journalctl --user -u 'tvmaniac-refreshd*'.",
        ),
        Group(
            "job",
            "Run or list the background jobs: commands run with a fresh token ([jobs.NAME]).",
        ),
        Group(
            "config",
            "Create or check the configuration, print the example or the account names, or "
            "store a client secret.",
        ),
        Group(
            "store",
            "Move the tokens between the keyring and the file store.",
            "migrate --to file|keyring moves every account's tokens and client secret from the\n"
            "other store, each under the account's lock, verified before the source is deleted.\n"
            "Then set [store] backend in the config to match. migrate --encrypt encrypts the\n"
            'file store\'s plain files in place (encrypt = "systemd-creds"). Where both hold an\n'
            "account's tokens, nothing moves; --force keeps the newer pair.",
        ),
    )
}

VERBS: tuple[Verb[Any], ...] = (
    login.VERB,
    logout.VERB,
    status.VERB,
    token.VERB,
    run.VERB,
    refresh.VERB,
    service_install.VERB,
    service_uninstall.VERB,
    service_status.VERB,
    config_check.VERB,
    config_set_secret.VERB,
    config_init.VERB,
    config_example.VERB,
    config_accounts.VERB,
    store_migrate.VERB,
    exec.VERB,
    job_list.VERB,
    job_run.VERB,
    git_credential.VERB,
    completion.VERB,
)
