#!/usr/bin/env bash
# Coordinator host: start the SuperLink with TLS.  usage: start_superlink.sh CERT_DIR [PORT]
# CERT_DIR holds ca.crt, server.pem, server.key from deploy/generate_certificates.py --host <this host>.
set -euo pipefail
certs="${1:?usage: start_superlink.sh CERT_DIR [PORT]}"
port="${2:-9400}"
exec flower-superlink \
  --ssl-ca-certfile "$certs/ca.crt" --ssl-certfile "$certs/server.pem" --ssl-keyfile "$certs/server.key" \
  --host 0.0.0.0 --port "$port" --database "${LOYALFED_STATE:-$HOME/.loyalfed}/superlink.db" \
  --disable-runtime-dependency-installation
