"""Entry script of the frozen desktop app: the same ``main`` as ``python -m lithotse_desktop.gui``."""

import sys

from lithotse_desktop.gui.app import main

if __name__ == "__main__":
    sys.exit(main())
