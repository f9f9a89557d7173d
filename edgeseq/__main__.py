import sys

from edgeseq.cli import main

sys.exit(main())
