"""Small apps the CLI tests run with ``--app-dir tests/cli/apps`` (imported as ``ledger``...)."""
