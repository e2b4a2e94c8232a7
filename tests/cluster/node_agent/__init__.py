"""Development node agent: plays the kubelet for simulated nodes of the local test cluster.

Run ``python -m tests.cluster.node_agent --help`` from the repository root. It is test
tooling: container images map to local commands through ``tests/cluster/images.yaml``.
"""
