#!/usr/bin/env bash
# `make release`: the artifacts a deployment pulls, under dist/:
#
#   dist/bcsp_guard.wasm          the release module (wasm-opt -Oz when wasm-opt is on PATH)
#   dist/bcsp_guard.wasm.sha256   its SHA-256, `sha256sum -c` format (Envoy remote code source
#                                 sha256, Istio WasmPlugin with an https:// url)
#   dist/oci/                     an OCI image layout of the module in the Wasm image "compat"
#                                 variant (one tar+gzip layer holding plugin.wasm), which Istio's
#                                 WasmPlugin and GCP Service Extensions pull from a registry
#   dist/bcsp_guard.oci-digest    the image manifest's SHA-256 (hex): Istio's `sha256` for an
#                                 oci:// url, and the digest to pin (…@sha256:<digest>)
#
# Built by hand (sha256sum, tar, gzip, printf): no Docker needed. The layer's tar is
# reproducible (sorted, owner 0, mtime SOURCE_DATE_EPOCH), so the same module gives the same
# digests on every machine.
#
# Environment:
#   DIST               output directory (default: dist)
#   WASM_IN            package this .wasm instead of building one (the test suite passes its own)
#   VERSION            image tag in dist/oci (default: the version in Cargo.toml)
#   WASM_OPT           wasm-opt binary, or "none" to skip it (default: wasm-opt from PATH)
#   ENVOY              if set, the result is loaded with `$ENVOY --mode validate` (top-level
#                      envoy.yaml pointed at the new module), so a broken optimisation fails here
#   SOURCE_DATE_EPOCH  timestamp inside the layer (default 0)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() { echo "release.sh: $*" >&2; exit 1; }

DIST=${DIST:-dist}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
VERSION=${VERSION:-$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n1)}
[[ "$VERSION" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "VERSION '$VERSION' is not a valid image tag"
[[ "$SOURCE_DATE_EPOCH" =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH must be a number of seconds"
for tool in sha256sum tar gzip stat; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done

# Features of the module as rustc emits it for wasm32-wasip1 (its defaults). wasm-opt must be
# told, or it rejects e.g. memory.copy (bulk memory) as invalid.
WASM_OPT_FEATURES=(--enable-bulk-memory --enable-sign-ext --enable-mutable-globals
                   --enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types)

# ---- 1. the module ------------------------------------------------------------------------
if [[ -z "${WASM_IN:-}" ]]; then
    cargo build --release --target wasm32-wasip1 --lib
    WASM_IN=target/wasm32-wasip1/release/bcsp_guard.wasm
fi
[[ -f "$WASM_IN" ]] || die "$WASM_IN does not exist"

mkdir -p "$DIST"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

size() { stat -c %s "$1"; }
built_bytes=$(size "$WASM_IN")
cp "$WASM_IN" "$work/bcsp_guard.wasm"
opt=${WASM_OPT:-wasm-opt}
if [[ "$opt" != none ]] && command -v "$opt" >/dev/null 2>&1; then
    "$opt" -Oz "${WASM_OPT_FEATURES[@]}" "$WASM_IN" -o "$work/opt.wasm" \
        || die "$opt failed; if rustc now emits another Wasm feature, add it to WASM_OPT_FEATURES"
    opt_bytes=$(size "$work/opt.wasm")
    echo "cargo build --release:  $built_bytes bytes"
    echo "wasm-opt -Oz:           $opt_bytes bytes"
    if (( opt_bytes < built_bytes )); then
        mv "$work/opt.wasm" "$work/bcsp_guard.wasm"
    else
        echo "(wasm-opt gained nothing; keeping the cargo build)"
    fi
else
    echo "cargo build --release:  $built_bytes bytes (wasm-opt not found: not optimised further)"
fi
install -m 0644 "$work/bcsp_guard.wasm" "$DIST/bcsp_guard.wasm"
(cd "$DIST" && sha256sum bcsp_guard.wasm > bcsp_guard.wasm.sha256)

if [[ -n "${ENVOY:-}" ]]; then
    sed "s#filename: target/wasm32-wasip1/release/bcsp_guard.wasm#filename: $(realpath "$DIST/bcsp_guard.wasm")#" \
        envoy.yaml > "$work/envoy.yaml"
    grep -q "filename: $(realpath "$DIST/bcsp_guard.wasm")" "$work/envoy.yaml" \
        || die "could not point envoy.yaml at $DIST/bcsp_guard.wasm"
    "$ENVOY" --mode validate -c "$work/envoy.yaml" -l error >"$work/validate.log" 2>&1 \
        || { cat "$work/validate.log" >&2; die "Envoy refuses $DIST/bcsp_guard.wasm"; }
    echo "envoy --mode validate:  OK with $DIST/bcsp_guard.wasm"
fi

# ---- 2. OCI image layout (Wasm image spec, compat variant) --------------------------------
oci="$DIST/oci"
rm -rf "$oci"
mkdir -p "$oci/blobs/sha256" "$work/layer"

sha() { sha256sum "$1" | cut -d' ' -f1; }
# Store a blob under its digest; prints the digest.
put_blob() {
    local d
    d=$(sha "$1")
    cp "$1" "$oci/blobs/sha256/$d"
    echo "$d"
}

cp "$DIST/bcsp_guard.wasm" "$work/layer/plugin.wasm"
chmod 0644 "$work/layer/plugin.wasm"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
    --format=ustar -C "$work/layer" -cf "$work/layer.tar" plugin.wasm
diff_id=$(sha "$work/layer.tar")
gzip -n -9 -c "$work/layer.tar" > "$work/layer.tar.gz"
layer_digest=$(put_blob "$work/layer.tar.gz")
layer_size=$(size "$work/layer.tar.gz")

# The image config. linux/amd64 is what `docker build` of `FROM scratch` + `COPY plugin.wasm`
# records; registries and pullers that look at the platform accept it.
printf '%s' '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["sha256:'"$diff_id"'"]}}' \
    > "$work/config.json"
config_digest=$(put_blob "$work/config.json")
config_size=$(size "$work/config.json")

printf '%s' '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'\
'"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:'"$config_digest"'","size":'"$config_size"'},'\
'"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:'"$layer_digest"'","size":'"$layer_size"'}],'\
'"annotations":{"module.wasm.image/variant":"compat","org.opencontainers.image.title":"bcsp-guard","org.opencontainers.image.version":"'"$VERSION"'"}}' \
    > "$work/manifest.json"
manifest_digest=$(put_blob "$work/manifest.json")
manifest_size=$(size "$work/manifest.json")

printf '%s' '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",'\
'"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:'"$manifest_digest"'","size":'"$manifest_size"','\
'"annotations":{"org.opencontainers.image.ref.name":"'"$VERSION"'"}}]}' > "$oci/index.json"
printf '%s' '{"imageLayoutVersion":"1.0.0"}' > "$oci/oci-layout"
echo "$manifest_digest" > "$DIST/bcsp_guard.oci-digest"

# ---- 3. what to do with it ----------------------------------------------------------------
cat <<SUMMARY

$DIST/bcsp_guard.wasm         $(size "$DIST/bcsp_guard.wasm") bytes
$DIST/bcsp_guard.wasm.sha256  $(cut -d' ' -f1 "$DIST/bcsp_guard.wasm.sha256")
$DIST/oci                     OCI image layout, tag $VERSION (Wasm image "compat" variant)
$DIST/bcsp_guard.oci-digest   $manifest_digest  (Istio WasmPlugin sha256 for oci://)

Push the image (any one of these keeps the manifest, so the digest stays the same):
  oras cp --from-oci-layout $DIST/oci:$VERSION REGISTRY/REPO/bcsp-guard-wasm:$VERSION
  crane push $DIST/oci REGISTRY/REPO/bcsp-guard-wasm:$VERSION
  skopeo copy oci:$DIST/oci:$VERSION docker://REGISTRY/REPO/bcsp-guard-wasm:$VERSION
SUMMARY
