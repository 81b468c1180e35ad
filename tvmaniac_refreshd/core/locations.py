"""The application's fixed names: its own (directories, keyring service, log identifier), and
the environment variable naming the account (read by the CLI and the quick `token` path).

Every path built from it is storage/layout.py's.
"""

from __future__ import annotations

APP = "tvmaniac-refreshd"
# The one place every message and page names for creating and editing a Trakt API app.
TRAKT_APPS = "https://app.trakt.tv/settings/apps"
ACCOUNT_ENV = "TVMANIAC_REFRESHD_ACCOUNT"  # the account when --account is not given
# Timer mode's transient retry timer of job NAME is JOB_RETRY_PREFIX + NAME + ".timer": outside
# the "<APP>-job-" names, so that no job's name can make it another job's unit.
JOB_RETRY_PREFIX = f"{APP}-retry-job-"
