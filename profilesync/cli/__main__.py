"""``python -m profilesync.cli``."""

from profilesync.cli import main

main()
