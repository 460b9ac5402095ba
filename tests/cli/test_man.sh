#!/usr/bin/env bash
# Renders one man page with warnings enabled; fails on any warning (or an empty rendering).
set -u
page=$1
if command -v man >/dev/null 2>&1; then
  out=$(MANWIDTH=80 man --warnings -E UTF-8 -l "$page" 2>&1 >/dev/null); rc=$?
  lines=$(MANWIDTH=80 man -E UTF-8 -l "$page" 2>/dev/null | wc -l)
else
  out=$(groff -man -ww -z "$page" 2>&1); rc=$?
  lines=$(groff -man -Tutf8 "$page" 2>/dev/null | wc -l)
fi
if [ $rc -ne 0 ] || [ -n "$out" ] || [ "$lines" -lt 20 ]; then
  echo "FAIL: $page (exit $rc, $lines lines):"; echo "$out"; exit 1
fi
echo "ok: $page renders without warnings ($lines lines)"
