#!/bin/sh
# A private certificate authority and one server certificate per name, in PEM, for the TLS
# inside the compose deployment: Kafka's SASL_SSL listener and the reverse proxy in front of
# the app. Run once by compose's `certs` service (and by the tests, which start a broker with
# these files); files that exist are kept, so certificates survive restarts.
#
#   certs.sh OUT_DIR NAME=SAN[,SAN...][=UID] ...
#   certs.sh /certs 'kafka=DNS:kafka,DNS:localhost,IP:127.0.0.1=1000' 'proxy=DNS:irtmon.example'
#
# Writes OUT_DIR/ca.crt (give it to every client), OUT_DIR/private/ca.key (kept here only),
# and per NAME: NAME.crt, NAME.key and NAME.pem (the key, then the certificate: a PEM key store
# as Kafka's ssl.keystore.type=PEM reads it). A key is readable by its owner only: UID, when
# given, becomes its owner (the user the server runs as).
# To use the hospital's own CA instead, put its files at the same names before the first run.
set -eu
out=${1:?usage: certs.sh OUT_DIR NAME=SAN[,SAN...][=UID] ...}
shift
mkdir -p "$out/private"
cd "$out"
umask 077
if [ ! -f private/ca.key ]; then
  openssl req -x509 -newkey rsa:3072 -sha256 -days 3650 -nodes \
    -keyout private/ca.key -out ca.crt -subj "/CN=irtmon private CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi
chmod 644 ca.crt
for spec in "$@"; do
  name=${spec%%=*}
  rest=${spec#*=}
  san=${rest%%=*}
  owner=""
  [ "$rest" != "$san" ] && owner=${rest#*=}
  if [ ! -f "$name.pem" ]; then
    openssl req -newkey rsa:2048 -sha256 -nodes -keyout "$name.key" -out "private/$name.csr" \
      -subj "/CN=${name}" 2>/dev/null
    printf '%s\n' "subjectAltName=$san" "basicConstraints=CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" \
      > "private/$name.ext"
    openssl x509 -req -in "private/$name.csr" -CA ca.crt -CAkey private/ca.key \
      -CAcreateserial -CAserial private/ca.srl -days 825 -sha256 \
      -extfile "private/$name.ext" -out "$name.crt" 2>/dev/null
    cat "$name.key" "$name.crt" > "$name.pem"
    rm -f "private/$name.csr" "private/$name.ext"
  fi
  chmod 644 "$name.crt"
  chmod 600 "$name.key" "$name.pem"
  if [ -n "$owner" ]; then
    chown "$owner" "$name.key" "$name.pem"
  fi
done
