#!/usr/bin/env bash
# Create the kind cluster "aiml" with a fake GPU node. Needs Docker and kind on PATH.
# The trainer then runs on CPU inside the GPU-labelled node: the capacity is fake.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
gpus="${AIML_KIND_FAKE_GPUS:-2}"

command -v docker >/dev/null || { echo "error: docker is not installed; kind needs a Docker engine" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "error: no Docker engine answers; start Docker first" >&2; exit 1; }
command -v kind >/dev/null || { echo "error: kind is not on PATH (go install sigs.k8s.io/kind@v0.33.0)" >&2; exit 1; }

kind get clusters | grep -qx aiml || kind create cluster --config "$here/kind-config.yaml"

gpu_node="$(kubectl --context kind-aiml get nodes -l nvidia.com/gpu.present=true -o jsonpath='{.items[0].metadata.name}')"
patch="[{\"op\":\"add\",\"path\":\"/status/capacity/nvidia.com~1gpu\",\"value\":\"$gpus\"}]"
kubectl --context kind-aiml patch node "$gpu_node" --subresource=status --type=json -p "$patch"
echo "kind cluster aiml ready; node $gpu_node advertises nvidia.com/gpu: $gpus (fake capacity)"
echo "kubectl context: kind-aiml"
