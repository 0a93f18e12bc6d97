#!/usr/bin/env bash
# A throwaway CA and a server certificate for 127.0.0.1 / localhost, for the TLS tests (Redis's TLS
# port, ngircd's TLS port): writes ca.pem, server.pem and server.key into the directory given.
# The certificate is a client's too: Redis Cluster nodes present it to each other on the TLS bus,
# which always asks for one.
set -euo pipefail
dir=${1:?usage: test-certs.sh <dir>}
mkdir -p "$dir"
cd "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=Dropline test CA" \
  -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n' > ext.cnf
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf \
  -out server.pem 2>/dev/null
chmod 0644 server.key
