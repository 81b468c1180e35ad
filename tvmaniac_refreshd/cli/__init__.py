"""The command line: the parser and exit codes (``parser``), what every verb's parser shares
(``grammar``, ``options``), one module per verb (``verbs``), what a verb is handed (``app``: the
composition root with the command line's options and stdout), and the text of ``status``,
``completion`` and the man page.

May import ``core``, ``config``, ``providers``, ``storage``, ``daemon``, ``service`` and
``runtime``; nothing imports it but ``entry``.
"""
