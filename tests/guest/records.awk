# The numbered records the test guest writes (tests/guest/agent.sh) and the
# host checks offline (tests/harness/guest.sh): one program for both sides,
# run by busybox awk in the guest and by mawk or gawk on the host.
#
#   awk -v seq=S -v count=N [-v gen=G] -f records.awk
#
# prints records S .. S+N-1, 4096 bytes each, meant for byte offset
# RECORD * 4096 of a disk.  A record is 64 lines of 64 bytes,
#
#   snapmig-record SSSSSSSSSS gen GGGGGGGGGG line LL sum CCCCCCCCCC
#
# with its number S, a generation G (so that a record rewritten later can be
# told from the older one), the line number and a check value C computed
# from S and G.  Every 512-byte sector of a record thus names the record, and
# a stale, misplaced, torn or zeroed record differs from the one expected.
# Every integer stays below 2^53, so any awk computes the same bytes; kept to
# few string copies and one write per record: busybox awk writes each print
# separately, a write into a pipe costs a context switch under TCG, and
# building a record a line at a time copies it 64 times.
function record(s, g,    i, a, b, r) {
  a = sprintf("snapmig-record %010d gen %010d line ", s, g)
  b = sprintf(" sum %010d\n", (s * 1103515245 + g * 12345 + 1) % 2147483648)
  r = ""
  for (i = 0; i < 64; i += 8)
    r = r sprintf("%s%s%s%s%s%s%s%s%s%s%s%s%s%s%s%s%s%s%s%s%s%s%s%s",
                  a, two[i], b, a, two[i + 1], b, a, two[i + 2], b,
                  a, two[i + 3], b, a, two[i + 4], b, a, two[i + 5], b,
                  a, two[i + 6], b, a, two[i + 7], b)
  printf "%s", r
}
BEGIN {
  if (gen == "") gen = 0
  for (i = 0; i < 64; i++) two[i] = sprintf("%02d", i)
  for (n = 0; n < count; n++) record(seq + n, gen)
}
