#!/bin/sh
# The agent of snapmig's test guest (busybox sh).  /init runs it on ttyS1; a
# test drives it through tests/harness/guest.sh, one command a line:
#
#   ID COMMAND ARGS...
#
# ID is any word the host chooses.  The agent answers with zero or more lines
# and then exactly one end line, "@@end ID OK" or "@@end ID FAIL: WHY", so the
# host knows where a reply ends and which command it belongs to.  When it
# starts it prints "@@ready snapmig-guest-agent VERSION".
#
# Commands (DEV is a disk's name under /dev, e.g. vda):
#   ping                        -> pong
#   info                        kernel, memory, disks
#   run SHELL-COMMAND           runs it with sh -c (for what no command does:
#                               sync, sysctl, a look at /proc); its status
#   write DEV SEQ COUNT [GEN]   writes records SEQ..SEQ+COUNT-1 (4 KiB each, at
#                               byte SEQ*4096, made by /records.awk) with
#                               O_DIRECT, then flushes the disk (fsync)
#   verify DEV SEQ COUNT [GEN]  reads them back with O_DIRECT; FAIL names the
#                               first record that differs and what it holds
#   ram MIB                     fills MIB MiB of RAM (a file in the initramfs'
#                               tmpfs) with random bytes, keeps them, prints
#                               their md5 (leave the kernel half the RAM: an
#                               out-of-memory kill restarts the agent)
#   ramsum                      md5 of that RAM now; FAIL when it changed
#   writeload DEV MIBPS START SIZE [CHUNK]
#                               in the background, writes the region of SIZE
#                               MiB at START MiB of DEV over and over with
#                               O_DIRECT, CHUNK MiB (default 8) per write, at
#                               MIBPS MiB/s (0: as fast as it can); one load
#                               per disk.  Pass P writes buffer P % 4 (random
#                               bytes; "load DEV buffer K md5 SUM" lines), so
#                               the region's content is known at any stop.
#                               Each write is one dd (a fork and exec that
#                               TCG makes costly): 8 MiB chunks reached ~220
#                               MiB/s unlimited where 4 MiB ones reached ~100.
#   loadstat [DEV]              progress of the loads, without stopping them
#   stop [DEV]                  stops DEV's load (default: every load) after
#                               the write in flight and prints, for each, "load
#                               DEV start S size Z chunk C pass P pos N mib M
#                               cs T rate R" (M MiB in T/100 s, R MiB/s): chunks
#                               0..N-1 hold buffer P % 4, the others buffer
#                               (P-1) % 4, or what was there before when P is 0
#   loadcheck DEV               checks that in the guest (after stop)
#   dirty MIB [MIBPS [CHUNK]]   in the background, dirties guest RAM with
#                               non-zero data (zero pages cost a migration
#                               next to nothing): overwrites, in place
#                               (conv=notrunc: the same pages each pass), a
#                               tmpfs file of MIB MiB, CHUNK MiB (default 8)
#                               per dd, over and over, at MIBPS MiB/s (0 or
#                               absent: as fast as it can).  Pass P writes
#                               buffer P % 2 (CHUNK MiB of random bytes;
#                               "dirty buffer K md5 SUM" lines) over every
#                               chunk.  Under TCG one pass of 32 MiB in 8 MiB
#                               chunks is 4 dd (a fork and exec each).
#   dirtystat                   "dirty pass P pos N mib M cs T rate R" (M MiB
#                               written in T/100 s, R MiB/s), without stopping
#   dirtystop                   stops the dirtier after the chunk in flight
#                               and prints its dirtystat line
#   dirtysum                    (after dirtystop) checks the region: chunks
#                               0..N-1 hold buffer P % 2, the others buffer
#                               (P-1) % 2 (P and N of the dirtystat line),
#                               and the buffers still hold what they held;
#                               prints "dirtysum MD5" (the region's md5)
R=/run/agent
VERSION=1
mkdir -p "$R"

# num VALUE...: true when every VALUE is a decimal number.
num () {
  local v
  for v; do
    case "$v" in ''|*[!0-9]*) return 1 ;; esac
  done
}
# blockdev DEV: true when /dev/DEV is a block device.
blockdev () { case "$1" in ''|*/*) return 1 ;; esac; [ -b "/dev/$1" ]; }
# uptime_cs: centiseconds since boot.
uptime_cs () {
  local up rest
  read -r up rest </proc/uptime
  echo $(( ${up%.*} * 100 + 1${up#*.} - 100 ))
}

# records SEQ COUNT GEN: the records, on stdout.
records () { awk -v seq="$1" -v count="$2" -v gen="$3" -f /records.awk; }

cmd_write () {
  [ $# -ge 3 ] && blockdev "$1" && num "$2" "$3" "${4:-0}" && [ "$3" -gt 0 ] ||
    { WHY="usage: write DEV SEQ COUNT [GEN]"; return 1; }
  set -o pipefail
  if ! records "$2" "$3" "${4:-0}" |
       dd of="/dev/$1" bs=256k seek=$(( $2 * 4096 )) iflag=fullblock \
          oflag=direct,seek_bytes conv=notrunc,fsync status=none; then
    set +o pipefail
    WHY="dd of /dev/$1 failed"; return 1
  fi
  set +o pipefail
  echo "wrote $1 records $2..$(( $2 + $3 - 1 )) gen ${4:-0}"
}

cmd_verify () {
  [ $# -ge 3 ] && blockdev "$1" && num "$2" "$3" "${4:-0}" && [ "$3" -gt 0 ] ||
    { WHY="usage: verify DEV SEQ COUNT [GEN]"; return 1; }
  local s=$2 left=$3 n off r found
  while [ "$left" -gt 0 ]; do
    n=256
    [ "$left" -lt $n ] && n=$left
    records "$s" "$n" "${4:-0}" >"$R/exp"
    if ! dd if="/dev/$1" of="$R/got" bs=4096 skip="$s" count="$n" \
            iflag=direct status=none; then
      WHY="read of /dev/$1 record $s failed"; return 1
    fi
    if ! cmp -s "$R/exp" "$R/got"; then
      off=$(cmp "$R/exp" "$R/got" 2>&1 | sed -n 's/.*char \([0-9]*\).*/\1/p')
      if [ -n "$off" ]; then r=$(( (off - 1) / 4096 ))
      else r=$(( $(wc -c <"$R/got") / 4096 )); fi
      found=$(dd if="$R/got" bs=4096 skip="$r" count=1 status=none |
              head -c 63 | tr -c '[:print:]' '.')
      echo "BAD $1 record $(( s + r )): found '$found'"
      WHY="record $(( s + r )) of $1 differs"; return 1
    fi
    s=$(( s + n )); left=$(( left - n ))
  done
  echo "verified $1 records $2..$(( $2 + $3 - 1 )) gen ${4:-0}"
}

cmd_ram () {
  [ $# -eq 1 ] && num "$1" || { WHY="usage: ram MIB"; return 1; }
  rm -f "$R/ram"
  dd if=/dev/urandom of="$R/ram" bs=1M count="$1" status=none ||
    { WHY="cannot fill $1 MiB of RAM"; rm -f "$R/ram"; return 1; }
  md5sum <"$R/ram" | cut -d' ' -f1 >"$R/ram.md5"
  echo "ram $1 MiB md5 $(cat "$R/ram.md5")"
}

cmd_ramsum () {
  [ -f "$R/ram.md5" ] || { WHY="no RAM payload: run ram MIB first"; return 1; }
  local now
  now=$(md5sum <"$R/ram" | cut -d' ' -f1)
  echo "ramsum $now"
  [ "$now" = "$(cat "$R/ram.md5")" ] ||
    { WHY="RAM payload changed: md5 was $(cat "$R/ram.md5")"; return 1; }
}

# Each load's files are $R/load.DEV.*: args, state (after each chunk: pass,
# position, MiB written, centiseconds), buffers 0-3, pid while it runs, stop
# (asks it to stop), err (why it stopped by itself).
load_loop () { write_loop "$R/load.$1" "/dev/$1" oflag=direct "$3" "$4" "$5" 4 "$2"; }

# write_loop F TARGET OFLAG START SIZE CHUNK NBUF RATE: the loop of the
# write load and of the RAM dirtier: writes files F.0 .. F.(NBUF-1) (CHUNK
# MiB each) over the region of SIZE MiB at START MiB of TARGET, chunk after
# chunk, buffer P % NBUF in pass P, at RATE MiB/s (0: as fast as it can)
# until F.stop exists; F.state after each chunk, F.err when a write fails.
write_loop () {
  local f=$1 target=$2 oflag=$3 start=$4 n=$(( $5 / $6 )) chunk=$6 nbuf=$7 rate=$8
  local pass=0 pos=0 mib=0 t0 now due
  t0=$(uptime_cs)
  while [ ! -e "$f.stop" ]; do
    # shellcheck disable=SC2086 # OFLAG: one word or none
    if ! dd if="$f.$(( pass % nbuf ))" of="$target" bs=1M \
            seek=$(( start + pos * chunk )) $oflag conv=notrunc \
            status=none; then
      echo "write of $target at $(( start + pos * chunk )) MiB failed" >"$f.err"
      break
    fi
    pos=$(( pos + 1 )); mib=$(( mib + chunk ))
    if [ $pos -ge $n ]; then pos=0; pass=$(( pass + 1 )); fi
    now=$(uptime_cs)
    echo "$pass $pos $mib $(( now - t0 ))" >"$f.state"
    if [ "$rate" -gt 0 ]; then
      due=$(( mib * 100 / rate ))
      [ $(( now - t0 )) -lt $due ] && usleep $(( (due - now + t0) * 10000 ))
    fi
  done
}

# state_line F: "pass P pos N mib M cs T rate R" from write_loop's F.state.
state_line () {
  local pass='' pos mib cs rate n=0
  # The writer rewrites the file in place: an empty read is retried.
  while [ -z "$pass" ] && [ $n -lt 100 ]; do
    read -r pass pos mib cs <"$1.state"
    n=$(( n + 1 ))
  done
  [ "$cs" -gt 0 ] && rate=$(( mib * 1000 / cs )) || rate=0
  echo "pass $pass pos $pos mib $mib cs $cs rate $(( rate / 10 )).$(( rate % 10 ))"
}

# loads [DEV]: DEV, or every disk a load ran on, one a line.
loads () {
  local f
  if [ -n "$1" ]; then echo "$1"; return; fi
  for f in "$R"/load.*.args; do
    [ -f "$f" ] || continue
    f=${f#"$R/load."}; echo "${f%.args}"
  done
}

load_line () {
  echo "load $1 $(cat "$R/load.$1.args") $(state_line "$R/load.$1")"
}

cmd_writeload () {
  [ $# -ge 4 ] && blockdev "$1" && num "$2" "$3" "$4" "${5:-8}" &&
    [ "${5:-8}" -gt 0 ] && [ "$4" -gt 0 ] && [ $(( $4 % ${5:-8} )) -eq 0 ] ||
    { WHY="usage: writeload DEV MIBPS START SIZE [CHUNK] (SIZE a multiple of CHUNK)"; return 1; }
  local f=$R/load.$1 k chunk=${5:-8}
  [ ! -f "$f.pid" ] || { WHY="a load runs on $1 already: stop it first"; return 1; }
  rm -f "$f".*
  for k in 0 1 2 3; do
    dd if=/dev/urandom of="$f.$k" bs=1M count="$chunk" status=none ||
      { WHY="cannot make the load's buffers"; rm -f "$f".*; return 1; }
    echo "load $1 buffer $k md5 $(md5sum <"$f.$k" | cut -d' ' -f1)"
  done
  echo "0 0 0 0" >"$f.state"
  echo "start $3 size $4 chunk $chunk" >"$f.args"
  load_loop "$1" "$2" "$3" "$4" "$chunk" &
  echo $! >"$f.pid"
  echo "load started on $1 at $2 MiB/s (0: unlimited)"
}

cmd_loadstat () {
  local d any=''
  for d in $(loads "$1"); do
    [ -f "$R/load.$d.state" ] || continue
    load_line "$d"; any=1
  done
  [ -n "$any" ] || { WHY="no load ran${1:+ on $1}"; return 1; }
}

cmd_stop () {
  local d any='' rc=0
  for d in $(loads "$1"); do
    [ -f "$R/load.$d.pid" ] || continue
    touch "$R/load.$d.stop"
    wait "$(cat "$R/load.$d.pid")"
    rm -f "$R/load.$d.pid"
    load_line "$d"; any=1
    if [ -f "$R/load.$d.err" ]; then WHY=$(cat "$R/load.$d.err"); rc=1; fi
  done
  [ -n "$any" ] || { WHY="no load runs${1:+ on $1}"; return 1; }
  return $rc
}

cmd_loadcheck () {
  blockdev "$1" || { WHY="usage: loadcheck DEV"; return 1; }
  local f=$R/load.$1 x start size chunk pass pos mib cs c k got want now last
  [ ! -f "$f.pid" ] && [ -f "$f.state" ] ||
    { WHY="run writeload $1 and stop first"; return 1; }
  read -r x start x size x chunk <"$f.args"
  read -r pass pos mib cs <"$f.state"
  now=$(md5sum <"$f.$(( pass % 4 ))" | cut -d' ' -f1)
  last=$(md5sum <"$f.$(( (pass + 3) % 4 ))" | cut -d' ' -f1)
  c=0
  while [ $c -lt $(( size / chunk )) ]; do
    if [ $c -lt "$pos" ]; then k=$(( pass % 4 )) want=$now
    elif [ "$pass" -gt 0 ]; then k=$(( (pass - 1) % 4 )) want=$last
    else break; fi
    got=$(dd if="/dev/$1" bs=1M skip=$(( start + c * chunk )) \
             count="$chunk" iflag=direct status=none | md5sum | cut -d' ' -f1)
    [ "$got" = "$want" ] ||
      { WHY="load chunk $c of $1 (at $(( start + c * chunk )) MiB) is not buffer $k"; return 1; }
    c=$(( c + 1 ))
  done
  echo "load region of $1 checked: $c chunks"
}

# The dirtier's files are $R/dirty.*: args (MIB CHUNK), buffers 0 and 1,
# md5.0 and md5.1, region (the file it overwrites), state, pid, stop and
# err as a load's.
dirty_line () { echo "dirty $(state_line "$R/dirty")"; }

cmd_dirty () {
  local mib=$1 rate=${2:-0} chunk=${3:-8} f=$R/dirty k
  [ $# -ge 1 ] && num "$mib" "$rate" "$chunk" && [ "$chunk" -gt 0 ] &&
    [ "$mib" -gt 0 ] && [ $(( mib % chunk )) -eq 0 ] ||
    { WHY="usage: dirty MIB [MIBPS [CHUNK]] (MIB a multiple of CHUNK)"; return 1; }
  [ ! -f "$f.pid" ] || { WHY="the dirtier runs already: dirtystop first"; return 1; }
  rm -f "$f".*
  for k in 0 1; do
    dd if=/dev/urandom of="$f.$k" bs=1M count="$chunk" status=none ||
      { WHY="cannot make the dirtier's buffers"; rm -f "$f".*; return 1; }
    md5sum <"$f.$k" | cut -d' ' -f1 >"$f.md5.$k"
    echo "dirty buffer $k md5 $(cat "$f.md5.$k")"
  done
  # The region starts as buffer 1 everywhere (a pass -1), so that every
  # chunk's content is known from the first write on.
  k=0
  while [ $k -lt $(( mib / chunk )) ]; do
    dd if="$f.1" of="$f.region" bs=1M seek=$(( k * chunk )) conv=notrunc status=none ||
      { WHY="cannot fill the dirtier's region"; rm -f "$f".*; return 1; }
    k=$(( k + 1 ))
  done
  echo "$mib $chunk" >"$f.args"
  echo "0 0 0 0" >"$f.state"
  write_loop "$f" "$f.region" '' 0 "$mib" "$chunk" 2 "$rate" &
  echo $! >"$f.pid"
  echo "dirtier started: $mib MiB at $rate MiB/s (0: unlimited), $chunk MiB a write"
}

cmd_dirtystat () {
  [ -f "$R/dirty.state" ] || { WHY="no dirtier ran"; return 1; }
  dirty_line
}

cmd_dirtystop () {
  [ -f "$R/dirty.pid" ] || { WHY="no dirtier runs"; return 1; }
  touch "$R/dirty.stop"
  wait "$(cat "$R/dirty.pid")"
  rm -f "$R/dirty.pid"
  dirty_line
  [ ! -f "$R/dirty.err" ] || { WHY=$(cat "$R/dirty.err"); return 1; }
}

cmd_dirtysum () {
  local f=$R/dirty mib chunk pass pos x c k got want
  [ ! -f "$f.pid" ] && [ -f "$f.state" ] ||
    { WHY="run dirty and dirtystop first"; return 1; }
  read -r mib chunk <"$f.args"
  read -r pass pos x x <"$f.state"
  for k in 0 1; do
    [ "$(md5sum <"$f.$k" | cut -d' ' -f1)" = "$(cat "$f.md5.$k")" ] ||
      { WHY="the dirtier's buffer $k changed"; return 1; }
  done
  c=0
  while [ $c -lt $(( mib / chunk )) ]; do
    if [ $c -lt "$pos" ]; then k=$(( pass % 2 )); else k=$(( (pass + 1) % 2 )); fi
    got=$(dd if="$f.region" bs=1M skip=$(( c * chunk )) count="$chunk" status=none |
          md5sum | cut -d' ' -f1)
    want=$(cat "$f.md5.$k")
    [ "$got" = "$want" ] ||
      { WHY="chunk $c of the dirtier's region (at $(( c * chunk )) MiB) is not buffer $k"; return 1; }
    c=$(( c + 1 ))
  done
  echo "dirtysum $(md5sum <"$f.region" | cut -d' ' -f1)"
}

cmd_info () {
  echo "kernel $(uname -r)"
  echo "mem $(sed -n 's/^MemTotal: *//p' /proc/meminfo)"
  echo "disks" $(ls /sys/block)
  echo "uptime $(cut -d' ' -f1 /proc/uptime)"
}

echo "@@ready snapmig-guest-agent $VERSION"
while read -r id cmd args; do
  [ -n "$id" ] || continue
  WHY=
  # shellcheck disable=SC2086 # the arguments are words
  set -- $args
  case "$cmd" in
    ping) echo pong; true ;;
    info) cmd_info ;;
    run) sh -c "$args" 2>&1 || { WHY="exit status $?"; false; } ;;
    write) cmd_write "$@" ;;
    verify) cmd_verify "$@" ;;
    ram) cmd_ram "$@" ;;
    ramsum) cmd_ramsum ;;
    writeload) cmd_writeload "$@" ;;
    loadstat) cmd_loadstat "$@" ;;
    stop) cmd_stop "$@" ;;
    loadcheck) cmd_loadcheck "$@" ;;
    dirty) cmd_dirty "$@" ;;
    dirtystat) cmd_dirtystat ;;
    dirtystop) cmd_dirtystop ;;
    dirtysum) cmd_dirtysum ;;
    *) WHY="unknown command '$cmd'"; false ;;
  esac
  if [ $? -eq 0 ]; then echo "@@end $id OK"
  else echo "@@end $id FAIL: ${WHY:-failed}"; fi
done
