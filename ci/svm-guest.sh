#!/usr/bin/env bash
# Run vkernel's KVM integration tests on a *standard* KVM (kvm-amd, SVM with
# nested paging) inside a QEMU TCG guest, so the VT-x/SVM code paths
# (TrapPath::Standard, lazy FPU through CR0.TS) run on machines whose own
# KVM is something else (our CI hosts: a PVM-derived software KVM).
#
# What it does:
#   1. installs Debian's qemu-system-x86, linux-image-amd64 and busybox-static
#      when something is missing (apt-get; needs root);
#   2. builds the KVM test binaries static (crt-static, glibc);
#   3. packs them with busybox and the kvm-amd module chain into an initramfs;
#   4. boots the installed Debian kernel under
#      `qemu-system-x86_64 -accel tcg -cpu EPYC,+svm,+npt`, whose /init loads
#      the modules, waits for /dev/kvm and runs the tests;
#   5. reads the results from the serial console and prints one line
#      `SVM-STAGE: N passed, M failed`; exits non-zero on any failure, a
#      skipped test, a missing /dev/kvm, a crash or a timeout (with the
#      guest's log shown).
#
# Usage: ci/svm-guest.sh [test-name-filter...]
#   Filters are passed to every test binary (libtest substring filters).
# Environment:
#   SVM_TESTS         test targets to run (default: core_kvm bad_input_kvm kick_kvm exitless_kvm
#                     fpu_kvm memstat_kvm smp_kvm fork_kvm park_kvm sched_kvm gdbstub_kvm, those
#                     that exist under tests/)
#   SVM_SCALE         VKERNEL_TEST_SCALE inside the guest (default 1: the
#                     full suite takes ~25 s of guest time on our CI hosts;
#                     use e.g. 0.01 on a slow machine)
#   SVM_TIMEOUT       seconds for the whole QEMU run (default 600)
#   SVM_TEST_TIMEOUT  seconds per test binary inside the guest (default 300)
#   SVM_EXPECT_FPU    FPU mode the guest's probe must pick (default Lazy:
#                     SVM honours CR0.TS; empty = don't check)
#   SVM_REPEAT        run the test binaries this many times (default 1)
#   SVM_CMDLINE_EXTRA more guest kernel parameters (e.g. loglevel=7)
#   SVM_SMP, SVM_MEM  guest CPUs (default 1: with 2, QEMU 7.2's multi-threaded
#                     TCG running nested SVM wedged the guest kernel in soft
#                     lockups on both CPUs in 2 of ~10 runs) and memory in MiB
#                     (default 2048)
#   SVM_WORKDIR       where the initramfs and the log go (default: a new
#                     directory under /tmp; kept)
#   SVM_NO_INSTALL=1  never run apt-get
#   SVM_QUIET=1       do not stream the guest console (it is still shown on
#                     failure)
#   CARGO_TARGET_DIR  as usual (the static build goes to <dir>/<host-triple>)
set -euo pipefail
cd "$(dirname "$0")/.."

t_start=$(date +%s)
now() { date +%s; }
say() { echo "== svm: $*"; }
die() {
    echo "SVM-STAGE: 0 passed, 1 failed"
    echo "FAIL: svm stage: $*" >&2
    exit 1
}

SVM_SCALE=${SVM_SCALE:-1}
SVM_TIMEOUT=${SVM_TIMEOUT:-600}
SVM_TEST_TIMEOUT=${SVM_TEST_TIMEOUT:-300}
SVM_EXPECT_FPU=${SVM_EXPECT_FPU-Lazy}
SVM_REPEAT=${SVM_REPEAT:-1}
SVM_SMP=${SVM_SMP:-1}
SVM_MEM=${SVM_MEM:-2048}
filters=("$@")

# ---------------------------------------------------------------- install
find_kernel() {
    # Newest /boot/vmlinuz-* whose modules include kvm-amd.
    local v k
    for k in $(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V -r); do
        v=${k#/boot/vmlinuz-}
        if [ -r "$k" ] && [ -f "/lib/modules/$v/modules.dep" ] &&
            grep -qE '(^|/)kvm-amd\.ko(\.[a-z]+)?:' "/lib/modules/$v/modules.dep"; then
            echo "$v"
            return 0
        fi
    done
    return 1
}

find_busybox() {
    local b
    for b in /bin/busybox /usr/bin/busybox; do
        if [ -x "$b" ] && file -L "$b" 2>/dev/null | grep -q 'statically linked'; then
            echo "$b"
            return 0
        fi
    done
    return 1
}

t0=$(now)
if ! command -v qemu-system-x86_64 >/dev/null || ! find_kernel >/dev/null ||
    ! command -v file >/dev/null || ! find_busybox >/dev/null; then
    if [ "${SVM_NO_INSTALL:-0}" = 1 ] || ! command -v apt-get >/dev/null; then
        die "qemu-system-x86_64, a Debian kernel with kvm-amd or busybox-static is missing (and no apt-get)"
    fi
    say "installing qemu-system-x86 linux-image-amd64 busybox-static"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || true
    apt-get install -y -qq --no-install-recommends \
        qemu-system-x86 linux-image-amd64 busybox-static file xz-utils zstd cpio >/dev/null ||
        die "apt-get install failed"
fi
t_install=$(($(now) - t0))
kver=$(find_kernel) || die "no /boot/vmlinuz-* with a kvm-amd module"
busybox=$(find_busybox) || die "no static busybox"
kernel=/boot/vmlinuz-$kver
moddir=/lib/modules/$kver
say "kernel $kernel, busybox $busybox, $(qemu-system-x86_64 --version | head -1)"

# ------------------------------------------------------------------ build
t0=$(now)
triple=$(rustc -vV | sed -n 's/^host: //p')
tests=()
for t in ${SVM_TESTS:-core_kvm bad_input_kvm fpu_kvm memstat_kvm smp_kvm fork_kvm park_kvm sched_kvm kick_kvm exitless_kvm gdbstub_kvm}; do
    if [ -f "tests/$t.rs" ]; then tests+=("$t"); else say "no tests/$t.rs, skipping it"; fi
done
[ ${#tests[@]} -gt 0 ] || die "no test targets to run"
test_args=()
for t in "${tests[@]}"; do test_args+=(--test "$t"); done
say "building ${tests[*]} static for $triple"
work=${SVM_WORKDIR:-$(mktemp -d /tmp/vkernel-svm.XXXXXX)}
mkdir -p "$work"
buildlog=$work/build.log
# --target keeps RUSTFLAGS (crt-static) off build scripts and proc macros.
if ! RUSTFLAGS="-C target-feature=+crt-static" cargo test --no-run --target "$triple" \
    "${test_args[@]}" --message-format=json >"$buildlog.json" 2>"$buildlog"; then
    # Show the compiler's messages in plain text.
    RUSTFLAGS="-C target-feature=+crt-static" cargo test --no-run --target "$triple" \
        "${test_args[@]}" 2>&1 | tail -n 60 || true
    die "static build of the test binaries failed"
fi
t_build=$(($(now) - t0))

# --------------------------------------------------------------- initramfs
root=$work/root
rm -rf "$root"
mkdir -p "$root"/{bin,dev,proc,sys,tmp,modules,tests}
cp "$busybox" "$root/bin/busybox"

for t in "${tests[@]}"; do
    # The artifact line of the test target `t` carries its executable.
    exe=$(grep '"reason":"compiler-artifact"' "$buildlog.json" |
        grep "\"kind\":\[\"test\"\],[^}]*\"name\":\"$t\"" |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
    [ -n "$exe" ] && [ -x "$exe" ] || die "cannot find the executable of test $t"
    file "$exe" | grep -qE 'static(-pie)? linked|statically linked' ||
        die "$exe is not statically linked: $(file "$exe")"
    # Debug info only makes the initramfs big; symbols stay for backtraces.
    objcopy --strip-debug "$exe" "$root/tests/$t"
done

# kvm-amd and what it needs, in load order (modules.dep lists the
# dependencies so that the last one must be loaded first).
depline=$(grep -E '(^|/)kvm-amd\.ko(\.[a-z]+)?:' "$moddir/modules.dep" | head -1)
mods=()
for m in $(echo "${depline#*:}" | tr ' ' '\n' | tac) "${depline%%:*}"; do
    [ -n "$m" ] && mods+=("$m")
done
: >"$root/modules/order"
for m in "${mods[@]}"; do
    src=$moddir/$m
    name=$(basename "$m")
    case "$name" in
    *.ko.xz) xz -dc "$src" >"$root/modules/${name%.xz}" ;;
    *.ko.zst) zstd -qdc "$src" >"$root/modules/${name%.zst}" ;;
    *.ko.gz) gzip -dc "$src" >"$root/modules/${name%.gz}" ;;
    *.ko) cp "$src" "$root/modules/$name" ;;
    *) die "unknown module format: $src" ;;
    esac
    echo "${name%.ko*}.ko" >>"$root/modules/order"
done
say "modules: $(tr '\n' ' ' <"$root/modules/order")"

filter_str=""
for f in "${filters[@]}"; do filter_str+=" '${f//\'/}'"; done
cat >"$root/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs tmp /tmp
echo "SVM-GUEST: up at \$(cut -d' ' -f1 /proc/uptime) s, \$(grep -c ^processor /proc/cpuinfo) cpus, svm flag: \$(grep -qw svm /proc/cpuinfo && echo yes || echo no)"
for m in \$(cat /modules/order); do
    insmod /modules/\$m || echo "SVM-GUEST: insmod \$m failed"
done
i=0
while [ ! -e /dev/kvm ] && [ \$i -lt 120 ]; do sleep 0.5; i=\$((i + 1)); done
dmesg | grep -iE 'kvm|svm|npt' | tail -n 20
if [ ! -e /dev/kvm ]; then
    echo "SVM-GUEST: NO-KVM: /dev/kvm never appeared"
    poweroff -f
fi
echo "SVM-GUEST: KVM-READY at \$(cut -d' ' -f1 /proc/uptime) s"
ls -l /dev/kvm
[ -e /sys/module/kvm_amd/parameters/npt ] && echo "SVM-GUEST: kvm_amd npt=\$(cat /sys/module/kvm_amd/parameters/npt)"
export VKERNEL_TEST_SCALE=$SVM_SCALE
# Tells the tests they run under QEMU TCG (known emulator deviations).
export VKERNEL_TEST_TCG=1
${SVM_RAM_BACKING:+export VKERNEL_RAM_BACKING=$SVM_RAM_BACKING}
export VKERNEL_SKIP_LOG=/tmp/skips
export RUST_BACKTRACE=1
for r in \$(seq $SVM_REPEAT); do
for t in /tests/*; do
    n=\$(basename \$t)
    echo "SVM-TEST-BEGIN \$n at \$(cut -d' ' -f1 /proc/uptime) s"
    { timeout $SVM_TEST_TIMEOUT \$t --test-threads=1 --nocapture$filter_str; echo \$? >/tmp/rc; } 2>&1 | tee /tmp/out
    # A binary that died (signal, timeout, panic outside a test) prints no
    # closing line of its own.
    grep -q '^test result:' /tmp/out || echo "SVM-TEST-NORESULT \$n"
    echo "SVM-TEST-END \$n rc=\$(cat /tmp/rc) at \$(cut -d' ' -f1 /proc/uptime) s"
done
done
if [ -s /tmp/skips ]; then
    echo "SVM-GUEST: SKIPS:"
    cat /tmp/skips
fi
echo "SVM-GUEST: DONE at \$(cut -d' ' -f1 /proc/uptime) s"
poweroff -f
EOF
chmod +x "$root/init"
initrd=$work/initramfs.cpio
(cd "$root" && find . -print | sort | cpio -o -H newc --quiet >"$initrd") ||
    die "cannot pack the initramfs"
say "initramfs $(du -h "$initrd" | cut -f1) in $work"

# -------------------------------------------------------------------- boot
log=$work/guest.log
say "booting (timeout ${SVM_TIMEOUT}s, log $log)"
t0=$(now)
qemu=(
    timeout --kill-after=10 "$SVM_TIMEOUT"
    qemu-system-x86_64 -accel tcg -cpu EPYC,+svm,+npt
    -smp "$SVM_SMP" -m "$SVM_MEM"
    -nographic -nodefaults -no-user-config -monitor none -serial stdio
    -no-reboot
    -kernel "$kernel" -initrd "$initrd"
    -append "console=ttyS0 panic=-1 loglevel=4 mitigations=off ${SVM_CMDLINE_EXTRA:-}"
)
set +e
if [ "${SVM_QUIET:-0}" = 1 ]; then
    "${qemu[@]}" </dev/null >"$log" 2>&1
    qrc=$?
else
    # (EPYC names features TCG lacks: one warning line each, not shown.)
    "${qemu[@]}" </dev/null 2>&1 | tr -d '\r' | tee "$log" |
        grep --line-buffered -v "TCG doesn't support requested feature"
    qrc=${PIPESTATUS[0]}
fi
set -e
tr -d '\r' <"$log" >"$log.tmp" && mv "$log.tmp" "$log"
t_guest=$(($(now) - t0))

# ----------------------------------------------------------------- verdict
show_log() {
    if [ "${SVM_QUIET:-0}" = 1 ]; then
        echo "---- guest log ($log) ----"
        cat "$log"
        echo "---- end of guest log ----"
    fi
}
ready=$(sed -n 's/^SVM-GUEST: KVM-READY at \([0-9.]*\) s.*/\1/p' "$log" | head -1)
passed=0
failed=0
problems=()
# libtest's closing line of each binary.
while read -r p f; do
    passed=$((passed + p))
    failed=$((failed + f))
done < <(sed -n 's/^test result: [A-Za-z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1 \2/p' "$log")
# A binary that died without its closing line counts as one failure.
noresult=$(grep -c '^SVM-TEST-NORESULT ' "$log" || true)
failed=$((failed + noresult))
for t in "${tests[@]}"; do
    ends=$(grep -cE "^SVM-TEST-END $t rc=" "$log" || true)
    if [ "$ends" -lt "$SVM_REPEAT" ]; then
        problems+=("$t never finished (hung or the guest died: see the end of the log)")
        # The run in progress has no closing line.
        failed=$((failed + 1))
    fi
    for rc in $(sed -n "s/^SVM-TEST-END $t rc=\([0-9]*\).*/\1/p" "$log"); do
        if [ "$rc" != 0 ]; then
            why=""
            [ "$rc" = 124 ] || [ "$rc" = 143 ] && why=" (timeout)"
            problems+=("$t exited with $rc$why")
        fi
    done
done
grep -q '^SVM-GUEST: NO-KVM' "$log" && problems+=("/dev/kvm never appeared in the guest")
[ -z "$ready" ] && ! grep -q '^SVM-GUEST: NO-KVM' "$log" && problems+=("the guest never got to /dev/kvm")
grep -q '^SVM-GUEST: SKIPS:' "$log" && problems+=("tests skipped inside the guest")
grep -q '^SVM-GUEST: DONE' "$log" || problems+=("the guest did not finish (qemu exit $qrc)")
[ $passed -gt 0 ] || problems+=("no test passed")
# The tests this stage exists for: say what the probe chose.
grep -oE 'trap path: .*|FPU mode on this host: .*' "$log" | sort -u | sed 's/^/== svm: guest saw: /' || true
# This stage exists to run the standard (VT-x/SVM) paths: insist on them.
# (Only for a full run: a filter may leave out the tests that print them.)
has_test() { [[ " ${tests[*]} " == *" $1 "* ]]; }
if [ ${#filters[@]} -eq 0 ] && has_test core_kvm && [ $passed -gt 0 ] &&
    ! grep -q 'trap path: Standard' "$log"; then
    problems+=("the probe did not pick TrapPath::Standard on kvm-amd (or the probe test did not run)")
fi
if [ ${#filters[@]} -eq 0 ] && has_test fpu_kvm && [ -n "$SVM_EXPECT_FPU" ] && [ $passed -gt 0 ] &&
    ! grep -q "FPU mode on this host: $SVM_EXPECT_FPU" "$log"; then
    problems+=("the FPU probe did not pick FpuMode::$SVM_EXPECT_FPU on kvm-amd (or the FPU test did not run)")
fi

t_total=$(($(now) - t_start))
boot_txt=${ready:-never}
say "timings: install ${t_install}s, build ${t_build}s, /dev/kvm at ${boot_txt}s of guest uptime, guest total ${t_guest}s, stage total ${t_total}s"
if [ ${#problems[@]} -gt 0 ] && [ $failed -eq 0 ]; then
    failed=1
fi
if [ $failed -gt 0 ] || [ ${#problems[@]} -gt 0 ]; then
    show_log
    for p in "${problems[@]}"; do echo "FAIL: svm stage: $p"; done
    # libtest's closing list of failed tests ("failures:" then indented names).
    awk '/^failures:$/{on=1; next} /^test result:/{on=0} on && /^    [A-Za-z0-9_:]+$/{print}' "$log" |
        sort -u | sed 's/^ */FAIL: svm stage: test /' || true
    echo "SVM-STAGE: $passed passed, $failed failed"
    exit 1
fi
echo "SVM-STAGE: $passed passed, $failed failed"
