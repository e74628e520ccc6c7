"""``python -m aiosqsq``: the ``aiosqsq`` command."""

import os
import sys

from aiosqsq.cli import main

if __name__ == "__main__":
    # ``python -m`` puts the current directory first on the import path; the ``aiosqsq``
    # script does not. Drop it, so that only --app-dir decides where the app is imported
    # from, whichever way aiosqsq was started.
    if not sys.flags.safe_path and sys.path and sys.path[0] == os.getcwd():
        del sys.path[0]
    main()
