"""kyso's soak: 8 applications sign for SECONDS while tokens come and go, applications are
killed and restarted, and kysod is killed and restarted once.

    umockdev-wrapper /usr/bin/python3 tests/usb/soak.py [SECONDS]     (default 600)

`tests/soak/run` builds and runs it. Builds nothing itself: expects target/debug/{kysod,kyso,
libkyso_pkcs11.so,kyso-test-client}. Two emulated USB tokens (ePass2003 and eToken, bound to
the two SoftHSM2 fixture tokens) each serve four `kyso-test-client soak` processes, which
sign in a loop, verify every signature with the public key (openssl), disconnect at random
and flag any call slower than their per-operation deadline as a hang.

Faults, on a seeded schedule (SOAK_SEED): a token removed and re-inserted every 3-8 s; an
application SIGKILLed and replaced every ~10 s; kysod SIGKILLed and restarted once, early
(before the measurement window starts). kysod's RSS and descriptor count are sampled every
2 s: the samples of the window after the first minute (a third of the run when shorter) are
the baseline, the last window's must not exceed them by more than a small fixed slack, and
once the applications are gone the descriptor count must be back to the idle count.

Asserts zero wrong signatures, zero hangs, progress on both tokens, no growth. Prints the
figures and `N passed, N failed`; exits non-zero on any failure.
"""

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import hotplug_test as hp  # noqa: E402
from usbbed import UsbBed  # noqa: E402

CLIENT = hp.CLIENT
CLIENTS_PER_TOKEN = 4
USER_PIN = "123456"
SAMPLE_EVERY = 2.0
FD_SLACK = 16  # each application holds a few pooled connections, and they come and go
RSS_SLACK_KIB = 8 * 1024
SILENCE_LIMIT = 45.0  # an application saying nothing this long is hung


class Application:
    """One `kyso-test-client soak` process; its last stats line is kept."""

    def __init__(self, env, serial, pubkey, seconds, seed):
        self.proc = subprocess.Popen([CLIENT, "soak", serial, USER_PIN, pubkey, str(seconds), str(seed)],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.serial = serial
        self.stats = {"ok": 0, "wrong": 0, "errors": 0, "reconnects": 0}
        self.hung = False
        self.wrong_lines = []
        self.last_output = time.monotonic()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.last_output = time.monotonic()
            if line.startswith("stats "):
                self.stats = {k: int(v) for k, v in (f.split("=") for f in line.split()[1:])}
            elif line.startswith("HANG"):
                self.hung = True
            elif line.startswith("WRONG"):
                self.wrong_lines.append(line.strip())

    def kill(self):
        self.proc.kill()
        self.proc.wait()


def main():
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("SOAK_SECONDS", "600"))
    seed = int(os.environ.get("SOAK_SEED", "7"))
    rng = random.Random(seed)
    for path in (hp.KYSOD, hp.KYSO, hp.SHIM, CLIENT):
        if not os.path.exists(path):
            raise SystemExit(f"{path} missing: cargo build --workspace first")
    warmup = min(60.0, seconds / 3)
    window = max(10.0, min(60.0, seconds / 6))
    restart_at = warmup / 2

    work = tempfile.mkdtemp(prefix="kyso-soak-")
    values, config, socket_path = hp.two_tokens(work)
    fixture = values["FIXTURE"]
    serial_a, serial_b = values["SERIAL_A"], values["SERIAL_B"]
    pub_b = os.path.join(work, "pub-b.pem")
    subprocess.run(["openssl", "x509", "-pubkey", "-noout", "-in", os.path.join(fixture, "cert-b-01.pem"),
                    "-out", pub_b], check=True)
    pubkeys = {serial_a: os.path.join(fixture, "pub-01.pem"), serial_b: pub_b}
    env = dict(os.environ, SOFTHSM2_CONF=values["SOFTHSM2_CONF"], KYSO_SOCKET=socket_path, RUST_LOG="info")

    bed = UsbBed()
    env["UMOCKDEV_DIR"] = bed.root
    models = {serial_a: (hp.EPASS, 2, 1), serial_b: (hp.ETOKEN, 3, 2)}

    def plug(serial):
        (vid, pid), addr, port = models[serial]
        return bed.insert(vid, pid, serial, addr=addr, port=port)

    kysod = hp.Kysod(config, env)
    apps, finished = [], []
    earlier_log = []
    counts = {"kills": 0, "removals": 0, "restarts": 0, "slow_removals": 0}
    try:
        hp.check("kysod starts", kysod.expect("ready", timeout=10) is not None)
        devices = {}
        for serial in (serial_a, serial_b):
            devices[serial] = plug(serial)
            hp.check(f"token {serial} present", kysod.expect("present", serial, timeout=5) is not None)
        idle_fds = kysod.fds()

        start = time.monotonic()
        end = start + seconds
        next_seed = seed * 1000
        for serial in (serial_a, serial_b):
            for _ in range(CLIENTS_PER_TOKEN):
                next_seed += 1
                apps.append(Application(env, serial, pubkeys[serial], seconds, next_seed))

        samples = []  # (t, fds, rss KiB)
        next_sample = start
        next_removal = start + rng.uniform(3, 8)
        next_kill = start + rng.uniform(5, 15)
        restarted = False
        while time.monotonic() < end:
            now = time.monotonic()
            if not restarted and now - start >= restart_at:
                earlier_log = kysod.log
                kysod.proc.kill()
                kysod.proc.wait()
                kysod = hp.Kysod(config, env)
                kysod.expect("ready", timeout=10)
                restarted = True
                counts["restarts"] += 1
            if now >= next_removal and now < end - 5:
                serial = rng.choice((serial_a, serial_b))
                bed.remove(devices[serial])
                if kysod.expect("removed", serial, timeout=5) is None:
                    counts["slow_removals"] += 1
                time.sleep(rng.uniform(0.3, 2.0))
                devices[serial] = plug(serial)
                kysod.expect("present", serial, timeout=5)
                counts["removals"] += 1
                next_removal = time.monotonic() + rng.uniform(3, 8)
            if now >= next_kill and now < end - 10:
                victim = rng.randrange(len(apps))
                old = apps[victim]
                old.kill()
                finished.append(old)
                next_seed += 1
                apps[victim] = Application(env, old.serial, pubkeys[old.serial], int(end - time.monotonic()),
                                           next_seed)
                counts["kills"] += 1
                next_kill = time.monotonic() + rng.uniform(5, 15)
            if now >= next_sample:
                samples.append((now - start, kysod.fds(), kysod.rss_kib()))
                next_sample += SAMPLE_EVERY
            for app in apps:
                if app.proc.poll() is None and time.monotonic() - app.last_output > SILENCE_LIMIT:
                    app.hung = True
            time.sleep(0.05)

        for app in apps:
            try:
                app.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                app.hung = True
                app.kill()
        time.sleep(1.0)
        fds_after = kysod.fds()
        everyone = finished + apps
        total = {k: sum(a.stats[k] for a in everyone) for k in ("ok", "wrong", "errors", "reconnects")}
        hangs = sum(1 for a in everyone if a.hung)
        # A killed application's last stats line may predate a WRONG line it printed.
        wrong = max(total["wrong"], sum(len(a.wrong_lines) for a in everyone))
        per_token = {s: sum(a.stats["ok"] for a in everyone if a.serial == s) for s in (serial_a, serial_b)}
        clean_exits = sum(1 for a in apps if a.proc.returncode == 0)

        base = [s for s in samples if warmup <= s[0] < warmup + window]
        last = [s for s in samples if s[0] >= seconds - window]
        print(f"        {seconds} s, {len(everyone)} application processes ({counts['kills']} killed and replaced), "
              f"{counts['removals']} token removals, {counts['restarts']} kysod restart")
        print(f"        signatures verified: {total['ok']} (token A {per_token[serial_a]}, token B "
              f"{per_token[serial_b]}); wrong: {wrong}; errors seen by applications: {total['errors']}; "
              f"random disconnects: {total['reconnects']}; hangs: {hangs}")
        if base and last:
            b_fd, l_fd = max(s[1] for s in base), max(s[1] for s in last)
            b_rss, l_rss = max(s[2] for s in base), max(s[2] for s in last)
            print(f"        kysod fds: idle {idle_fds}, window after warm-up max {b_fd}, last window max {l_fd}, "
                  f"idle at the end {fds_after}")
            print(f"        kysod RSS: window after warm-up max {b_rss} KiB, last window max {l_rss} KiB "
                  f"(first sample {samples[0][2]} KiB)")
            hp.check(f"no descriptor growth after warm-up ({b_fd} -> {l_fd}, slack {FD_SLACK})",
                     l_fd <= b_fd + FD_SLACK)
            hp.check(f"no RSS growth after warm-up ({b_rss} -> {l_rss} KiB, slack {RSS_SLACK_KIB} KiB)",
                     l_rss <= b_rss + RSS_SLACK_KIB)
        else:
            hp.check("enough samples for the growth checks", False, f"{len(base)} / {len(last)}")
        hp.check(f"descriptors back to idle once the applications left ({idle_fds} -> {fds_after})",
                 fds_after <= idle_fds + 2)
        hp.check("zero wrong signatures", wrong == 0, "; ".join(l for a in everyone for l in a.wrong_lines[:3]))
        hp.check("zero hangs", hangs == 0)
        hp.check("both tokens kept signing", min(per_token.values()) > 0, str(per_token))
        hp.check("every application still running at the end exited cleanly", clean_exits == len(apps),
                 f"{clean_exits}/{len(apps)}")
        hp.check("every token removal was seen by kysod", counts["slow_removals"] == 0)
        hp.check("kysod still running", kysod.proc.poll() is None)
        hp.check("kysod never panicked", not any("panicked" in line for line in earlier_log + kysod.log))
    finally:
        for app in apps:
            if app.proc.poll() is None:
                app.kill()
        kysod.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{hp.passed} passed, {hp.failed} failed")
    return 1 if hp.failed else 0


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
