import sys

from apparel.cli import main

sys.exit(main())
