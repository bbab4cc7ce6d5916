# /proc of another process and of the caller (issue 23), printed as
# facts that hold natively and under vkernel alike.
export PROBE_VAR=present
# Long enough to outlive the script on a slow host under load (the
# script reads /proc through about 20,000 exits there: 4-5 s); killed
# at the end.
sleep 60 </dev/null >/dev/null 2>&1 &
P=$!
sleep 0.3
for f in cmdline comm cwd environ exe fd fdinfo limits maps root stat status task; do
    [ -e /proc/$P/$f ] && echo "has $f" || echo "lacks $f"
done
tr '\0' '\n' < /proc/$P/environ | grep -c '^PROBE_VAR=present$'
head -1 /proc/$P/limits
grep -c '^Max open files' /proc/$P/limits
readlink /proc/$P/exe
[ "$(readlink /proc/$P/cwd)" = "$(pwd)" ] && echo "cwd matches"
for n in 0 1 2; do [ -e /proc/$P/fd/$n ] && echo "fd $n listed"; done
readlink /proc/$P/fd/0
grep -c '^pos:' /proc/$P/fdinfo/0
[ "$(ls /proc/$P/task)" = "$P" ] && echo "task is the process"
grep -q ' /usr/bin/sleep$' /proc/$P/maps && echo "maps names the program"
grep -q 'libc' /proc/$P/maps && echo "maps names libc"
grep -E '^(SigIgn|SigBlk|Threads)' /proc/self/status | cut -f1
ps -o comm= -p $$ | grep -qE '^(sh|dash)$' && echo 'ps names the shell'
ps -o comm= -p $P
lsof -p $P 2>/dev/null | awk '$4 == "txt" {print "lsof txt", $NF}'
kill $P
