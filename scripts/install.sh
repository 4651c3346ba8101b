#!/bin/sh
# Install liblindivert (.so and .a), lindivert.h, lindivert.pc and the lindivert CLI.
#
#   scripts/install.sh [--prefix P] [--destdir D] [--libdir DIR] [--no-build]
#
#   --prefix P    installation prefix (default /usr/local)
#   --destdir D   stage into D (paths inside the .pc file stay relative to P)
#   --libdir DIR  library directory (default P/lib)
#   --no-build    use what is already in $CARGO_TARGET_DIR (or target)/release
#
# Then: cc prog.c $(pkg-config --cflags --libs lindivert)   (PKG_CONFIG_PATH=P/lib/pkgconfig)
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=/usr/local
DESTDIR=
LIBDIR=
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX=$2; shift 2 ;;
        --prefix=*) PREFIX=${1#*=}; shift ;;
        --destdir) DESTDIR=$2; shift 2 ;;
        --destdir=*) DESTDIR=${1#*=}; shift ;;
        --libdir) LIBDIR=$2; shift 2 ;;
        --libdir=*) LIBDIR=${1#*=}; shift ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
LIBDIR=${LIBDIR:-$PREFIX/lib}
INCLUDEDIR=$PREFIX/include
BINDIR=$PREFIX/bin
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/release
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n 1)

if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --release -p lindivert-ffi -p lindivert-cli)
fi
for f in liblindivert.so liblindivert.a lindivert; do
    [ -f "$TARGET/$f" ] || { echo "install.sh: $TARGET/$f missing" >&2; exit 1; }
done

install -d "$DESTDIR$LIBDIR/pkgconfig" "$DESTDIR$INCLUDEDIR" "$DESTDIR$BINDIR"
install -m 0755 "$TARGET/liblindivert.so" "$DESTDIR$LIBDIR/liblindivert.so"
install -m 0644 "$TARGET/liblindivert.a" "$DESTDIR$LIBDIR/liblindivert.a"
install -m 0644 "$ROOT/crates/lindivert-ffi/include/lindivert.h" "$DESTDIR$INCLUDEDIR/lindivert.h"
install -m 0755 "$TARGET/lindivert" "$DESTDIR$BINDIR/lindivert"
sed -e "s|@PREFIX@|$PREFIX|g" -e "s|@LIBDIR@|$LIBDIR|g" -e "s|@INCLUDEDIR@|$INCLUDEDIR|g" \
    -e "s|@VERSION@|$VERSION|g" "$ROOT/crates/lindivert-ffi/lindivert.pc.in" \
    > "$DESTDIR$LIBDIR/pkgconfig/lindivert.pc"
chmod 0644 "$DESTDIR$LIBDIR/pkgconfig/lindivert.pc"
echo "installed lindivert $VERSION into $DESTDIR$PREFIX"
