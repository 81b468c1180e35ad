"""The refresh engine and the long-running daemon: the refresher (lock, re-read, spend once, store
first), the decisions per account, the scheduler (the only APScheduler user), the runner,
sd_notify, the instance lock and alerts.

May import ``core``, ``config``, ``providers`` and ``storage``; never ``service``, ``runtime``
or ``cli``: the composition root (``runtime``) hands the runner its config and refreshers.
"""
