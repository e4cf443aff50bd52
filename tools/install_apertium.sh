#!/usr/bin/env bash
# Install Apertium (rule-based MT, Debian packages) for translate-train: xlrm_lib/translate.py.
#
#   bash tools/install_apertium.sh        # safe to run again: installs only what is missing
#
# Pairs: eng-spa (en<->es), eng-cat (en<->ca), es-pt (es<->pt), fr-es (fr<->es); en->pt and en->fr pivot
# through Spanish. Without apt-get and root (or passwordless sudo) this prints what to do and exits 0:
# the project works without Apertium, the grid just skips the translate-train reward models.
set -euo pipefail

PACKAGES=(apertium apertium-eng-spa apertium-eng-cat apertium-es-pt apertium-fr-es)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "apertium: all packages already installed (${PACKAGES[*]})"
else
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "apertium: apt-get not found; install these packages with your system's package manager:" \
         "${missing[*]}. Skipping (translated reward models will be skipped by the grid)."
    exit 0
  fi
  if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    echo "apertium: not root and no passwordless sudo; run as root:" \
         "apt-get install -y ${missing[*]}. Skipping (translated reward models will be skipped by the grid)."
    exit 0
  fi
  echo "apertium: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Smoke test: one sentence through the most used direction.
if command -v apertium >/dev/null 2>&1; then
  echo "apertium: installed modes: $(apertium -l 2>/dev/null | tr '\n' ' ')"
  echo "The house is red." | apertium -u eng-spa
fi
