#!/usr/bin/env bash
# Create the `perfspec` kind cluster with auditing on, its webhook pointed at `perfspec receive` on this host.
# Usage: deployments/kind/up.sh [PORT]   (needs docker, kind, kubectl; helm for campaigns)
# Then, in two terminals (the script prints them with the right address and token):
#   perfspec receive --host <bridge-ip> --port PORT --token ... --out perfspec-data/raw/<campaign>
#   perfspec collect --charts sample/helm-charts.json --name <campaign> --receiver-dir perfspec-data/raw/<campaign>
set -euo pipefail
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found on PATH" >&2; exit 3; }
done
here="$(cd "$(dirname "$0")" && pwd)"
port="${1:-9444}"
work="${PERFSPEC_KIND_DIR:-$HOME/.perfspec-kind}"
mkdir -p "$work/audit" "$work/logs"
# The kind nodes reach the host at the gateway of the "kind" docker network.
docker network inspect kind >/dev/null 2>&1 || docker network create kind >/dev/null
gateway="$(docker network inspect kind -f '{{range .IPAM.Config}}{{if .Gateway}}{{.Gateway}} {{end}}{{end}}' \
  | tr ' ' '\n' | grep -E '^[0-9]+\.' | head -n1)"
[ -n "$gateway" ] || { echo "error: no IPv4 gateway on the kind docker network" >&2; exit 3; }
token_file="$work/receiver-token"
[ -s "$token_file" ] || (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$token_file")
token="$(cat "$token_file")"
cp "$here/audit-policy.yaml" "$work/audit/audit-policy.yaml"
# The rendered webhook kubeconfig holds the token: owner-only (rm first: a redirect keeps an old mode).
# The kind node's API server runs as root in its container, so it can still read it.
(
  umask 077
  rm -f "$work/audit/webhook-kubeconfig.yaml"
  sed -e "s|@RECEIVER_URL@|http://$gateway:$port/audit|" -e "s|@TOKEN@|$token|" \
    "$here/webhook-kubeconfig.yaml.tmpl" > "$work/audit/webhook-kubeconfig.yaml"
)
sed -e "s|@WORK@|$work|g" "$here/kind-config.yaml.tmpl" > "$work/kind-config.yaml"
kind create cluster --config "$work/kind-config.yaml" --kubeconfig "$work/kubeconfig" --wait 120s
cat <<MSG

cluster "perfspec" is up; kubeconfig: $work/kubeconfig
1) receiver (leave running):
   PERFSPEC_RECEIVER__TOKEN=$token perfspec receive --host $gateway --port $port --out perfspec-data/raw/demo
2) campaign:
   perfspec collect --charts sample/helm-charts.json --name demo --kubeconfig $work/kubeconfig \\
     --receiver-dir perfspec-data/raw/demo --limit 3
3) perfspec clean / actions / train on perfspec-data/raw/demo
Without the receiver the API server keeps retrying then drops batches; the log backend still writes
$work/logs/audit.log (follow it with: perfspec tail-audit --log $work/logs/audit.log --out perfspec-data/raw/demo).
Tear down: kind delete cluster --name perfspec
MSG
