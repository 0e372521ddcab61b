"""``python -m trustfix.trainer [OPTIONS]``: the trainer daemon, same options as ``trustfix train``."""

import sys

from trustfix.cli import app

if __name__ == "__main__":
    app(["train", *sys.argv[1:]], prog_name="python -m trustfix.trainer")
