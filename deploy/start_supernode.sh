#!/usr/bin/env bash
# Partner host: start this partner's SuperNode next to its data.
# usage: start_supernode.sh SUPERLINK_HOST:PORT CA_CERT PARTNER_DIR [LOCAL_PORT]
# Only model updates (DP-SGD), counts and k-binned histograms leave PARTNER_DIR's host; the node's
# consent store and privacy accountant stay in PARTNER_DIR/.loyalfed.
set -euo pipefail
superlink="${1:?usage: start_supernode.sh SUPERLINK_HOST:PORT CA_CERT PARTNER_DIR [LOCAL_PORT]}"
ca="${2:?CA certificate (ca.crt) missing}"
partner_dir="$(cd "${3:?partner folder missing}" && pwd)"
exec flower-supernode --superlink "$superlink" --root-certificates "$ca" --port "${4:-9094}" \
  --node-config "partner-dir='$partner_dir'"
