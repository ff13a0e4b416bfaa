import sys

from ctvl.cli import main

sys.exit(main())
