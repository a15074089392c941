#!/bin/sh
# make image: an OCI image of sluiced built from Debian packages only (no base image is
# pulled from a registry). mmdebstrap makes a minimal Debian rootfs (the Essential set,
# the packages holding the libraries sluiced and sluicectl link, mount for the bpffs
# init container), the built binaries and the node config go in, umoci packs it as an
# OCI layout and the layout is tarred as an oci-archive:
#   build/sluice-VERSION.oci.tar     skopeo copy oci-archive:build/sluice-VERSION.oci.tar \
#                                      docker://REGISTRY/sluice:VERSION
#   build/sluice-VERSION.digest      the manifest digest, to pin image: ...@sha256:...
# Environment: B (build dir), VERSION, SLUICE_IMAGE_SUITE (bookworm),
# SLUICE_IMAGE_MIRROR (http://deb.debian.org/debian), SLUICE_IMAGE_SECURITY
# (http://deb.debian.org/debian-security, "none" to leave it out), http_proxy.
set -eu

B=${B:-build}
VERSION=${VERSION:?VERSION is not set}
SUITE=${SLUICE_IMAGE_SUITE:-bookworm}
MIRROR=${SLUICE_IMAGE_MIRROR:-http://deb.debian.org/debian}
SECURITY=${SLUICE_IMAGE_SECURITY:-http://deb.debian.org/debian-security}
UID_SLUICE=65532 # the conventional "nonroot" id of distroless images

die() {
	echo "make image: $*" >&2
	exit 1
}

for t in mmdebstrap umoci dpkg-query curl; do
	command -v "$t" >/dev/null 2>&1 ||
		die "$t is not installed (tools/install-deps.sh image installs what the image build needs)"
done
[ "$(id -u)" -eq 0 ] || die "run as root (mmdebstrap and umoci keep file owners in the rootfs)"
for f in "$B/sluiced" "$B/sluicectl" deploy/sluice.yaml; do
	[ -f "$f" ] || die "$f is missing (make all first)"
done

# The packages come from a Debian mirror: say so at once if it cannot be reached, rather
# than after a page of apt errors. file:// mirrors (a local copy) work the same way.
if ! curl -fsS --max-time 20 -o /dev/null "$MIRROR/dists/$SUITE/InRelease" 2>"$B/.image-curl.err"; then
	die "cannot reach the Debian mirror $MIRROR (dists/$SUITE/InRelease: $(tr -d '\n' <"$B/.image-curl.err")).
The image is built from Debian packages only; point SLUICE_IMAGE_MIRROR at a reachable mirror
or a local copy (file:///path), or set http_proxy. Nothing was built."
fi
rm -f "$B/.image-curl.err"

# Runtime packages: whoever owns each shared library the two programs load.
libs=$(ldd "$B/sluiced" "$B/sluicectl" | awk '/=> \//{print $3}' | sort -u)
pkgs=""
for l in $libs; do
	p=$(dpkg-query -S "$l" 2>/dev/null || dpkg-query -S "$(readlink -f "$l")" 2>/dev/null) ||
		die "no Debian package owns $l (a library that is not from Debian cannot go in)"
	p=${p%%:*}
	case " $pkgs " in *" $p "*) ;; *) pkgs="$pkgs $p" ;; esac
done
include=$(echo "$pkgs mount ca-certificates" | tr -s ' ' '\n' | sed '/^$/d' | sort -u | paste -sd, -)

work="$B/image"
out="$B/sluice-$VERSION.oci.tar"
rm -rf "$work" "$out" "$B/sluice-$VERSION.digest"
mkdir -p "$work"

sources="deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main"
[ "$SECURITY" = none ] || sources="$sources
deb $SECURITY $SUITE-security main"

echo "make image: rootfs from $MIRROR $SUITE with: $include"
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH
# shellcheck disable=SC2016 # the hooks' $1 is mmdebstrap's, not ours
printf '%s\n' "$sources" | mmdebstrap --quiet --variant=essential --include="$include" \
	--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
	--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
	--dpkgopt='path-exclude=/usr/share/info/*' \
	--customize-hook="install -m 0755 '$B/sluiced' \"\$1/usr/sbin/sluiced\"" \
	--customize-hook="install -m 0755 '$B/sluicectl' \"\$1/usr/bin/sluicectl\"" \
	--customize-hook="install -D -m 0644 deploy/sluice.yaml \"\$1/etc/sluice/sluice.yaml\"" \
	--customize-hook="echo 'sluice:x:$UID_SLUICE:$UID_SLUICE:sluice reverse proxy:/nonexistent:/usr/sbin/nologin' >>\"\$1/etc/passwd\"" \
	--customize-hook="echo 'sluice:x:$UID_SLUICE:' >>\"\$1/etc/group\"" \
	--customize-hook="echo 'sluice:!:1::::::' >>\"\$1/etc/shadow\"" \
	--customize-hook="rm -rf \"\$1\"/var/cache/apt/* \"\$1\"/var/lib/apt/lists/* \"\$1\"/var/log/*.log" \
	--customize-hook="chroot \"\$1\" /usr/sbin/sluiced -V" \
	--customize-hook="chroot \"\$1\" /usr/sbin/sluiced -t -c /etc/sluice/sluice.yaml" \
	"$SUITE" "$work/rootfs.tar" - ||
	die "mmdebstrap failed (see above); nothing was built"

# Pack: an empty image, the rootfs unpacked into its bundle, one layer, then the config
# (entrypoint and args are what the DaemonSet runs).
umoci init --layout "$work/oci"
umoci new --image "$work/oci:$VERSION"
umoci unpack --image "$work/oci:$VERSION" "$work/bundle" >/dev/null
tar -xpf "$work/rootfs.tar" -C "$work/bundle/rootfs" --numeric-owner
# mount points of the DaemonSet's volumes (made here: during the hooks /sys and /run are
# the build host's, mounted by mmdebstrap)
mkdir -p "$work/bundle/rootfs/run/sluice" "$work/bundle/rootfs/sys/fs/bpf" \
	"$work/bundle/rootfs/etc/sluice-secret" "$work/bundle/rootfs/var/log/sluice"
umoci repack --image "$work/oci:$VERSION" "$work/bundle"
umoci config --image "$work/oci:$VERSION" \
	--os linux --architecture amd64 --author "sluice" \
	--config.entrypoint /usr/sbin/sluiced --config.cmd -c --config.cmd /etc/sluice/sluice.yaml \
	--config.workingdir / --config.stopsignal SIGTERM --config.exposedports 8080/tcp \
	--config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	--config.label "org.opencontainers.image.title=sluice" \
	--config.label "org.opencontainers.image.version=$VERSION" \
	--config.label "org.opencontainers.image.description=eBPF-assisted HTTP reverse proxy"
umoci gc --layout "$work/oci"
tar -C "$work/oci" --sort=name --owner=0 --group=0 --numeric-owner -cf "$out" .
digest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$work/oci/index.json")
echo "$digest" >"$B/sluice-$VERSION.digest"
rm -rf "$work/bundle" "$work/rootfs.tar"
echo "make image: $out ($(du -h "$out" | cut -f1)), tag $VERSION, manifest $digest"
