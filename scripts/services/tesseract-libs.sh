#!/usr/bin/env bash
# Makes sure the optional Tesseract OCR engine can be built and run: libtesseract and
# libleptonica with their headers, pkg-config to find them, and the English language data
# (Debian's packages).
set -euo pipefail
missing=()
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
pkg-config --exists tesseract 2>/dev/null || missing+=(libtesseract-dev)
pkg-config --exists lept 2>/dev/null || missing+=(libleptonica-dev)
if ! ls /usr/share/tesseract-ocr/*/tessdata/eng.traineddata >/dev/null 2>&1; then
  missing+=(tesseract-ocr-eng)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
fi
