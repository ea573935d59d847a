#!/usr/bin/env bash
# Screenshots of the tpm-u2f tray icon in a real tray host: Xvfb, a private
# session bus and xfce4-panel (its systray plugin hosts StatusNotifierItems
# since 4.16), the daemon on the embedded simulator. Writes
# docs/img/tray-unlocked.png and docs/img/tray-locked.png (the panel strip
# only). Everything runs under a temporary HOME and is stopped at exit.
#
# Usage: scripts/tray-screenshot.sh   (as root it installs what it needs)
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)
out=$repo/docs/img
panel_size=32     # panel height in pixels (the screenshots' height)
shot_width=160    # the width kept: the tray sits at the panel's left end

# --- packages ---------------------------------------------------------------
# xvfb: the X server. xfce4-panel + xfconf: the tray host and its settings
# daemon. imagemagick: `import` (screenshot) and the crop. dbus-daemon +
# dbus-bin: the private session bus and dbus-send.
pkgs=(xvfb xfce4-panel xfconf imagemagick dbus-daemon dbus-bin)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "tray-screenshot: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "tray-screenshot: run: sudo apt-get install --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
fi

make build >/dev/null

# --- scratch space and cleanup ----------------------------------------------
tmp=$(mktemp -d /tmp/tray-screenshot.XXXXXX)
pids=()
dbus_pid=
cleanup() {
  local rc=$?
  # Newest first: the daemon, the panel, then the bus and the X server.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  [ -n "$dbus_pid" ] && kill "$dbus_pid" 2>/dev/null || true
  if [ $rc -ne 0 ]; then
    for f in "$tmp"/*.log; do
      [ -s "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
    done
  fi
  rm -rf "$tmp"
  exit $rc
}
trap cleanup EXIT

# wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds.
wait_for() {
  local n=$(($1 * 10)) what=$2
  shift 2
  while ! "$@" >/dev/null 2>&1; do
    n=$((n - 1))
    if [ $n -le 0 ]; then
      echo "tray-screenshot: timed out waiting for $what" >&2
      return 1
    fi
    sleep 0.1
  done
}

# A private everything: nothing of the machine's user is read or written.
export HOME=$tmp/home
export XDG_CONFIG_HOME=$HOME/.config XDG_CACHE_HOME=$HOME/.cache XDG_DATA_HOME=$HOME/.local/share
export XDG_RUNTIME_DIR=$tmp/run
unset XDG_CONFIG_DIRS SESSION_MANAGER DESKTOP_SESSION XDG_CURRENT_DESKTOP
mkdir -p "$XDG_CONFIG_HOME/xfce4/xfconf/xfce-perchannel-xml" "$XDG_CACHE_HOME" "$XDG_DATA_HOME"
mkdir -m 0700 "$XDG_RUNTIME_DIR"

# --- X server ---------------------------------------------------------------
d=97
while [ -e /tmp/.X$d-lock ] || [ -e /tmp/.X11-unix/X$d ]; do d=$((d + 1)); done
export DISPLAY=:$d
Xvfb "$DISPLAY" -screen 0 800x200x24 -nolisten tcp >"$tmp/xvfb.log" 2>&1 &
pids+=($!)
wait_for 10 "Xvfb on $DISPLAY" test -S /tmp/.X11-unix/X$d

# --- session bus --------------------------------------------------------------
# Started after HOME and XDG_* are set: xfconfd is bus-activated and
# inherits this environment, so it reads the panel config below.
{ read -r DBUS_SESSION_BUS_ADDRESS; read -r dbus_pid; } < <(dbus-daemon --session --fork --print-address=1 --print-pid=1)
export DBUS_SESSION_BUS_ADDRESS

# --- panel ------------------------------------------------------------------
# One panel along the top edge holding only the system tray.
cat >"$XDG_CONFIG_HOME/xfce4/xfconf/xfce-perchannel-xml/xfce4-panel.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<channel name="xfce4-panel" version="1.0">
  <property name="configver" type="int" value="2"/>
  <property name="panels" type="array">
    <value type="int" value="1"/>
    <property name="panel-1" type="empty">
      <property name="position" type="string" value="p=6;x=0;y=0"/>
      <property name="length" type="uint" value="100"/>
      <property name="position-locked" type="bool" value="true"/>
      <property name="size" type="uint" value="$panel_size"/>
      <property name="plugin-ids" type="array">
        <value type="int" value="1"/>
      </property>
    </property>
  </property>
  <property name="plugins" type="empty">
    <property name="plugin-1" type="string" value="systray">
      <property name="square-icons" type="bool" value="true"/>
    </property>
  </property>
</channel>
EOF
xfce4-panel --disable-wm-check >"$tmp/panel.log" 2>&1 &
pids+=($!)

has_watcher() {
  dbus-send --session --print-reply --dest=org.freedesktop.DBus / \
    org.freedesktop.DBus.NameHasOwner string:org.kde.StatusNotifierWatcher | grep -q 'boolean true'
}
wait_for 20 "the panel's StatusNotifierWatcher" has_watcher

# --- the daemon ---------------------------------------------------------------
# --presence always: no request is made here, and the daemon still joins
# the session bus for the tray.
bin/tpm-u2f run --tpm sim --transport udp:127.0.0.1:0 --presence always \
  --state "$tmp/state" --control "$tmp/control.sock" >"$tmp/daemon.log" 2>&1 &
pids+=($!)
wait_for 30 "the daemon's tray icon" grep -q "tray icon shown" "$tmp/daemon.log"

registered() {
  dbus-send --session --print-reply --dest=org.kde.StatusNotifierWatcher /StatusNotifierWatcher \
    org.freedesktop.DBus.Properties.Get string:org.kde.StatusNotifierWatcher \
    string:RegisteredStatusNotifierItems | grep -q 'string "'
}
wait_for 10 "the item to register with the watcher" registered

# The tray polls the daemon once a second and re-applies its icon over the
# first ticks; give the panel time to draw it.
shot() {
  sleep 3
  import -display "$DISPLAY" -window root -crop "${shot_width}x${panel_size}+0+0" +repage -strip "$1"
  echo "tray-screenshot: wrote ${1#"$repo"/} ($(stat -c %s "$1") bytes)"
}
mkdir -p "$out"
shot "$out/tray-unlocked.png"
bin/tpm-u2f lock --control "$tmp/control.sock" >/dev/null
shot "$out/tray-locked.png"

# The icon must be there (more than the panel's one colour) and must change.
for f in "$out/tray-unlocked.png" "$out/tray-locked.png"; do
  if [ "$(convert "$f" -format %k info:)" -lt 2 ]; then
    echo "tray-screenshot: ${f#"$repo"/} shows an empty panel: no icon" >&2
    exit 1
  fi
done
diff=$(compare -metric AE "$out/tray-unlocked.png" "$out/tray-locked.png" null: 2>&1 || true)
if [ "$diff" = 0 ]; then
  echo "tray-screenshot: the locked icon looks the same as the unlocked one" >&2
  exit 1
fi
echo "tray-screenshot: $diff pixels differ between unlocked and locked"
