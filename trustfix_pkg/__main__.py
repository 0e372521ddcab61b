"""``python -m trustfix``: the command line."""

from trustfix.cli import main

main()
