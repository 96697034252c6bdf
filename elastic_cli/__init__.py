"""The `elastic` command line."""
