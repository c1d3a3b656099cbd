#!/usr/bin/env bash
# The transfer example: pretrain on the digits 0-4, export the trunk, fine-tune on the digits
# 5-9 with two tasks labelled on disjoint images. Run from this folder (or `make example
# EXAMPLE=transfer` from the project root).
set -euo pipefail
cd "$(dirname "$0")"
(cd pretrain && mtlflow run && mtlflow export-backbone --out ../backbone.safetensors)
mtlflow run
