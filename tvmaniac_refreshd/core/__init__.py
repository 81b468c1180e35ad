"""The core: the error tree and its exit codes, durations, token documents, the refresh policy,
where files live, and logging with redaction.

May import nothing of the other layers. Pure (``errors``, ``durations``, ``policy``,
``tokens``, ``token_json``): no files, processes, clock or environment; ``now`` is always
passed in. With side effects, each here because every layer needs it: ``logs`` and ``journal``
(every layer logs through them), ``locations`` (reads the environment; points the session bus
at its usual place), ``shipped`` (finds the files that ship with the program),
``launchd_log`` (trims the launchd job's log files), ``hardening`` (turns core dumps off) and
``times`` (moments for people in the local zone, for programs in ISO 8601; reads the clock).
"""
