#!/bin/sh
# Install the Debian packages sluice needs to build, test and benchmark.
# Idempotent: asks dpkg first and runs apt-get only for what is missing.
set -eu

BUILD="make gcc clang llvm pkg-config libbpf-dev libelf-dev zlib1g-dev bpftool
libevent-dev libssl-dev node-llhttp libyaml-dev libjansson-dev libcap-ng-dev libsystemd-dev"
TEST="libcmocka-dev python3 python3-pytest python3-h11 python3-yaml curl openssl iproute2 strace
libclang-rt-14-dev"
BENCH="wrk nginx-light haproxy"
IMAGE="mmdebstrap umoci curl"

case "${1:-all}" in
build) WANT="$BUILD" ;;
test) WANT="$BUILD $TEST $IMAGE" ;;
bench) WANT="$BUILD $TEST $BENCH" ;;
image) WANT="$BUILD $IMAGE" ;;
all) WANT="$BUILD $TEST $BENCH $IMAGE" ;;
*) echo "usage: $0 [build|test|bench|image|all]" >&2; exit 2 ;;
esac

missing=""
for p in $WANT; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$st" in
	*"install ok installed"*) ;;
	*) missing="$missing $p" ;;
	esac
done

[ -z "$missing" ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
# Debian starts nginx and haproxy on install; the benchmark runs its own.
for s in nginx haproxy; do
	case "$missing" in *"$s"*) $SUDO systemctl disable --now "$s" >/dev/null 2>&1 ||
		$SUDO service "$s" stop >/dev/null 2>&1 || true ;; esac
done
