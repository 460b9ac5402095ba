#!/bin/sh
# The C++ sources follow .clang-format: fails naming the files that do not (fix: clang-format -i FILE...).
set -eu
cd "$1"
files=$(git ls-files '*.cpp' '*.hpp')
bad=""
for f in $files; do
  clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || bad="$bad $f"
done
if [ -n "$bad" ]; then
  echo "not formatted as .clang-format says:$bad"
  echo "fix: clang-format -i$bad"
  exit 1
fi
echo "$(echo "$files" | wc -w) files formatted"
