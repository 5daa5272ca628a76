# Sourced by the test scripts (with `set -euo pipefail`): what several of them need, written once.

# apt_install PKG...: Debian packages, through sudo when not root; apt-get's output to stderr so
# that a script's stdout stays its result (a URL, a path).
apt_install() {
  local sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "installing $* (apt-get)" >&2
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get update -qq >&2 &&
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "$@" >&2
}

# free_port: a TCP port of 127.0.0.1 that nothing listens on now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
    echo $((20000 + RANDOM % 20000))
}
