#!/usr/bin/env bash
# Checks what the Makefile cannot install, with a clear message for each thing missing.
set -u
missing=0
need() { echo "missing prerequisite: $1"; echo "  -> $2"; missing=1; }

python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null ||
  need "Python 3.11 or newer as python3" "install it from python.org or your package manager"
command -v gcloud >/dev/null 2>&1 ||
  need "the gcloud CLI" "https://cloud.google.com/sdk/docs/install"
if command -v gcloud >/dev/null 2>&1; then
  sdk=$(gcloud info --format='value(installation.sdk_root)' 2>/dev/null)
  [ -e "$sdk/platform/cloud-firestore-emulator" ] ||
    need "the Firestore emulator" "gcloud components install cloud-firestore-emulator (or apt: google-cloud-cli-firestore-emulator)"
  [ -e "$sdk/platform/pubsub-emulator" ] ||
    need "the Pub/Sub emulator" "gcloud components install pubsub-emulator (or apt: google-cloud-cli-pubsub-emulator)"
fi
command -v java >/dev/null 2>&1 || need "Java 17+ (the emulators run on it)" "apt-get install openjdk-17-jre-headless"
command -v terraform >/dev/null 2>&1 || need "Terraform 1.5+" "https://developer.hashicorp.com/terraform/install"
exit $missing
