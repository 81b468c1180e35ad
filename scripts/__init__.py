"""Build scripts run from a checkout (`make man`); not part of the installed package."""
