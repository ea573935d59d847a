# Sourced by the host-side e2e scripts (run.sh, deb.sh): the Debian
# packages they need, the Debian kernel they boot, its modules.

# need_debs LABEL PKG...: installs the missing packages as root, or says
# which apt-get line to run and exits.
need_debs() {
  local label=$1; shift
  local missing=() p
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ]; then
    echo "$label: installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "$label: missing: sudo apt-get install ${missing[*]}" >&2; exit 1
  fi
}

# debian_kernel DIR: the current linux-image-amd64 extracted once into
# DIR/kernel (shared by every guest); sets VMLINUZ and MODDIR.
debian_kernel() {
  local dir=$1 pkg
  if [ ! -d "$dir/kernel/boot" ]; then
    pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
    (cd "$dir" && apt-get download "$pkg" >/dev/null 2>&1 && dpkg -x "$pkg"_*.deb kernel && rm -f "$pkg"_*.deb)
  fi
  VMLINUZ=$(ls "$dir"/kernel/boot/vmlinuz-* | head -1)
  MODDIR=$(ls -d "$dir"/kernel/lib/modules/* | head -1)
}

# copy_modules DEST NAME...: the kernel's modules, decompressed, as
# DEST/NAME.ko (busybox insmod takes them so).
copy_modules() {
  local dest=$1 m f; shift
  for m in "$@"; do
    f=$(find "$MODDIR" -name "$m.ko*" | head -1)
    case "$f" in *.xz) xz -dc "$f" > "$dest/$m.ko" ;; *.zst) zstd -dqc "$f" > "$dest/$m.ko" ;; *) cp "$f" "$dest/$m.ko" ;; esac
  done
}
