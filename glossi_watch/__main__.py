import sys

from glossi_watch.cli import main

sys.exit(main())
