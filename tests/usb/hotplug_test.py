"""kysod's USB hotplug test, on emulated devices (umockdev) bound to SoftHSM2 tokens.

    umockdev-wrapper /usr/bin/python3 tests/usb/hotplug_test.py

Builds nothing: expects target/debug/{kysod,kyso,libkyso_pkcs11.so} (cargo build --workspace).
Emulated ePass2003 (096e:0807) and eToken (0529:0620) devices carry the serials of the two
SoftHSM2 fixture tokens; kysod's config maps both models to SoftHSM2, so kysod binds each device
to its real token. kysod runs as this process's child and inherits the umockdev preload.
Latencies are measured from the emulated insertion/removal to kysod's "token present"/
"token removed" log line reaching this process. CYCLES (default 100) sets the soak length.
Last, kysod with `[pin] share_login_seconds` and a scripted pinentry: applications
(pkcs11-tool) join one login without a prompt until the token is pulled out.
Prints `N passed, N failed`; exits non-zero on any failure.
"""

import ctypes
import json
import os
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from usbbed import UsbBed  # noqa: E402

TARGET = os.path.join(ROOT, "target", "debug")
KYSOD = os.path.join(TARGET, "kysod")
KYSO = os.path.join(TARGET, "kyso")
SHIM = os.path.join(TARGET, "libkyso_pkcs11.so")
CLIENT = os.path.join(TARGET, "kyso-test-client")
CYCLES = int(os.environ.get("CYCLES", "100"))
IDLE_SECONDS = int(os.environ.get("IDLE_SECONDS", "10"))
SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"
EPASS, ETOKEN, UNKNOWN = (0x096E, 0x0807), (0x0529, 0x0620), (0x1234, 0x5678)
CKR_DEVICE_REMOVED, CKR_NO_EVENT = 0x32, 0x8
EVENT = re.compile(r"token (present|removed) slot=(\d+) serial=(\S+)")
PLUGGED = re.compile(r'token device plugged usb=(\S+) .*serial="?([^"\s]*)')

passed, failed = 0, 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok      {name}")
    else:
        failed += 1
        print(f"FAILED  {name} {detail}")
    sys.stdout.flush()


class Kysod:
    """kysod as a child; its log lines are read by a thread and stamped on arrival."""

    def __init__(self, config, env):
        self.proc = subprocess.Popen([KYSOD, "--config", config], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        self.log = []
        self.plugged = []  # (usb id, USB serial as kysod read it)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            now = time.monotonic()
            self.log.append(line)
            if os.environ.get("V"):
                print("  kysod:", line.rstrip())
            m = PLUGGED.search(line)
            if m:
                self.plugged.append((m.group(1), m.group(2)))
            m = EVENT.search(line)
            if m:
                self.lines.put((now, m.group(1), int(m.group(2)), m.group(3)))
            elif "kysod ready" in line:
                self.lines.put((now, "ready", 0, ""))

    def expect(self, kind, serial=None, timeout=2.0):
        """The next event of `kind` (for `serial`): (time, slot), or None on timeout."""
        end = time.monotonic() + timeout
        while True:
            try:
                t, k, slot, s = self.lines.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                return None
            if k == kind and (serial is None or s == serial):
                return t, slot

    def quiet(self, seconds):
        """Events seen within `seconds` (expected: none)."""
        time.sleep(seconds)
        seen = []
        while not self.lines.empty():
            seen.append(self.lines.get())
        return seen

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def cpu_ticks(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


def status(env):
    out = subprocess.run([KYSO, "status", "--json"], env=env, capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        return None
    return {t["serial"]: t for t in json.loads(out.stdout)}


def present(env):
    s = status(env) or {}
    return {serial for serial, t in s.items() if t["present"]}


class Shim:
    """The kyso PKCS#11 module loaded here, to hold a session across a removal."""

    def __init__(self):
        self.lib = ctypes.CDLL(SHIM)
        for name in ("C_Initialize", "C_Finalize", "C_OpenSession", "C_GetSessionInfo", "C_WaitForSlotEvent"):
            getattr(self.lib, name).restype = ctypes.c_ulong
        rv = self.lib.C_Initialize(None)
        if rv != 0:
            raise RuntimeError(f"C_Initialize: 0x{rv:x}")

    def open_session(self, slot):
        handle = ctypes.c_ulong(0)
        rv = self.lib.C_OpenSession(ctypes.c_ulong(slot), ctypes.c_ulong(4), None, None, ctypes.byref(handle))
        return rv, handle.value

    def session_info(self, handle):
        info = ctypes.create_string_buffer(64)
        return self.lib.C_GetSessionInfo(ctypes.c_ulong(handle), info)

    def drain(self):
        """Consumes pending slot events (CKF_DONT_BLOCK until CKR_NO_EVENT)."""
        slot = ctypes.c_ulong(0)
        for _ in range(100):
            if self.lib.C_WaitForSlotEvent(ctypes.c_ulong(1), ctypes.byref(slot), None) == CKR_NO_EVENT:
                return True
        return False

    def waiter(self):
        """Starts a blocking C_WaitForSlotEvent in a thread; join it, then read .result."""
        w = threading.Thread(target=self._wait, args=(), daemon=True)
        w.result = None
        self._current = w
        w.start()
        time.sleep(0.02)  # let it block in kysod
        return w

    def _wait(self):
        me = threading.current_thread()
        slot = ctypes.c_ulong(0)
        rv = self.lib.C_WaitForSlotEvent(ctypes.c_ulong(0), ctypes.byref(slot), None)
        me.result = (time.monotonic(), rv, slot.value)

    def close(self):
        self.lib.C_Finalize(None)


# A second application: loads the shim, waits (blocking) for one slot event, prints rv and slot.
OTHER_APPLICATION = """
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
for f in ("C_Initialize", "C_WaitForSlotEvent", "C_Finalize"):
    getattr(lib, f).restype = ctypes.c_ulong
assert lib.C_Initialize(None) == 0
slot = ctypes.c_ulong(0)
rv = lib.C_WaitForSlotEvent(ctypes.c_ulong(0), ctypes.byref(slot), None)
print(rv, slot.value, flush=True)
lib.C_Finalize(None)
"""


def lines_of(proc):
    """A queue receiving `proc`'s stdout lines (read by a thread)."""
    lines = queue.Queue()

    def read():
        for line in proc.stdout:
            lines.put(line.strip())
    threading.Thread(target=read, daemon=True).start()
    return lines


def next_line(lines, timeout):
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return None


def two_tokens(work):
    """The two SoftHSM2 fixture tokens in WORK/fixture and a kysod configuration binding an
    emulated ePass2003 (096e:0807) and eToken (0529:0620) to SoftHSM2: returns the fixture's
    values (fixture.env), the configuration's path and the socket's."""
    fixture = os.path.join(work, "fixture")
    subprocess.run([os.path.join(ROOT, "tests", "fixtures", "softhsm-token.sh"), fixture, "--second"],
                   check=True, stdout=subprocess.DEVNULL)
    values = {"FIXTURE": fixture}
    with open(os.path.join(fixture, "fixture.env")) as f:
        for line in f:
            k, _, v = line.strip().partition("=")
            values[k] = v.strip('"')
    socket_path = os.path.join(work, "kysod.sock")
    config = os.path.join(work, "kysod.toml")
    with open(config, "w") as f:
        f.write(f'socket = "{socket_path}"\nstate_dir = "{work}/state"\nlog = "info"\n\n'
                f'[[token]]\nname = "Test ePass2003"\nusb = ["096e:0807"]\nmodule = "{SOFTHSM}"\n\n'
                f'[[token]]\nname = "Test eToken"\nusb = ["0529:0620"]\nmodule = "{SOFTHSM}"\n')
    return values, config, socket_path


# A pinentry for kysod that answers every GETPIN with the PIN in argv[1] and counts the
# prompts in argv[2] (one line each).
SCRIPTED_PINENTRY = """#!/usr/bin/python3
import sys
pin, count = sys.argv[1], sys.argv[2]
print("OK pleased", flush=True)
for line in sys.stdin:
    if line.startswith("GETPIN"):
        with open(count, "a") as f:
            f.write("GETPIN\\n")
        print("D " + pin, flush=True)
    if line.startswith("BYE"):
        print("OK", flush=True)
        break
    print("OK", flush=True)
"""


def shared_login_ends_with_the_token(work, values, config, env, bed):
    """With `[pin] share_login_seconds`, the user's applications join one login without a
    prompt; pulling the token out ends that login, so the next application is asked again."""
    serial_a, label_a = values["SERIAL_A"], values["LABEL_A"]
    count = os.path.join(work, "prompts")
    wrapper = os.path.join(work, "pinentry-scripted")
    with open(os.path.join(work, "pinentry.py"), "w") as f:
        f.write(SCRIPTED_PINENTRY)
    with open(wrapper, "w") as f:
        f.write(f"#!/bin/sh\nexec /usr/bin/python3 {work}/pinentry.py {values['USER_PIN']} {count}\n")
    os.chmod(wrapper, 0o755)
    shared = os.path.join(work, "kysod-shared.toml")
    with open(config) as f:
        text = f.read()
    with open(shared, "w") as f:
        f.write(f'pinentry = "{wrapper}"\n{text}\n[pin]\nshare_login_seconds = 300\n')

    def prompts():
        try:
            with open(count) as f:
                return len(f.readlines())
        except FileNotFoundError:
            return 0

    def application():
        """pkcs11-tool logging in with a NULL PIN (protected authentication path) and
        listing the private keys it then sees."""
        out = subprocess.run(["pkcs11-tool", "--module", SHIM, "--token-label", label_a, "--login",
                              "--list-objects", "--type", "privkey"],
                             env=env, capture_output=True, text=True, timeout=30)
        return out.returncode == 0 and "Private Key Object" in out.stdout

    kysod = Kysod(shared, env)
    try:
        kysod.expect("ready", timeout=10)
        dev = bed.insert(*EPASS, serial_a, addr=2, port=1)
        check("shared login: token A present", kysod.expect("present", serial_a) is not None)
        check("shared login: the first application is asked for the PIN and logs in",
              application() and prompts() == 1, f"prompts={prompts()}")
        check("shared login: a second application joins without a prompt",
              application() and prompts() == 1, f"prompts={prompts()}")
        bed.remove(dev)
        kysod.expect("removed", serial_a)
        dev = bed.insert(*EPASS, serial_a, addr=2, port=1)
        kysod.expect("present", serial_a)
        check("shared login: after the token was pulled out and put back, the next application "
              "is asked again", application() and prompts() == 2, f"prompts={prompts()}")
        bed.remove(dev)
        kysod.expect("removed", serial_a)
        check("shared login: kysod never panicked", not any("panicked" in line for line in kysod.log))
    finally:
        kysod.stop()


def summary(xs):
    return f"median {statistics.median(xs):.1f} ms, max {max(xs):.1f} ms (n={len(xs)})"


def main():
    for path in (KYSOD, KYSO, SHIM, CLIENT):
        if not os.path.exists(path):
            raise SystemExit(f"{path} missing: cargo build --workspace first")
    work = tempfile.mkdtemp(prefix="kyso-hotplug-")
    values, config, socket_path = two_tokens(work)
    serial_a, serial_b = values["SERIAL_A"], values["SERIAL_B"]
    env = dict(os.environ, SOFTHSM2_CONF=values["SOFTHSM2_CONF"], KYSO_SOCKET=socket_path)
    env["RUST_LOG"] = os.environ.get("KYSOD_LOG", "info")
    os.environ["KYSO_SOCKET"] = socket_path

    bed = UsbBed()
    # The test bed's directory is set in the C environment; Python's os.environ predates it.
    env["UMOCKDEV_DIR"] = bed.root
    kysod = Kysod(config, env)
    shim = None
    try:
        check("kysod starts", kysod.expect("ready", timeout=10) is not None)
        check("no token present before insertion", present(env) == set(), str(status(env)))

        t0 = time.monotonic()
        dev_a = bed.insert(*EPASS, serial_a, addr=2, port=1, manufacturer="FT", product="ePass2003")
        got = kysod.expect("present", serial_a)
        check("ePass2003 with SERIAL_A: token A present within 2 s", got is not None)
        slot_a = got[1] if got else None
        if got:
            print(f"        first insertion -> present {1000 * (got[0] - t0):.1f} ms (loads the module)")
        check("kyso status shows A present", present(env) == {serial_a}, str(status(env)))

        dev_b = bed.insert(*ETOKEN, serial_b, addr=3, port=2, manufacturer="SafeNet", product="eToken 5110")
        got = kysod.expect("present", serial_b)
        check("eToken with SERIAL_B: both present", got is not None and present(env) == {serial_a, serial_b},
              str(status(env)))
        slot_b = got[1] if got else None
        check("the two tokens have different slot ids", slot_a is not None and slot_a != slot_b)
        check("kysod read both devices' USB serials (binding by serial, not slot order)",
              kysod.plugged[:2] == [("096e:0807", serial_a), ("0529:0620", serial_b)], str(kysod.plugged))

        bed.remove(dev_b)
        check("eToken removed: B absent", kysod.expect("removed", serial_b) is not None
              and present(env) == {serial_a})
        dev_x = bed.insert(*UNKNOWN, serial_b, addr=4, port=3, manufacturer="Other", product="Mouse")
        seen = kysod.quiet(0.5)
        check("unknown device 1234:5678 (carrying SERIAL_B) ignored",
              seen == [] and present(env) == {serial_a}, str(seen))
        bed.remove(dev_x)

        shim = Shim()
        rv, session = shim.open_session(slot_a)
        check("session opened on A", rv == 0, f"rv=0x{rv:x}")
        check("session info before removal", shim.session_info(session) == 0)
        check("C_WaitForSlotEvent(CKF_DONT_BLOCK) drains to CKR_NO_EVENT", shim.drain())

        waiter = shim.waiter()
        t0 = time.monotonic()
        bed.remove(dev_a)
        waiter.join(2)
        r = waiter.result
        check("C_WaitForSlotEvent wakes on removal with A's slot", r is not None and r[1:] == (0, slot_a), str(r))
        if r:
            print(f"        removal -> C_WaitForSlotEvent returned {1000 * (r[0] - t0):.1f} ms")
        got = kysod.expect("removed", serial_a)
        check("ePass2003 removed: A absent", got is not None and present(env) == set(), str(status(env)))
        s = status(env) or {}
        check("A's slot id kept while absent", s.get(serial_a, {}).get("slot") == slot_a, str(s))
        rv = shim.session_info(session)
        check("open session on A gets CKR_DEVICE_REMOVED", rv == CKR_DEVICE_REMOVED, f"rv=0x{rv:x}")

        shim.drain()
        waiter = shim.waiter()
        t0 = time.monotonic()
        dev_a = bed.insert(*EPASS, serial_a, addr=2, port=1)
        waiter.join(2)
        r = waiter.result
        check("C_WaitForSlotEvent wakes on insertion with A's slot", r is not None and r[1:] == (0, slot_a), str(r))
        got = kysod.expect("present", serial_a)
        check("re-inserted A: same slot id", got is not None and got[1] == slot_a, str(got))
        rv = shim.session_info(session)
        check("the old session stays dead after re-insertion", rv != 0, f"rv=0x{rv:x}")
        shim.close()
        shim = None

        kysod.stop()
        kysod = Kysod(config, env)
        got = kysod.expect("present", serial_a, timeout=10)
        check("kysod restarted with A plugged: A present, same slot id", got is not None and got[1] == slot_a,
              str(got))
        kysod.expect("ready", timeout=10)
        check("after restart kyso status shows A", present(env) == {serial_a}, str(status(env)))

        # A token pulled out in the middle of signing: the call in flight fails at once.
        signer = subprocess.Popen([CLIENT, "signloop", serial_a, "123456"], env=env,
                                  stdout=subprocess.PIPE, text=True)
        said = lines_of(signer)
        first = next_line(said, 20)
        check("an application signs on A in a loop", first == "signing", repr(first))
        t0 = time.monotonic()
        bed.remove(dev_a)
        line = next_line(said, 5)
        took = time.monotonic() - t0
        removal_errors = ("DeviceRemoved", "SessionHandleInvalid", "TokenNotPresent", "DeviceError", "SessionClosed")
        check("a signature in flight when A is pulled out fails at once with a removal error",
              line is not None and line.split()[1] in removal_errors and took < 2,
              f"{line!r} {1000 * took:.0f} ms after the removal")
        if line:
            print(f"        removal mid-signature -> {line.split()[1]} after {1000 * took:.0f} ms")
        kysod.expect("removed", serial_a)
        try:
            signer.wait(timeout=5)
        except subprocess.TimeoutExpired:
            signer.kill()
        dev_a = bed.insert(*EPASS, serial_a, addr=2, port=1)
        check("A back after the mid-signature removal", kysod.expect("present", serial_a) is not None)

        bed.remove(dev_a)
        kysod.expect("removed", serial_a)
        # Warm up (allocator arenas, the module's first re-read), then soak.
        for _ in range(3):
            dev_a = bed.insert(*EPASS, serial_a, addr=2, port=1)
            kysod.expect("present", serial_a)
            bed.remove(dev_a)
            kysod.expect("removed", serial_a)
        # Soak: device cycles alone (no client connections, which the shim pools), for the
        # fd and memory figures, then cycles with a client blocked in C_WaitForSlotEvent.
        fds0, rss0 = kysod.fds(), kysod.rss_kib()
        adds, removes, misses = [], [], 0
        for _ in range(CYCLES):
            t0 = time.monotonic()
            dev_a = bed.insert(*EPASS, serial_a, addr=2, port=1)
            got = kysod.expect("present", serial_a)
            if got is None or got[1] != slot_a:
                misses += 1
            else:
                adds.append(1000 * (got[0] - t0))
            t0 = time.monotonic()
            bed.remove(dev_a)
            got = kysod.expect("removed", serial_a)
            if got is None:
                misses += 1
            else:
                removes.append(1000 * (got[0] - t0))
        fds1, rss1 = kysod.fds(), kysod.rss_kib()
        check(f"{CYCLES} insert/remove cycles all seen, same slot id", misses == 0, f"misses={misses}")
        check(f"fd count flat over {CYCLES} cycles ({fds0} -> {fds1})", abs(fds1 - fds0) <= 2)
        check(f"RSS growth < 2 MiB over {CYCLES} cycles ({rss0} -> {rss1} KiB)", rss1 - rss0 < 2048)

        shim = Shim()
        shim.drain()
        wakes, leaves, misses = [], [], 0
        fds_waiting = None
        for cycle in range(CYCLES):
            if cycle == 5:
                fds_waiting = kysod.fds()
            waiter = shim.waiter()
            t0 = time.monotonic()
            dev_a = bed.insert(*EPASS, serial_a, addr=2, port=1)
            waiter.join(2)
            r = waiter.result
            if r is None or r[1:] != (0, slot_a):
                misses += 1
            else:
                wakes.append(1000 * (r[0] - t0))
            kysod.expect("present", serial_a)
            waiter = shim.waiter()
            t0 = time.monotonic()
            bed.remove(dev_a)
            waiter.join(2)
            r = waiter.result
            if r is None or r[1:] != (0, slot_a):
                misses += 1
            else:
                leaves.append(1000 * (r[0] - t0))
            kysod.expect("removed", serial_a)
        fds_after_waits = kysod.fds()
        shim.close()
        shim = None
        check(f"C_WaitForSlotEvent woke on every insertion and removal of {CYCLES} cycles", misses == 0,
              f"misses={misses}")
        # Each wait uses a pooled connection: a client that waits again and again does not
        # make kysod hold more and more connections.
        check(f"fd count flat while a client waits {2 * CYCLES} times ({fds_waiting} -> {fds_after_waits})",
              fds_waiting is not None and abs(fds_after_waits - fds_waiting) <= 2)
        # Several applications wait at once; a thread blocked in C_WaitForSlotEvent does not
        # hold up its application's other calls; C_Finalize wakes a waiting thread.
        shim = Shim()
        shim.drain()
        other = subprocess.Popen(["/usr/bin/python3", "-c", OTHER_APPLICATION, SHIM], env=env,
                                 stdout=subprocess.PIPE, text=True)
        waiter = shim.waiter()
        time.sleep(0.3)  # both applications are now blocked in kysod (which knows A, absent)
        count = ctypes.c_ulong(0)
        shim.lib.C_GetSlotList.restype = ctypes.c_ulong
        t0 = time.monotonic()
        rv = shim.lib.C_GetSlotList(ctypes.c_ubyte(0), None, ctypes.byref(count))
        quick = time.monotonic() - t0
        check("a thread waiting for a slot event does not hold up its application's other calls",
              rv == 0 and count.value >= 1 and quick < 0.5, f"rv=0x{rv:x} count={count.value} {1000 * quick:.0f} ms")
        dev_a = bed.insert(*EPASS, serial_a, addr=2, port=1)
        waiter.join(2)
        try:
            out, _ = other.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            other.kill()
            out = ""
        check("two applications waiting at once both wake on an insertion",
              waiter.result is not None and waiter.result[1:] == (0, slot_a) and out.split() == ["0", str(slot_a)],
              f"{waiter.result} / {out!r}")
        kysod.expect("present", serial_a)
        bed.remove(dev_a)
        kysod.expect("removed", serial_a)
        shim.drain()
        waiter = shim.waiter()
        t0 = time.monotonic()
        shim.close()
        waiter.join(2)
        r = waiter.result
        check("C_Finalize wakes a waiting thread with CKR_CRYPTOKI_NOT_INITIALIZED",
              r is not None and r[1] == 0x190 and r[0] - t0 < 1.0, str(r))
        shim = None

        if adds and removes:
            print(f"        insertion -> token present (log):        {summary(adds)}")
            print(f"        removal -> token absent (log):           {summary(removes)}")
        if wakes and leaves:
            print(f"        insertion -> C_WaitForSlotEvent returns: {summary(wakes)}")
            print(f"        removal -> C_WaitForSlotEvent returns:   {summary(leaves)}")
        ticks0 = kysod.cpu_ticks()
        time.sleep(IDLE_SECONDS)
        idle = (kysod.cpu_ticks() - ticks0) / os.sysconf("SC_CLK_TCK")
        print(f"        kysod idle CPU over {IDLE_SECONDS} s: {1000 * idle:.0f} ms")
        check("idle kysod uses (almost) no CPU", idle <= 0.05 * IDLE_SECONDS / 10, f"{idle:.3f} s")
        check("kysod still running", kysod.proc.poll() is None)
        check("kysod never panicked", not any("panicked" in line for line in kysod.log))
        kysod.stop()
        shared_login_ends_with_the_token(work, values, config, env, bed)
    finally:
        if shim is not None:
            shim.close()
        kysod.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
