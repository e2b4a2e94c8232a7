"""Command line of the local development cluster: up, down, status, restart-apiserver."""

from __future__ import annotations

import argparse
import json
import sys
import time

from tests.cluster.localcluster import ClusterError, LocalCluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "restart-apiserver", "purge"])
    args = parser.parse_args(argv)
    cluster = LocalCluster()

    try:
        if args.command == "up":
            started = time.monotonic()
            cluster.up()
            print(f"cluster ready in {time.monotonic() - started:.1f}s: {cluster.readyz().strip()}")
            print(f"export KUBECONFIG={cluster.kubeconfig}")
        elif args.command == "down":
            cluster.down()
            print("cluster stopped; state kept in", cluster.state_dir)
        elif args.command == "purge":
            cluster.down(purge=True)
            print("cluster stopped and", cluster.state_dir, "deleted")
        elif args.command == "restart-apiserver":
            cluster.restart_apiserver()
            print("kube-apiserver restarted")
        else:
            status = cluster.status()
            print(json.dumps(status, indent=2))
            return 0 if status.get("readyz") == "ok" else 1
    except ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
