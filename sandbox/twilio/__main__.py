"""``python -m sandbox.twilio``: see ``sandbox.twilio.cli``."""

import sys

from sandbox.twilio.cli import main

if __name__ == "__main__":
    sys.exit(main())
