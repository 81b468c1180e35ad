"""The core: the error tree and its exit codes, durations, token documents and their form, the
refresh policy, the application's fixed names, and logging with redaction.

May import nothing of the other layers. Pure (``errors``, ``durations``, ``policy``,
``tokens``, ``token_form``, ``token_json``, ``locations``): no files, processes, clock or
environment; ``now`` is always passed in. Where files live is storage/layout.py's. With side
effects, each here because every layer needs it: ``logs`` and ``journal`` (every layer logs
through them), ``shipped`` (finds the files that ship with the program), ``launchd_log``
(trims the launchd job's log files), ``hardening`` (turns core dumps off) and ``times``
(moments for people in the local zone, for programs in ISO 8601; reads the clock).
"""
