"""The composition root, between the engines and the front ends: ``root`` owns the config and
builds the store, the providers (on first use) and one refresher per account; ``access`` hands
out a valid token as `token`, `exec`, `git-credential` and the Python API do; ``serve`` starts
the daemon with what the root built, and rebuilds it on SIGHUP.

The command line (``cli``) and the Python API (``api``) depend on it; the engines below never
call back up into it, they are handed what they need. May import ``core``, ``config``,
``providers``, ``storage``, ``daemon`` and ``service``; never ``cli``.
"""
