#!/usr/bin/env bash
# End-to-end proof of Imp's guest side: boot a busybox root disk with Imp's init under QEMU
# microvm (TCG), reach its HTTP server over a TAP inside a network namespace this script
# creates, stop it gracefully through QMP and check the exit code it reports.
#
# Usage: sudo hack/boot-demo.sh
#
# Environment:
#   IMP_CACHE_DIR        kernel and initramfs cache (default $HOME/.cache/imp)
#   IMP_DEMO_KEEP=1      keep the work directory (console log, disk) and print its path
#   IMP_DEMO_ATTEMPTS    boots to try before giving up (default 3)
#   IMP_DEMO_READY_S     seconds to wait for IMP_READY before a boot counts as hung (default 60)
#   IMP_TSC_KHZ          the host TSC rate in kHz, when it cannot be found (see host_tsc_khz)
#
# Needs root (network namespaces, TAP), qemu-system-x86, busybox-static, tini, e2fsprogs,
# iproute2 and node (the QMP client). Exits non-zero on any failure; everything it created
# is removed on exit. No traffic leaves the namespace: it has no uplink and no route out.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
attempts=${IMP_DEMO_ATTEMPTS:-3}
ready_s=${IMP_DEMO_READY_S:-60}
# A boot that has printed nothing after this long is one of the hangs TCG shows at times.
silent_s=15
stop_s=30

netns="imp-demo-$$"
bridge=imp-br0
tap=imp-tap0
gateway=10.213.0.1
guest_ip=10.213.0.2
prefix=24
mac=52:54:00:d5:00:02

log() { echo "boot-demo: $*" >&2; }
die() { log "FAIL: $*"; exit 1; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
declare -A took
timed() { # NAME START_MS
    took[$1]=$(($(now_ms) - $2))
}

[[ $EUID -eq 0 ]] || die "needs root for network namespaces and TAP devices"
for tool in qemu-system-x86_64 ip busybox mkfs.ext4 node; do
    command -v "$tool" >/dev/null || die "$tool not found"
done

work=$(mktemp -d /tmp/imp-demo.XXXXXX)
qemu_pid=
cleanup() {
    local status=$?
    if [[ -n "$qemu_pid" ]] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill -KILL "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
    fi
    if ip netns list | grep -qw "$netns"; then
        ip -n "$netns" link del "$tap" 2>/dev/null || true
        ip -n "$netns" link del "$bridge" 2>/dev/null || true
        ip netns del "$netns"
    fi
    if [[ $status -ne 0 && -s "$work/console.log" ]]; then
        log "last console lines:"
        tail -n 25 "$work/console.log" >&2
    fi
    if [[ "${IMP_DEMO_KEEP:-}" == 1 ]]; then
        log "kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Under TCG the guest's TSC is the host's, so the host's rate is the guest's. Left to itself
# the guest calibrates against the emulated PIT, which fails on a busy host; the kernel then
# marks the TSC unusable and hangs before userspace. The host kernel already measured it.
host_tsc_khz() {
    if [[ -n "${IMP_TSC_KHZ:-}" ]]; then
        echo "$IMP_TSC_KHZ"
        return
    fi
    local mhz
    mhz=$(dmesg 2>/dev/null | sed -n \
        -e 's/.*tsc: Refined TSC clocksource calibration: \([0-9.]*\) MHz.*/\1/p' \
        -e 's/.*tsc: Detected \([0-9.]*\) MHz TSC.*/\1/p' \
        -e 's/.*tsc: Detected \([0-9.]*\) MHz processor.*/\1/p' | tail -n 1)
    # Without APERF/MPERF (as in most VMs) "cpu MHz" is the kernel's calibrated rate; with
    # them it is the current clock, which frequency scaling moves away from the TSC's.
    if [[ -z "$mhz" ]] && ! grep -qw aperfmperf /proc/cpuinfo \
        && grep -qw constant_tsc /proc/cpuinfo; then
        mhz=$(awk -F': *' '/^cpu MHz/ { print $2; exit }' /proc/cpuinfo)
    fi
    [[ -n "$mhz" ]] && awk -v mhz="$mhz" 'BEGIN { printf "%d\n", mhz * 1000 }'
}

# Sends QMP commands, one JSON object per argument, after the capabilities handshake.
qmp() { # SOCKET COMMAND...
    node -e '
        const net = require("net");
        const [socket, ...commands] = process.argv.slice(1);
        const queue = [JSON.stringify({ execute: "qmp_capabilities" }), ...commands];
        const conn = net.connect(socket);
        setTimeout(() => { console.error("qmp: no answer"); process.exit(1); }, 5000).unref();
        conn.on("error", (err) => { console.error(`qmp: ${err.message}`); process.exit(1); });
        let buffered = "";
        conn.on("data", (chunk) => {
            buffered += chunk;
            let end;
            while ((end = buffered.indexOf("\n")) >= 0) {
                const reply = JSON.parse(buffered.slice(0, end));
                buffered = buffered.slice(end + 1);
                if (reply.error) { console.error(`qmp: ${reply.error.desc}`); process.exit(1); }
                if (!reply.QMP && !("return" in reply)) continue; // an event
                if (queue.length) conn.write(queue.shift() + "\n"); else conn.end();
            }
        });' "$@"
}

# --- kernel, initramfs, root disk ----------------------------------------------------------

t=$(now_ms)
kernel_dir=$("$here/guest-kernel.sh" | tail -n 1)
timed kernel "$t"

t=$(now_ms)
initramfs=$("$here/build-initramfs.sh" "$kernel_dir" | tail -n 1)
timed initramfs "$t"

t=$(now_ms)
token="imp-demo-$$-$RANDOM"
rootfs="$work/rootfs"
mkdir -p "$rootfs"/{bin,etc,www/cgi-bin}
cp "$(command -v busybox)" "$rootfs/bin/busybox"
ln -s busybox "$rootfs/bin/sh"
echo "root:x:0:0:root:/root:/bin/sh" >"$rootfs/etc/passwd"
echo "root:x:0:" >"$rootfs/etc/group"
echo "$token" >"$rootfs/www/index.html"
# Shows what the init configured: hostname, DNS and the workload's environment.
cat >"$rootfs/www/cgi-bin/info" <<'EOF'
#!/bin/sh
echo "Content-Type: text/plain"
echo
echo "hostname=$(busybox hostname)"
echo "nameserver=$(busybox awk '$1 == "nameserver" { print $2; exit }' /etc/resolv.conf)"
echo "greeting=$DEMO_GREETING"
echo "uid=$(busybox id -u)"
EOF
chmod 0755 "$rootfs/www/cgi-bin/info"
cat >"$work/workload.sh" <<'EOF'
IMP_WORKDIR='/www'
IMP_USER='root'
IMP_STOP_SIGNAL='SIGTERM'
imp_env 'PATH=/bin'
imp_env 'DEMO_GREETING=it'\''s alive'
imp_arg 'busybox'
imp_arg 'httpd'
imp_arg '-f'
imp_arg '-p'
imp_arg '80'
imp_arg '-h'
imp_arg '/www'
EOF
disk=$("$here/make-rootdisk.sh" "$rootfs" "$work/root.img" 64M "$work/workload.sh" | tail -n 1)
timed rootdisk "$t"

# --- network namespace: bridge with the gateway address, one TAP for the VM ----------------

ip netns add "$netns"
ip -n "$netns" link set lo up
ip -n "$netns" link add "$bridge" type bridge
ip -n "$netns" addr add "$gateway/$prefix" dev "$bridge"
ip -n "$netns" link set "$bridge" up
ip -n "$netns" tuntap add dev "$tap" mode tap
ip -n "$netns" link set "$tap" master "$bridge"
ip -n "$netns" link set "$tap" up

# --- boot ------------------------------------------------------------------------------------

cmdline="console=ttyS0 panic=-1 root=/dev/vda rootfstype=ext4 rw"
tsc_khz=$(host_tsc_khz || true)
if [[ -n "$tsc_khz" ]]; then
    cmdline+=" tsc_early_khz=$tsc_khz tsc=reliable"
else
    log "host TSC rate unknown (set IMP_TSC_KHZ); boots may hang and be retried"
fi
cmdline+=" imp.ip=$guest_ip/$prefix imp.gw=$gateway imp.dns=$gateway imp.hostname=imp-demo"

console="$work/console.log"
qmp_socket="$work/qmp.sock"
qemu_args=(
    # microvm's default acpi=on is needed twice: the kernel finds the virtio-mmio devices
    # in ACPI (it has no virtio_mmio.device= support) and system_powerdown becomes an ACPI
    # power-button press through microvm's generic event device.
    -M microvm,acpi=on -accel tcg
    # -cpu max offers 5-level paging (la57); every emulated page walk then takes a level
    # more. Without it the boot measured about 0.15 s faster.
    -cpu max,la57=off -m 256 -smp 1
    -nodefaults -no-user-config -display none
    # A guest reboot or panic ends QEMU instead of starting the guest again.
    -no-reboot
    -kernel "$kernel_dir/vmlinuz" -initrd "$initramfs" -append "$cmdline"
    -drive "id=root,file=$disk,format=raw,if=none"
    -device virtio-blk-device,drive=root
    -netdev "tap,id=net0,ifname=$tap,script=no,downscript=no"
    -device "virtio-net-device,netdev=net0,mac=$mac"
    -serial "file:$console"
    -qmp "unix:$qmp_socket,server=on,wait=off"
)

# Starts QEMU and waits for IMP_READY. Returns 1 for a boot worth retrying, dies otherwise.
boot_once() {
    local start deadline first_output=
    rm -f "$console" "$qmp_socket"
    start=$(now_ms)
    # `ip netns exec` execs QEMU, so $! is QEMU's pid; the TAP is only visible in there.
    ip netns exec "$netns" qemu-system-x86_64 "${qemu_args[@]}" \
        </dev/null >"$work/qemu.out" 2>&1 &
    qemu_pid=$!
    deadline=$((start + ready_s * 1000))
    while :; do
        if grep -q '^IMP_READY' "$console" 2>/dev/null; then break; fi
        if grep -q 'IMP_ERROR' "$console" 2>/dev/null; then
            die "guest reported $(grep -o 'IMP_ERROR.*' "$console")"
        fi
        if ! kill -0 "$qemu_pid" 2>/dev/null; then
            cat "$work/qemu.out" >&2
            die "QEMU exited before the guest was ready"
        fi
        if [[ -z "$first_output" && -s "$console" ]]; then first_output=$(now_ms); fi
        if [[ -z "$first_output" && $(now_ms) -gt $((start + silent_s * 1000)) ]] \
            || [[ $(now_ms) -gt $deadline ]]; then
            log "boot hung (console: $(wc -c <"$console" 2>/dev/null || echo 0) bytes)"
            kill -KILL "$qemu_pid" 2>/dev/null || true
            wait "$qemu_pid" 2>/dev/null || true
            qemu_pid=
            return 1
        fi
        sleep 0.05
    done
    took[first_output]=$((${first_output:-$(now_ms)} - start))
    took[ready]=$(($(now_ms) - start))
    guest_uptime=$(sed -n 's/^IMP_READY .*uptime=\([0-9.]*\).*/\1/p' "$console")
    return 0
}

booted=
for attempt in $(seq 1 "$attempts"); do
    log "boot attempt $attempt/$attempts"
    if boot_once; then
        booted=1
        break
    fi
done
[[ -n "$booted" ]] || die "no boot reached IMP_READY in $attempts attempts"
log "guest ready: $(grep -o '^IMP_READY.*' "$console")"

# --- reach the guest from inside the namespace -----------------------------------------------

# Busybox's own wget -T crashes in Debian's static build; timeout(1) bounds each try instead.
fetch() { ip netns exec "$netns" timeout 5 busybox wget -qO- "http://$guest_ip$1"; }

# IMP_READY is printed just before the workload starts, so httpd may not be listening yet.
t=$(now_ms)
page=
for _ in $(seq 1 50); do
    if page=$(fetch / 2>/dev/null); then break; fi
    sleep 0.2
done
[[ "$page" == "$token" ]] || die "expected page '$token', got '$page'"
timed http "$t"
log "fetched http://$guest_ip/: $page"

info=$(fetch /cgi-bin/info) || die "cannot fetch /cgi-bin/info"
for expected in hostname=imp-demo "nameserver=$gateway" "greeting=it's alive" uid=0; do
    grep -qxF "$expected" <<<"$info" || die "guest info lacks '$expected': $info"
done
log "guest info: $(tr '\n' ' ' <<<"$info")"

# --- graceful shutdown -----------------------------------------------------------------------

t=$(now_ms)
qmp "$qmp_socket" '{"execute":"system_powerdown"}' || die "QMP system_powerdown failed"
exited=
for _ in $(seq 1 $((stop_s * 20))); do
    if ! kill -0 "$qemu_pid" 2>/dev/null; then
        exited=1
        break
    fi
    sleep 0.05
done
if [[ -z "$exited" ]]; then
    kill -KILL "$qemu_pid" 2>/dev/null || true
    die "QEMU still running ${stop_s}s after system_powerdown; killed it"
fi
wait "$qemu_pid" || die "QEMU exited with status $?"
qemu_pid=
timed shutdown "$t"

grep -q '^IMP_STOPPING signal=TERM' "$console" || die "guest did not pass SIGTERM on"
exit_line=$(grep -o '^IMP_EXIT code=[0-9]*' "$console") || die "no IMP_EXIT line on the console"
# busybox httpd has no SIGTERM handler, so it dies of the signal: 128 + 15.
[[ "$exit_line" == "IMP_EXIT code=143" ]] || die "expected IMP_EXIT code=143, got '$exit_line'"
log "guest reported: $exit_line"

cat <<EOF
boot-demo: PASS (attempts: $attempt)
  kernel fetch/cache      ${took[kernel]} ms
  initramfs build/cache   ${took[initramfs]} ms
  rootfs + root disk      ${took[rootdisk]} ms
  QEMU start -> console   ${took[first_output]} ms
  QEMU start -> IMP_READY ${took[ready]} ms (guest uptime ${guest_uptime} s)
  first HTTP response     ${took[http]} ms after IMP_READY
  powerdown -> QEMU exit  ${took[shutdown]} ms
EOF
