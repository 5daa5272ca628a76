#!/bin/sh
# Development PKI by hand, with the openssl CLI: the same files `pdnd-gateway keys` writes.
#
#   certs/dev-ca.sh [DIR] [COMMON_NAME]      (defaults: certs/dev localhost)
#
# Idempotent like the Rust generator: existing files are kept, missing ones are created, a
# missing chain is re-issued by the existing CA. FOR DEVELOPMENT ONLY: production uses the
# comune's real key and certificate (see certs/README.md).
set -eu

DIR=${1:-certs/dev}
CN=${2:-localhost}
ORG="pdnd-gateway development"
DAYS=3650

mkdir -p "$DIR"
cd "$DIR"
umask 077   # private keys readable by the owner only

ext=$(mktemp)
trap 'rm -f "$ext" leaf.csr' EXIT

if { [ -f ca.pem ] && [ ! -f ca-key.pem ]; } || { [ ! -f ca.pem ] && [ -f ca-key.pem ]; }; then
    echo "ca.pem and ca-key.pem must both exist or both be absent" >&2
    exit 1
fi

# 1. The dev CA: P-256 key, self-signed, may sign end-entity certificates only.
if [ ! -f ca-key.pem ]; then
    for stale in signing-rsa-chain.pem signing-ec-chain.pem; do
        if [ -f "$stale" ]; then
            echo "$stale was issued by a CA that is no longer here; remove it to re-issue" >&2
            exit 1
        fi
    done
    openssl genpkey -quiet -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca-key.pem
    umask 022
    openssl req -x509 -new -key ca-key.pem -sha256 -days "$DAYS" \
        -subj "/CN=$CN dev CA/O=$ORG" \
        -addext "basicConstraints=critical,CA:true,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" \
        -out ca.pem
    umask 077
fi

# 2. A signing identity: key + chain (leaf certificate, then the CA).
issue() { # $1 key file, $2 chain file, $3.. genpkey options
    key=$1 chain=$2
    shift 2
    if [ ! -f "$key" ]; then
        if [ -f "$chain" ]; then
            echo "$chain exists without $key" >&2
            exit 1
        fi
        openssl genpkey -quiet "$@" -out "$key"
    fi
    if [ ! -f "$chain" ]; then
        printf '%s\n' \
            "basicConstraints=critical,CA:false" \
            "keyUsage=critical,digitalSignature" \
            "subjectKeyIdentifier=hash" \
            "authorityKeyIdentifier=keyid" > "$ext"
        openssl req -new -key "$key" -subj "/CN=$CN/O=$ORG" -out leaf.csr
        umask 022
        openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca-key.pem -sha256 -days "$DAYS" \
            -set_serial "0x$(openssl rand -hex 15)" -extfile "$ext" -out "$chain.tmp"
        cat ca.pem >> "$chain.tmp"
        mv "$chain.tmp" "$chain"
        umask 077
    fi
}

# RS256 / PS256: RSA-2048 (PDND registers RSA keys of at least 2048 bits only).
issue signing-rsa-key.pem signing-rsa-chain.pem -algorithm RSA -pkeyopt rsa_keygen_bits:2048
# ES256: P-256.
issue signing-ec-key.pem signing-ec-chain.pem -algorithm EC -pkeyopt ec_paramgen_curve:P-256

# 3. Check: both chains verify against the dev CA.
openssl verify -CAfile ca.pem signing-rsa-chain.pem signing-ec-chain.pem
