"""Command line of the development node agent (``python -m tests.cluster.node_agent``).

A test and development tool, not a kubelet: it registers simulated nodes with a real API
server and runs each bound Pod's containers as local processes, mapped from images through
an image table. SIGTERM or SIGINT ends every Pod process it started, then the agent.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from tests.cluster.node_agent import jsonlog
from tests.cluster.node_agent.agent import AgentStartError, NodeAgent
from tests.cluster.node_agent.image_table import load_image_table
from tests.cluster.node_agent.kube import Kube
from tests.cluster.node_agent.nodes import parse_node_spec

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_NODES = ["gpu-node-1:gpu=2", "cpu-node-1"]
log = logging.getLogger("node_agent")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.cluster.node_agent",
        description="Development node agent: simulated Kubernetes nodes that run Pods as local processes.",
    )
    parser.add_argument("--kubeconfig", required=True, help="kubeconfig of the agent's identity (needs node, pod and volume rights)")
    parser.add_argument("--state-dir", required=True, type=Path, help="directory for Pod volumes, logs and claim directories")
    parser.add_argument("--image-table", type=Path, default=REPO_ROOT / "tests" / "cluster" / "images.yaml",
                        help="YAML table mapping container images to local commands")
    parser.add_argument("--serving-cert", required=True, help="TLS certificate (PEM) of the log endpoints")
    parser.add_argument("--serving-key", required=True, help="TLS private key (PEM) of the log endpoints")
    parser.add_argument("--client-ca", help="CA bundle (PEM); when set, log endpoint clients must present a certificate it signed")
    parser.add_argument("--node", action="append", dest="nodes",
                        help="simulated node NAME[:RESOURCE=QUANTITY,...], 'gpu' meaning nvidia.com/gpu; repeatable "
                             f"(default: {' and '.join(DEFAULT_NODES)})")
    parser.add_argument("--log-port-base", type=int, default=10250,
                        help="port of the first node's log endpoint; each further node uses the next port")
    parser.add_argument("--restart-backoff", type=float, default=10.0,
                        help="seconds before the first container restart; doubles per restart up to 300")
    parser.add_argument("--log-level", default="info", help="log level: debug, info, warning or error")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    jsonlog.configure(args.log_level)

    try:
        nodes = [parse_node_spec(text, args.log_port_base + i) for i, text in enumerate(args.nodes or DEFAULT_NODES)]
        images = load_image_table(args.image_table, REPO_ROOT)
    except (ValueError, OSError) as error:
        print(f"node agent: {error}", file=sys.stderr)
        return 2

    args.state_dir.mkdir(parents=True, exist_ok=True)
    agent = NodeAgent(
        Kube(args.kubeconfig), nodes, args.state_dir.resolve(), images,
        args.serving_cert, args.serving_key, args.client_ca, args.restart_backoff,
    )

    def request_stop(signum: int, _frame: object) -> None:
        log.info("signal received", extra={"signal": signal.Signals(signum).name})
        agent.stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    log.info("node agent starting", extra={"event": "Starting", "nodes": [n.name for n in nodes],
                                           "stateDir": str(args.state_dir), "imageTable": str(args.image_table)})
    try:
        agent.run()
    except AgentStartError as error:
        log.error("node agent failed to start", extra={"event": "StartFailed", "error": str(error)})
        return 1
    log.info("node agent stopped", extra={"event": "Stopped"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
