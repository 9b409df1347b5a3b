#!/usr/bin/env bash
# Make a small private CA and a server certificate for a hub, for TLS on every gRPC link.
# Node client certificates for mTLS: bash ops/tls/make-node-cert.sh OUTDIR NODE (uses OUTDIR/ca.key).
# Usage: bash ops/tls/make-dev-ca.sh OUTDIR HOSTNAME [IP]
#   OUTDIR/ca.crt      give to clients: SPIME_CA=OUTDIR/ca.crt (or --ca)
#   OUTDIR/hub.crt/key spime-hub serve --tls-cert OUTDIR/hub.crt --tls-key OUTDIR/hub.key
set -euo pipefail
out=${1:?usage: make-dev-ca.sh OUTDIR HOSTNAME [IP]}
host=${2:?usage: make-dev-ca.sh OUTDIR HOSTNAME [IP]}
ip=${3:-127.0.0.1}
mkdir -p "$out"
cd "$out"
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 -subj "/CN=Spimeforge dev CA" \
  -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$host" -keyout hub.key -out hub.csr 2>/dev/null
printf 'subjectAltName=DNS:%s,IP:%s\nextendedKeyUsage=serverAuth\n' "$host" "$ip" > hub.ext
openssl x509 -req -in hub.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
  -extfile hub.ext -out hub.crt 2>/dev/null
rm -f hub.csr hub.ext ca.srl
chmod 644 ca.crt hub.crt
echo "CA: $out/ca.crt  server: $out/hub.crt $out/hub.key" >&2
