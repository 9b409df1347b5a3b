#!/usr/bin/env bash
# Install Spimeforge as system services: the service user, its directories, the systemd units,
# example settings and shell completions. Run as root after `bash ops/install.sh`.
# Usage: bash ops/install-service.sh [hub|node|all]          (default: all; safe to run again)
#   DESTDIR=/tmp/stage bash ops/install-service.sh all      lay the files out under a staging root
#                                                           (no user, no ownership, no systemctl)
#   COMPLETIONS=no bash ops/install-service.sh               skip the shell completions
# Then: put TLS files in /etc/spimeforge/tls (bash ops/tls/make-dev-ca.sh /etc/spimeforge/tls HOST),
# edit /etc/spimeforge/hub.env or node.toml, and `systemctl enable --now spime-hub` (or spime-node).
set -euo pipefail
what=${1:-all}
case "$what" in hub|node|all) ;; *) echo "usage: install-service.sh [hub|node|all]" >&2; exit 2 ;; esac
src=$(cd "$(dirname "$0")/.." && pwd)
dest=${DESTDIR:-}
user=spime
state=/var/lib/spimeforge
etc=/etc/spimeforge

if [ -z "$dest" ]; then
  if [ "$(id -u)" != 0 ]; then echo "install-service.sh: run as root (or set DESTDIR to stage)" >&2; exit 1; fi
  if [ ! -x "$src/.venv/bin/spime-hub" ]; then
    echo "install-service.sh: $src/.venv is missing: run 'bash ops/install.sh' first" >&2; exit 1
  fi
  if ! id -u "$user" >/dev/null 2>&1; then
    useradd --system --user-group --home-dir "$state" --no-create-home --shell /usr/sbin/nologin \
      --comment "Spimeforge services" "$user"
    echo "created system user $user" >&2
  fi
  owner=(-o "$user" -g "$user")
  config_owner=(-o root -g "$user")
else
  owner=()
  config_owner=()
fi

install -d -m 0750 "${owner[@]}" "$dest$state"
install -d -m 0750 "${config_owner[@]}" "$dest$etc" "$dest$etc/tls"
install -d -m 0755 "$dest/etc/systemd/system"

# The units name /opt/spimeforge; point them at wherever this checkout lives.
install_unit() {
  sed "s#/opt/spimeforge#$src#g" "$src/ops/systemd/$1" > "$dest/etc/systemd/system/$1"
  chmod 0644 "$dest/etc/systemd/system/$1"
  echo "installed /etc/systemd/system/$1" >&2
}
install_example() {  # never overwrite an operator's settings
  if [ ! -e "$dest$2" ]; then
    install -m 0640 "${config_owner[@]}" "$1" "$dest$2"
    echo "installed $2 (edit it)" >&2
  fi
}
if [ "$what" != node ]; then
  install_unit spime-hub.service
  install_example "$src/ops/hub.env.example" "$etc/hub.env"
fi
if [ "$what" != hub ]; then
  install -d -m 0750 "${owner[@]}" "$dest$state/node"
  install_unit spime-node.service
  install_example "$src/ops/node.example.toml" "$etc/node.toml"
fi

# Shell completions, generated from the installed commands' own parsers.
bash_dir="$dest/usr/share/bash-completion/completions"
zsh_dir="$dest/usr/share/zsh/vendor-completions"
install -d -m 0755 "$bash_dir" "$zsh_dir"
progs=(spime spime-hub spime-node)
[ "${COMPLETIONS:-yes}" = no ] && progs=()
for prog in "${progs[@]}"; do
  for shell in bash zsh; do
    if script=$("$src/.venv/bin/$prog" completion "$shell" 2>/dev/null); then
      if [ "$shell" = bash ]; then out="$bash_dir/$prog"; else out="$zsh_dir/_$prog"; fi
      printf '%s\n' "$script" > "$out"
    else
      echo "no $shell completion for $prog (is it installed?)" >&2
    fi
  done
done

if [ -z "$dest" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi
if [ ! -e "$dest$etc/tls/hub.crt" ] && [ "$what" != node ]; then
  echo "next: bash $src/ops/tls/make-dev-ca.sh $etc/tls \$(hostname -f)  (or copy your own hub.crt/hub.key)" >&2
  echo "      and: chgrp $user $etc/tls/hub.key && chmod 0640 $etc/tls/hub.key" >&2
fi
echo "done: systemctl enable --now spime-hub / spime-node" >&2
