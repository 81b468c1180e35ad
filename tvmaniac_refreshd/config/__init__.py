"""TOML -> frozen settings: ``settings`` (the dataclasses and the loader, every problem at once)
and ``values`` (one parser per kind of value). May import ``core`` only."""
