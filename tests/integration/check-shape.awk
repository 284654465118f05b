# check-shape.awk: prints FILE:LINE for every `check` command (the TAP helper
# of tests/integration/lib.sh) that is followed, at the top level of the
# script, by && or ||.  `check D [ A ] && B` reports A only: B's failure is
# invisible (and `|| B` never runs B).  Quotes, $(...), `...`, ${...},
# comments and here-documents are skipped, so `check D eval '[ A ] && B'`
# and `check D [ "$(a && b)" = c ]` are fine.  lib.sh runs it on the script
# that sources it; tests/integration/test-check-shape.sh tests it.
function flush_word() {
  if (!inword) return
  inword = 0
  if (!cmdfirst) return
  if (word ~ /^(then|do|else|elif|if|while|until|!|\{|time)$/) return
  if (word ~ /^[A-Za-z_][A-Za-z0-9_]*=/) return
  cmdfirst = 0
  incheck = (word == "check")
  checkline = wordline
}
function newcmd() { flush_word(); cmdfirst = 1; incheck = 0 }
function startword() { if (!inword) { inword = 1; word = ""; wordline = line } }
function skip_heredocs(   j, l, d, strip) {
  # i is at the newline that ends the line holding the << operators.
  for (j = 1; j <= nhd; j++) {
    d = hd[j]; strip = hdstrip[j]
    while (i < n) {
      e = index(substr(text, i + 1), "\n")
      if (e == 0) { l = substr(text, i + 1); i = n } else { l = substr(text, i + 1, e - 1); i += e }
      line++
      if (strip) sub(/^\t+/, "", l)
      if (l == d) break
    }
  }
  nhd = 0
}
# One file at a time: scan() runs on each whole file.
FNR == 1 && NR > 1 { scan(file) }
{ if (FNR == 1) { text = ""; file = FILENAME } text = text $0 "\n" }
END { if (NR > 0) scan(file) }

function scan(fname) {
  n = length(text); line = 1; depth = 0; nhd = 0
  cmdfirst = 1; incheck = 0; inword = 0
  for (i = 1; i <= n; i++) {
    c = substr(text, i, 1); c2 = substr(text, i, 2)
    top = depth ? st[depth] : ""
    if (top == "'") {
      if (c == "'") depth--
      else if (c == "\n") line++
      continue
    }
    if (c == "\\") {
      if (depth == 0) startword()
      if (substr(text, i + 1, 1) == "\n") line++
      i++
      continue
    }
    if (top == "`") { if (c == "`") depth--; else if (c == "\n") line++; continue }
    if (top == "\"") {
      if (c == "\"") depth--
      else if (c2 == "$(") { st[++depth] = "$("; i++ }
      else if (c2 == "${") { st[++depth] = "${"; i++ }
      else if (c == "`") st[++depth] = "`"
      else if (c == "\n") line++
      continue
    }
    # top level, or inside $( ), ( ) or ${ }: quoting works the same.
    if (c == "'" || c == "\"" || c == "`") {
      if (depth == 0) startword()
      st[++depth] = c; continue
    }
    if (c2 == "$(" || c2 == "${") {
      if (depth == 0) startword()
      st[++depth] = c2; i++; continue
    }
    if (depth > 0) {
      if (c == "(") st[++depth] = "("
      else if (c == ")" && (top == "$(" || top == "(")) depth--
      else if (c == "}" && top == "${") depth--
      else if (c == "\n") line++
      continue
    }
    # depth 0: words, operators, comments, here-documents.
    if (c == "#" && !inword) {
      while (i < n && substr(text, i + 1, 1) != "\n") i++
      continue
    }
    if (c == "\n") {
      newcmd()
      if (nhd) skip_heredocs()
      line++
      continue
    }
    if (c == " " || c == "\t") { flush_word(); continue }
    if (c2 == "&&" || c2 == "||") {
      flush_word()
      if (incheck) print fname ":" checkline
      newcmd(); i++; continue
    }
    if (c == "&" && (substr(text, i - 1, 1) ~ /[<>]/ || substr(text, i + 1, 1) == ">")) {
      startword(); word = word c; continue
    }
    if (c == ";" || c == "&" || c == "|" || c == "(" || c == ")") { newcmd(); continue }
    if (substr(text, i, 3) == "<<<") { startword(); word = word "<<<"; i += 2; continue }
    if (c2 == "<<") {
      flush_word()
      i += 2; strip = 0
      if (substr(text, i, 1) == "-") { strip = 1; i++ }
      while (substr(text, i, 1) ~ /[ \t]/) i++
      d = ""
      while (i <= n && substr(text, i, 1) !~ /[ \t\n;&|<>()]/) { d = d substr(text, i, 1); i++ }
      i--
      gsub(/["'\\]/, "", d)
      hd[++nhd] = d; hdstrip[nhd] = strip
      continue
    }
    startword(); word = word c
  }
}
