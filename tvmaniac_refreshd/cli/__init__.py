"""The command line: the parser and exit codes (``parser``), each verb's typed options
(``options``), the verbs (``commands``), the wiring of settings to collaborators (``app``), and
the text of ``status`` and ``config check``.

May import every other layer; nothing imports it but ``entry``.
"""
