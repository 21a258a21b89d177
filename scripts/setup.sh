#!/usr/bin/env bash
# Installs everything fleetdb's build and test suite need on a fresh Debian machine.
# Safe to run again: it installs only what is missing.
set -euo pipefail

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

# System packages: protoc builds the etcd client; etcd-server and prometheus are the real
# etcd and Prometheus the tests start; chromium is the browser of the UI tests.
missing=()
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v etcd >/dev/null 2>&1 || [ -x /usr/bin/etcd ] || missing+=(etcd-server)
command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ] || missing+=(prometheus)
# Debian's Chromium, which the web UI's tests drive through Playwright (no browser download).
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# kubectl is part of the machine image (a dispatcher running kubectl 1.27-1.33).
if ! command -v kubectl >/dev/null 2>&1; then
  echo "setup: kubectl is missing; install it (the tests drive fleetdb with the real kubectl)" >&2
  exit 1
fi

# Python packages for the client tests, in the repository's own virtual environment.
venv="$(cd "$(dirname "$0")/.." && pwd)/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check -r "$(dirname "$0")/requirements-test.txt"

# Rust tooling.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi
