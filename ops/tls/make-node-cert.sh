#!/usr/bin/env bash
# Issue a client certificate for one node agent, signed by the CA of make-dev-ca.sh, so the
# node authenticates to a hub started with --tls-client-ca DIR/ca.crt (mTLS).
# Usage: bash ops/tls/make-node-cert.sh DIR NODE [DAYS]
#   DIR      the directory make-dev-ca.sh wrote (ca.crt and ca.key are read from it)
#   NODE     the node's name: the certificate's CN, and the files DIR/NODE.crt, DIR/NODE.key
#   DAYS     validity (default 825)
# Give the node DIR/ca.crt (to trust the hub), DIR/NODE.crt and DIR/NODE.key; keep ca.key offline.
set -euo pipefail
usage="usage: make-node-cert.sh DIR NODE [DAYS]"
dir=${1:?$usage}
node=${2:?$usage}
days=${3:-825}
if ! [[ $node =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]]; then
  echo "make-node-cert.sh: node name '$node': use 1-64 letters, digits, '.', '_' or '-'" >&2
  exit 2
fi
for f in ca.crt ca.key; do
  if [ ! -f "$dir/$f" ]; then
    echo "make-node-cert.sh: $dir/$f is missing: run 'bash ops/tls/make-dev-ca.sh $dir HOSTNAME' first" >&2
    exit 1
  fi
done
cd "$dir"
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$node" \
  -keyout "$node.key" -out "$work/node.csr" 2>/dev/null
printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\nsubjectAltName=DNS:%s\n' \
  "$node" > "$work/node.ext"
openssl x509 -req -in "$work/node.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -CAserial "$work/ca.srl" \
  -days "$days" -extfile "$work/node.ext" -out "$node.crt" 2>/dev/null
chmod 644 "$node.crt"
echo "node $node: $dir/$node.crt $dir/$node.key (CA $dir/ca.crt)" >&2
