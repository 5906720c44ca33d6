#!/usr/bin/env bash
# Prints the fidelity/perplexity corpus to stdout: Genesis chapters 1-3 of the
# King James Version (public domain), taken from the Debian package bible-kjv.
#
# Output format (deterministic, pure ASCII): one paragraph per chapter, the
# chapter's verses joined by single spaces, verse references removed;
# paragraphs separated by one blank line; the output ends with one newline.
# The exact bytes matter: tests/fixtures/reference_smollm2.json records the
# text's sha256 and length, and the C++ tests tokenize exactly this output.
#
# No Bible text is committed to the repository; install the package instead:
#   sudo apt-get install -y bible-kjv
set -euo pipefail

if ! command -v bible >/dev/null 2>&1; then
  echo "scripts/corpus.sh: the 'bible' command is missing;" \
       "install the Debian/Ubuntu package bible-kjv (apt-get install -y bible-kjv)" >&2
  exit 1
fi

# -f turns pretty-printing off: one verse per line, "Ge1:1 In the beginning ...".
raw=$(bible -f 'gen1:1-3:24' </dev/null)

printf '%s\n' "$raw" | LC_ALL=C awk '
  {
    # split "Ge<chapter>:<verse> <text>"
    if (!match($0, /^[A-Za-z0-9]+[0-9]+:[0-9]+ /)) {
      print "scripts/corpus.sh: unexpected line from bible: " $0 > "/dev/stderr"
      exit 2
    }
    ref = substr($0, 1, RLENGTH - 1)
    text = substr($0, RLENGTH + 1)
    sub(/:[0-9]+$/, "", ref)            # "Ge1"
    if (ref != prev) {
      if (n > 0) printf "\n\n"
      prev = ref
      first = 1
    }
    printf "%s%s", (first ? "" : " "), text
    first = 0
    n++
  }
  END {
    if (n == 0) {
      print "scripts/corpus.sh: bible printed no verses" > "/dev/stderr"
      exit 2
    }
    printf "\n"
  }'
