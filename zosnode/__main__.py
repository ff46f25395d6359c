import sys

from zosnode.entry import main

sys.exit(main())
