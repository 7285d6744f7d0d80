"""``python -m sandbox`` is the same as ``python -m sandbox.twilio``."""

import sys

from sandbox.twilio import main

if __name__ == "__main__":
    sys.exit(main())
