#!/bin/sh
# Removes what scripts/install.sh installed: units, binaries, settings,
# rules and Grafana files, and the receiver's `dcmon` user. The data
# (/var/lib/dcmon: database and admin token; /var/lib/dcmon-exporter: host
# key, enrolment, spool) stays unless --purge is given. Safe to run twice.
#
#   scripts/uninstall.sh [--root DIR] [--purge]
set -eu

root=/
purge=""
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root=$2; shift 2 ;;
    --root=*) root=${1#--root=}; shift ;;
    --purge) purge=1; shift ;;
    -h|--help) sed -n '2,/^set/{/^#/p}' "$0"; exit 0 ;;
    *) echo "uninstall.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
root=${root%/}
live=""
[ -z "$root" ] && live=1
systemd=""
[ -n "$live" ] && [ -d /run/systemd/system ] && systemd=1

for unit in dcmon-vmalert dcmon-receiver dcmon-exporter; do
  if [ -n "$systemd" ]; then
    systemctl disable --now "$unit.service" 2>/dev/null || true
  fi
  rm -f "$root/etc/systemd/system/$unit.service" \
    "$root/etc/systemd/system/multi-user.target.wants/$unit.service" \
    "$root/usr/bin/$unit" \
    "$root/etc/default/$unit"
done
[ -n "$systemd" ] && systemctl daemon-reload
rm -rf "$root/usr/share/dcmon"

if [ -n "$live" ] && getent passwd dcmon >/dev/null; then
  userdel dcmon
fi
if [ -n "$live" ] && getent group dcmon >/dev/null; then
  groupdel dcmon
fi

if [ -n "$purge" ]; then
  # StateDirectory= may have moved a state directory below /var/lib/private.
  rm -rf "$root/var/lib/dcmon" "$root/var/lib/dcmon-exporter" \
    "$root/var/lib/private/dcmon" "$root/var/lib/private/dcmon-exporter"
  echo "dcmon removed below ${root:-/}, data included."
else
  echo "dcmon removed below ${root:-/}; data kept in /var/lib/dcmon and /var/lib/dcmon-exporter (--purge removes it)."
fi
