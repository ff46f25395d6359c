import sys

from zosnode.cli import main

sys.exit(main())
