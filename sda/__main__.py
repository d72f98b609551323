import sys

from sda.cli import main

sys.exit(main())
