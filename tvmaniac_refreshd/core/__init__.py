"""The pure core: the error tree and its exit codes, durations, token documents, the refresh
policy, where files live, and logging with redaction.

Imports nothing from the other layers. Everything but ``logs``/``journal`` is pure (``now`` is
always passed in); those two are here because every layer logs through them.
"""
