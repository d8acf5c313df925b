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
    parser.add_argument(
        "--replicas",
        type=int,
        default=0,
        choices=range(0, 4),
        metavar="N",
        help="up/run: replicas per master (0-3, default 0; `make up REPLICAS=1`)",
    )
    parser.add_argument(
        "--node-timeout-ms",
        type=int,
        default=5000,
        metavar="MS",
        help="up/run: cluster-node-timeout (default 5000; smaller fails over sooner)",
    )
    args = parser.parse_args(argv)
    if args.node_timeout_ms < 100:
        parser.error("--node-timeout-ms must be at least 100")
    options = stack.Options(replicas=args.replicas, node_timeout_ms=args.node_timeout_ms)
    if args.command == "up":
        return stack.up(options)
    if args.command == "run":
        return stack.run(options)
    return stack.down() if args.command == "down" else stack.status()


if __name__ == "__main__":
    sys.exit(main())
