#!/usr/bin/env bash
# Fresh-machine setup: system packages (gfortran for MOOG, chromium for browser tests), the
# virtual environment at .venv with torch==2.13.0 (CPU) first, the project, and the MOOG build.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v gfortran >/dev/null || need+=(gfortran)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test,bench]"
.venv/bin/ddpayne theory build
