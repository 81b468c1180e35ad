"""TOML -> frozen settings: ``settings`` (the dataclasses and the loader, every problem at once),
``variants`` (one typed settings class per provider: its keys, defaults, endpoint and
fingerprint), ``values`` (one parser per kind of value) and ``starter`` (`config init`).
May import ``core`` only."""
