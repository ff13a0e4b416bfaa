"""Launch the ctvl viewer: ``python app/app.py [--host 127.0.0.1] [--port 7860]`` is ``ctvl app``."""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
    from ctvl.cli import main

    sys.argv[0] = "ctvl"  # usage lines read "ctvl app", as for the console script

    sys.exit(main(["app", *sys.argv[1:]]))
