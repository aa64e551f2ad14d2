#!/bin/sh
# Installs dcmon from built binaries on a systemd host the Debian packages
# don't fit: the programs, the hardened units, default settings
# (packaging/default) and, for the receiver, the alert rules and Grafana
# files. Running it again upgrades the binaries and units and keeps edited
# settings.
#
#   scripts/install.sh [--root DIR] [--bin-dir DIR] [--receiver] [--exporter]
#
#   --root DIR     install below DIR instead of / (packaging, tests); users
#                  are created and systemd is told only when DIR is /
#   --bin-dir DIR  where dcmon-receiver / dcmon-exporter are (target/release)
#   --receiver, --exporter   what to install (default: both)
#
# Nothing is started: the script prints the next steps.
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
root=/
bin_dir="$here/target/release"
want_receiver=""
want_exporter=""

while [ $# -gt 0 ]; do
  case "$1" in
    --root) root=$2; shift 2 ;;
    --root=*) root=${1#--root=}; shift ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    --bin-dir=*) bin_dir=${1#--bin-dir=}; shift ;;
    --receiver) want_receiver=1; shift ;;
    --exporter) want_exporter=1; shift ;;
    -h|--help) sed -n '2,/^set/{/^#/p}' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$want_receiver" ] && [ -z "$want_exporter" ]; then
  want_receiver=1
  want_exporter=1
fi
root=${root%/}
live=""
[ -z "$root" ] && live=1

# install(1) with the given mode, creating parent directories.
put() { # mode source target
  install -D -m "$1" "$2" "$root$3"
}

# A settings file is written once; an edited one is kept.
put_config() { # source target
  if [ -e "$root$2" ]; then
    echo "keeping $2"
  else
    install -D -m 0644 "$1" "$root$2"
  fi
}

for program in ${want_receiver:+dcmon-receiver} ${want_exporter:+dcmon-exporter}; do
  if [ ! -x "$bin_dir/$program" ]; then
    echo "install.sh: $bin_dir/$program is missing (cargo build --release)" >&2
    exit 1
  fi
done

if [ -n "$want_receiver" ]; then
  put 0755 "$bin_dir/dcmon-receiver" /usr/bin/dcmon-receiver
  put 0644 "$here/systemd/dcmon-receiver.service" /etc/systemd/system/dcmon-receiver.service
  put 0644 "$here/systemd/dcmon-vmalert.service" /etc/systemd/system/dcmon-vmalert.service
  put_config "$here/packaging/default/dcmon-receiver" /etc/default/dcmon-receiver
  for file in "$here"/rules/*.yml; do
    put 0644 "$file" "/usr/share/dcmon/rules/$(basename "$file")"
  done
  for file in "$here"/rules/examples/*.yml; do
    put 0644 "$file" "/usr/share/dcmon/rules/examples/$(basename "$file")"
  done
  for file in "$here"/grafana/dashboards/*.json; do
    put 0644 "$file" "/usr/share/dcmon/grafana/dashboards/$(basename "$file")"
  done
  put 0644 "$here/grafana/provisioning/datasources/dcmon.yaml" \
    /usr/share/dcmon/grafana/provisioning/datasources/dcmon.yaml
  put 0644 "$here/grafana/provisioning/dashboards/dcmon.yaml" \
    /usr/share/dcmon/grafana/provisioning/dashboards/dcmon.yaml
  if [ -n "$live" ] && ! getent passwd dcmon >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/dcmon --no-create-home \
      --shell /usr/sbin/nologin --comment "dcmon receiver" dcmon
  fi
fi

if [ -n "$want_exporter" ]; then
  put 0755 "$bin_dir/dcmon-exporter" /usr/bin/dcmon-exporter
  put 0644 "$here/systemd/dcmon-exporter.service" /etc/systemd/system/dcmon-exporter.service
  put_config "$here/packaging/default/dcmon-exporter" /etc/default/dcmon-exporter
fi

if [ -n "$live" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi

echo "dcmon installed below ${root:-/}."
if [ -n "$want_receiver" ]; then
  echo "  receiver: systemctl enable --now dcmon-receiver; the admin token is then in /var/lib/dcmon/admin-token"
  echo "            Grafana files: /usr/share/dcmon/grafana (see README, Grafana)"
  echo "            alert rules: /usr/share/dcmon/rules, evaluated by dcmon-vmalert (see README, Alert rules)"
fi
if [ -n "$want_exporter" ]; then
  echo "  exporter: dcmon-exporter register --server URL --admin-token-file FILE --state-dir /var/lib/dcmon-exporter"
  echo "            then systemctl enable --now dcmon-exporter"
fi
