"""`python -m devstack {up,down,run,status}`: the local stack behind the Makefile."""

from __future__ import annotations

import argparse
import sys

from . import stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=stack.__doc__)
    parser.add_argument(
        "command",
        choices=["up", "down", "run", "status"],
        help="up: start in the background; down: stop it; run: up, wait for Ctrl-C, down; "
        "status: show what runs",
    )
    args = parser.parse_args(argv)
    commands = {"up": stack.up, "down": stack.down, "run": stack.run, "status": stack.status}
    return commands[args.command]()


if __name__ == "__main__":
    sys.exit(main())
