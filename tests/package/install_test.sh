#!/usr/bin/env bash
# The Debian package, for real: builds it (packaging/build-deb), checks its contents and
# metadata, installs it, reinstalls and upgrades it, starts the installed kysod the way its
# systemd user units do (a listening socket passed with LISTEN_FDS, by systemd-socket-activate)
# on a SoftHSM2 token, and checks that p11-kit, GnuTLS p11tool, NSS (modutil, certutil), OpenSSL
# (libengine-pkcs11-openssl) and the installed `kyso report` work through the installed module;
# then removes and purges it and checks nothing is left.
#
#   tests/package/install_test.sh [PACKAGE.deb]
#
# Needs root (dpkg). The package is always purged at the end, also on failure. Prints one line
# per check and `N passed, N failed`; exits non-zero when any check fails.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

passed=0
failed=0
ok() { passed=$((passed + 1)); printf 'ok    %s\n' "$1"; }
bad() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$1"; [ -z "${2:-}" ] || printf '%s\n' "$2" | sed 's/^/      /'; }
# check DESCRIPTION COMMAND...: the command's success is the check.
check() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then ok "$what"; else bad "$what" "$out"; fi
}
summary() {
    printf '%d passed, %d failed\n' "$passed" "$failed"
    [ "$failed" -eq 0 ]
}
abort() {
    bad "$1" "${2:-}"
    printf 'not going on\n'
    summary
    exit 1
}

[ "$(id -u)" = 0 ] || abort "running as root (dpkg needs it)"
for tool in dpkg-deb systemd-socket-activate p11-kit p11tool modutil certutil pkcs11-tool openssl; do
    command -v "$tool" >/dev/null || abort "$tool is installed (scripts/setup-debian installs it)"
done

WORK=$(mktemp -d -t kyso-package-XXXXXX)
KYSOD_PID=
cleanup() {
    if [ -n "$KYSOD_PID" ] && kill -0 "$KYSOD_PID" 2>/dev/null; then
        kill -TERM "$KYSOD_PID" 2>/dev/null
        wait "$KYSOD_PID" 2>/dev/null
    fi
    if dpkg-query -W -f='${db:Status-Status}' kyso 2>/dev/null | grep -qv '^not-installed$'; then
        dpkg --purge kyso >/dev/null 2>&1 || printf 'cleanup: dpkg --purge kyso failed\n' >&2
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

SHIM=/usr/lib/x86_64-linux-gnu/pkcs11/libkyso_pkcs11.so
FILES=(
    /usr/bin/kysod
    /usr/bin/kyso
    /usr/bin/kyso-helpdesk
    "$SHIM"
    /usr/share/p11-kit/modules/kyso.module
    /usr/lib/systemd/user/kysod.socket
    /usr/lib/systemd/user/kysod.service
    /usr/bin/kyso-bridge
    /usr/lib/systemd/user/kyso-bridge.socket
    /usr/lib/systemd/user/kyso-bridge.service
    /usr/lib/systemd/system/kyso-bridge-policy.path
    /usr/lib/systemd/system/kyso-bridge-policy.service
    /usr/lib/udev/rules.d/70-kyso-tokens.rules
    /etc/kyso/kysod.toml
    /usr/share/man/man8/kysod.8.gz
    /usr/share/man/man1/kyso.1.gz
    /usr/share/man/man1/kyso-helpdesk.1.gz
    /usr/share/doc/kyso/copyright
    /usr/share/doc/kyso/changelog.gz
)

# ---- the package file
if [ $# -ge 1 ]; then
    DEB=$1
else
    DEB=$(packaging/build-deb | tail -1) || abort "packaging/build-deb builds the package"
fi
[ -f "$DEB" ] || abort "the package $DEB exists"
VERSION=$(dpkg-deb -f "$DEB" Version)
[ "$(basename "$DEB")" = "kyso_${VERSION}_amd64.deb" ] && ok "named kyso_${VERSION}_amd64.deb" ||
    bad "named kyso_<version>_amd64.deb" "$DEB"

dpkg-deb -c "$DEB" >"$WORK/contents" || abort "dpkg-deb -c reads the package"
listed=$(awk '$1 !~ /^d/ { sub(/^\./, "", $6); print $6 }' "$WORK/contents" | sort)
expected=$(printf '%s\n' "${FILES[@]}" | sort)
# Besides the listed files, one man page per command of kyso and kyso-helpdesk.
COMMAND_PAGE='^/usr/share/man/man1/kyso-[a-z0-9-]+\.1\.gz$'
command_pages=$(grep -E "$COMMAND_PAGE" <<<"$listed" | grep -vxF -e /usr/share/man/man1/kyso-helpdesk.1.gz)
listed=$(grep -vxF -f <(printf '%s\n' "$command_pages") <<<"$listed")
check "a man page for kyso report" grep -qx /usr/share/man/man1/kyso-report.1.gz <<<"$command_pages"
if [ "$listed" = "$expected" ]; then
    ok "contents: exactly the ${#FILES[@]} expected files and $(wc -l <<<"$command_pages") command man pages"
else
    bad "contents: exactly the expected files" "$(diff <(echo "$expected") <(echo "$listed"))"
fi
check "programs are 0755 root:root" \
    bash -c "grep -E ' \./usr/bin/.' '$WORK/contents' | awk '{ n++; if (\$1 != \"-rwxr-xr-x\" || \$2 != \"root/root\") bad = 1 } END { exit bad || n != 4 }'"
check "other files are 0644 root:root" \
    bash -c "grep -vE ' \./usr/bin/.' '$WORK/contents' | awk '\$1 !~ /^d/ { if (\$1 != \"-rw-r--r--\" || \$2 != \"root/root\") exit 1 }'"
depends=$(dpkg-deb -f "$DEB" Depends)
for dep in 'libc6 (' 'libusb-1.0-0 (' 'libgcc-s1' 'pinentry-curses | pinentry' 'p11-kit' 'fonts-liberation2'; do
    case $depends in
        *"$dep"*) ok "Depends has ${dep% (}" ;;
        *) bad "Depends has ${dep% (}" "$depends" ;;
    esac
done
check "conffiles: /etc/kyso/kysod.toml" \
    bash -c "dpkg-deb --ctrl-tarfile '$DEB' | tar -xO ./conffiles | grep -qx /etc/kyso/kysod.toml"
if command -v lintian >/dev/null; then
    check "lintian finds no errors or warnings" lintian --fail-on error,warning "$DEB"
fi

# ---- the copyright file covers what the programs are built from
# Rust programs keep the source paths of the code that can panic, the registry's crates
# ("…/registry/src/<index>/<crate>-<version>/…") and the standard library ("/rustc/<commit>/
# library/…"), also once stripped: an account of the crates in the shipped files that does not
# come from cargo's own listing, which packaging/debian-copyright reads.
mkdir -p "$WORK/unpacked"
dpkg-deb -x "$DEB" "$WORK/unpacked" || abort "dpkg-deb -x unpacks the package"
COPYRIGHT=$WORK/unpacked/usr/share/doc/kyso/copyright
shipped=("$WORK/unpacked/usr/bin/"* "$WORK/unpacked$SHIM")
crates_seen=$(grep -ahoE 'registry/src/[^/]+/[^/]+/' "${shipped[@]}" | cut -d/ -f4 | sort -u)
listed_crates=$(sed -n 's|^Files: \*/\(.*\)/\*$|\1|p' "$COPYRIGHT" | sort -u)
unlisted=$(comm -23 <(echo "$crates_seen") <(echo "$listed_crates"))
if [ "$(wc -l <<<"$crates_seen")" -ge 40 ] && [ -z "$unlisted" ]; then
    ok "copyright: a paragraph for each of the $(wc -l <<<"$crates_seen") crates whose paths the programs hold"
else
    bad "copyright: a paragraph for each crate whose paths the programs hold" \
        "seen $(wc -l <<<"$crates_seen"), without a paragraph: $unlisted"
fi
if grep -aqE '/rustc/[0-9a-f]{40}/library/' "${shipped[@]}"; then
    check "copyright: the Rust standard library, which the programs hold" \
        grep -qx 'Files: \*/rustlib/src/rust/library/\*' "$COPYRIGHT"
else
    bad "the programs hold the Rust standard library's paths" "no /rustc/<commit>/library/ in them"
fi
# Every Files paragraph has Copyright and License; the licenses they name have a paragraph
# each, and no paragraph goes unnamed.
check "copyright: Files paragraphs have Copyright and License, every license named has its text" \
    awk -v RS= '
        {
            n = split($0, line, "\n"); copyright = 0; license = ""
            for (i = 1; i <= n; i++) {
                if (line[i] ~ /^Copyright: ./) copyright = 1
                if (line[i] ~ /^License: ./) license = substr(line[i], 10)
            }
        }
        /^Files: / {
            if (!copyright || license == "") { print "incomplete: " line[1]; bad = 1; next }
            k = split(license, parts, /,? (and|or) /)
            for (i = 1; i <= k; i++) named[parts[i]] = 1
        }
        /^License: / { have[license] = 1 }
        END {
            for (l in named) if (!(l in have)) { print "no text for " l; bad = 1 }
            for (l in have) if (!(l in named)) { print "text for " l " that nothing names"; bad = 1 }
            exit bad
        }' "$COPYRIGHT"
# Two made-up crates: one whose copyright line, license and NOTICE file must come through, and
# one under a license the file has no text for, which stops the package.
fake_crate() { # NAME LICENSE: a crate source directory and its `cargo metadata` entry
    mkdir -p "$WORK/$1-1.2.3"
    printf '{"name": "%s", "version": "1.2.3", "source": "registry", "license": "%s", "authors": ["Nobody <n@example.invalid>"], "manifest_path": "%s/Cargo.toml"}' \
        "$1" "$2" "$WORK/$1-1.2.3"
}
good=$(fake_crate goodcrate "MIT OR Apache-2.0")
printf 'Copyright (c) 2024 Jane Roe\n\nPermission is hereby granted\n' >"$WORK/goodcrate-1.2.3/LICENSE-MIT"
printf 'goodcrate\nAn attribution line.\n' >"$WORK/goodcrate-1.2.3/NOTICE"
printf 'kyso-tools v0.1.0 (/src/tools)\ngoodcrate v1.2.3\n' >"$WORK/tree-good"
printf '{"packages": [%s]}\n' "$good" >"$WORK/metadata-good.json"
expected=$'Files: */goodcrate-1.2.3/*\nCopyright: 2024 Jane Roe\n Nobody <n@example.invalid>\nLicense: Expat or Apache-2.0\nComment: the goodcrate crate, version 1.2.3.\n Its NOTICE file:\n goodcrate\n An attribution line.\n\n'
if out=$(packaging/debian-copyright --tree "$WORK/tree-good" --metadata "$WORK/metadata-good.json" kyso-tools 2>&1); then
    if [[ $out == *"$expected"* ]]; then
        ok "packaging/debian-copyright writes a crate's holders, license and NOTICE"
    else
        bad "packaging/debian-copyright writes a crate's holders, license and NOTICE" "$out"
    fi
else
    bad "packaging/debian-copyright writes a crate's holders, license and NOTICE" "$out"
fi
printf 'kyso-tools v0.1.0 (/src/tools)\ngoodcrate v1.2.3\nsomecrate v1.2.3\n' >"$WORK/tree"
printf '{"packages": [%s, %s]}\n' "$good" "$(fake_crate somecrate GPL-3.0-only)" >"$WORK/metadata.json"
if out=$(packaging/debian-copyright --tree "$WORK/tree" --metadata "$WORK/metadata.json" kyso-tools 2>&1); then
    bad "packaging/debian-copyright refuses a crate under a license it has no text for" "$out"
else
    check "packaging/debian-copyright refuses a crate under a license it has no text for, naming both" \
        grep -q 'somecrate 1.2.3: license GPL-3.0-only has no paragraph' <<<"$out"
fi

# ---- install, reinstall, upgrade
if dpkg-query -W -f='${db:Status-Status}' kyso 2>/dev/null | grep -qv '^not-installed$'; then
    dpkg --purge kyso >/dev/null 2>&1 || abort "purging an earlier kyso"
fi
check "dpkg -i installs it" dpkg -i "$DEB"
[ "$(dpkg-query -W -f='${db:Status-Status}' kyso 2>/dev/null)" = installed ] ||
    abort "kyso is installed" "$(dpkg -s kyso 2>&1)"
missing=$(for f in "${FILES[@]}"; do [ -e "$f" ] || echo "$f"; done)
[ -z "$missing" ] && ok "every file is in place" || bad "every file is in place" "$missing"
check "dpkg --verify: files as packaged" bash -c '[ -z "$(dpkg --verify kyso)" ]'
check "kysod.socket enabled for user sessions" test -L /etc/systemd/user/sockets.target.wants/kysod.socket
check "kyso-bridge.socket enabled for user sessions" test -L /etc/systemd/user/sockets.target.wants/kyso-bridge.socket
check "kyso-bridge-policy.path enabled" test -L /etc/systemd/system/paths.target.wants/kyso-bridge-policy.path
check "no loopback policy while [bridge] origins is empty" test ! -e /etc/chromium/policies/managed/kyso.json
check "installed kyso runs" /usr/bin/kyso --version
for page in man8/kysod.8 man1/kyso.1 man1/kyso-helpdesk.1; do
    check "man page $page is roff with a NAME section" \
        bash -c "gzip -dc /usr/share/man/$page.gz | grep -q '^\\.SH NAME'"
done
check "man page of kyso report says only made signatures count" \
    bash -c "gzip -dc /usr/share/man/man1/kyso-report.1.gz | grep -q 'CKR_OK'"
# A user without a configuration of their own gets /etc/kyso/kysod.toml: kysod starts on it
# (unknown or mistyped keys would stop it) and creates its socket itself when none is passed.
mkdir -p -m 0700 "$WORK/default-run"
HOME=$WORK/default-home XDG_RUNTIME_DIR=$WORK/default-run /usr/bin/kysod 2>"$WORK/default.log" &
default_pid=$!
for _ in $(seq 500); do
    [ -S "$WORK/default-run/kyso/kysod.sock" ] && break
    kill -0 "$default_pid" 2>/dev/null || break
    sleep 0.01
done
if [ -S "$WORK/default-run/kyso/kysod.sock" ]; then
    ok "kysod starts on the packaged /etc/kyso/kysod.toml and creates its socket"
else
    bad "kysod starts on the packaged /etc/kyso/kysod.toml and creates its socket" "$(cat "$WORK/default.log")"
fi
kill -TERM "$default_pid" 2>/dev/null
wait "$default_pid" 2>/dev/null

check "installing the same package again is clean" dpkg -i "$DEB"
echo "# changed by the administrator" >>/etc/kyso/kysod.toml
NEXT=$(KYSO_DEB_VERSION="$VERSION+1" packaging/build-deb | tail -1)
if [ -f "$NEXT" ]; then
    check "upgrade to $VERSION+1 is clean" dpkg -i --force-confold "$NEXT"
    check "version after upgrade is $VERSION+1" \
        bash -c "[ \"\$(dpkg-query -W -f='\${Version}' kyso)\" = '$VERSION+1' ]"
    check "the administrator's configuration survives the upgrade" \
        grep -qx "# changed by the administrator" /etc/kyso/kysod.toml
    rm -f "$NEXT"
else
    bad "packaging/build-deb builds version $VERSION+1"
fi

# ---- p11-kit registration (no daemon yet: the module loads and shows no token)
check "p11-kit list-modules shows kyso" bash -c "p11-kit list-modules | grep -q '^kyso:'"

# ---- the installed kysod, started as kysod.socket + kysod.service start it
tests/fixtures/softhsm-token.sh "$WORK/fixture" >"$WORK/fixture.out" 2>&1 ||
    abort "SoftHSM2 fixture token" "$(cat "$WORK/fixture.out")"
SERIAL_A=$(sed -n 's/^SERIAL_A=//p' "$WORK/fixture/fixture.env")
HOME_DIR=$WORK/home
RUNTIME=$WORK/run
mkdir -p "$HOME_DIR/.config/kyso" "$RUNTIME"
chmod 700 "$RUNTIME"
cat >"$HOME_DIR/.config/kyso/kysod.toml" <<TOML
state_dir = "$HOME_DIR/.local/state/kyso"

[[module]]
path = "/usr/lib/softhsm/libsofthsm2.so"
always_present = true
TOML
EXEC=$(sed -n 's/^ExecStart=//p' /usr/lib/systemd/user/kysod.service)
LISTEN=$(sed -n 's/^ListenStream=//p' /usr/lib/systemd/user/kysod.socket)
SOCKET=${LISTEN//%t/$RUNTIME}
MODE=$(sed -n 's/^DirectoryMode=//p' /usr/lib/systemd/user/kysod.socket)
[ "$EXEC" = /usr/bin/kysod ] && ok "kysod.service starts /usr/bin/kysod" || bad "kysod.service starts /usr/bin/kysod" "$EXEC"
[ "$SOCKET" = "$RUNTIME/kyso/kysod.sock" ] && ok "kysod.socket listens on %t/kyso/kysod.sock" ||
    bad "kysod.socket listens on %t/kyso/kysod.sock" "$LISTEN"
mkdir -p -m "${MODE:-0700}" "$(dirname "$SOCKET")"
HOME=$HOME_DIR XDG_CONFIG_HOME=$HOME_DIR/.config XDG_RUNTIME_DIR=$RUNTIME \
    SOFTHSM2_CONF=$WORK/fixture/softhsm2.conf \
    systemd-socket-activate -l "$SOCKET" \
    -E HOME -E XDG_CONFIG_HOME -E XDG_RUNTIME_DIR -E SOFTHSM2_CONF -E PATH \
    $EXEC 2>"$WORK/kysod.log" &
KYSOD_PID=$!
for _ in $(seq 500); do
    [ -S "$SOCKET" ] && break
    sleep 0.01
done
[ -S "$SOCKET" ] || abort "the listening socket $SOCKET exists" "$(cat "$WORK/kysod.log")"

# The consumers' environment: the user's session, without SoftHSM2's private configuration, so
# only kyso can show the fixture token.
export HOME=$HOME_DIR XDG_CONFIG_HOME=$HOME_DIR/.config XDG_RUNTIME_DIR=$RUNTIME
unset SOFTHSM2_CONF KYSO_SOCKET

check "pkcs11-tool lists the token through the installed module" \
    bash -c "pkcs11-tool --module '$SHIM' -L | grep -q 'serial num *: *$SERIAL_A'"
check "the daemon is the installed /usr/bin/kysod, started on the first connection" \
    bash -c "[ \"\$(readlink /proc/$KYSOD_PID/exe)\" = /usr/bin/kysod ]"
check "kysod was given the socket with LISTEN_FDS=1 and created none" \
    bash -c "tr '\\0' '\\n' </proc/$KYSOD_PID/environ | grep -qx LISTEN_FDS=1 && grep -q 'from systemd' '$WORK/kysod.log'"
check "p11-kit list-modules shows kyso's token" \
    bash -c "p11-kit list-modules | sed -n '/^kyso:/,/^[^ ]/p' | grep -q 'serial-number: $SERIAL_A'"

# ---- the installed kyso-bridge, started as kyso-bridge.socket + kyso-bridge.service start it
BRIDGE_EXEC=$(sed -n 's/^ExecStart=//p' /usr/lib/systemd/user/kyso-bridge.service)
BRIDGE_LISTEN=$(sed -n 's/^ListenStream=//p' /usr/lib/systemd/user/kyso-bridge.socket)
[ "$BRIDGE_LISTEN" = 127.0.0.1:8987 ] && ok "kyso-bridge.socket listens on 127.0.0.1:8987" ||
    bad "kyso-bridge.socket listens on 127.0.0.1:8987" "$BRIDGE_LISTEN"
KYSO_SOCKET=$SOCKET systemd-socket-activate -l "$BRIDGE_LISTEN" \
    -E HOME -E XDG_CONFIG_HOME -E XDG_RUNTIME_DIR -E KYSO_SOCKET -E PATH \
    "$BRIDGE_EXEC" 2>"$WORK/bridge.log" &
BRIDGE_PID=$!
sleep 0.3
BRIDGE_CA=$HOME_DIR/.local/state/kyso/bridge/ca.pem
# The first connection starts it; it makes its certificate, which its CA verifies.
for _ in $(seq 100); do
    curl -s --cacert "$BRIDGE_CA" "https://127.0.0.1:8987/" -o "$WORK/settings.html" 2>/dev/null && break
    sleep 0.1
done
check "the bridge's certificate verifies for 127.0.0.1 against its own CA (TLS)" \
    bash -c "openssl s_client -connect 127.0.0.1:8987 -CAfile '$BRIDGE_CA' -verify_return_error </dev/null 2>&1 | grep -q 'Verify return code: 0'"
check "the bridge's CA is name-constrained to 127.0.0.1 and localhost" \
    bash -c "openssl x509 -in '$BRIDGE_CA' -noout -text | grep -A3 'Name Constraints' | grep -q 'DNS:localhost' && openssl x509 -in '$BRIDGE_CA' -noout -text | grep -A3 'Name Constraints' | grep -q 'IP:127.0.0.1/255.255.255.255'"
check "no file holds the CA's private key (only the bridge's own)" \
    bash -c "[ \"\$(grep -l 'PRIVATE KEY' '$HOME_DIR'/.local/state/kyso/bridge/* | wc -l)\" = 1 ]"
check "the settings page shows the token" grep -q "$SERIAL_A" "$WORK/settings.html"
check "kyso status says the bridge is up" bash -c "kyso status | grep -q 'bridge: .*up at'"
check "the bridge is the installed /usr/bin/kyso-bridge with LISTEN_FDS=1" \
    bash -c "[ \"\$(readlink /proc/$BRIDGE_PID/exe)\" = /usr/bin/kyso-bridge ] && tr '\\0' '\\n' </proc/$BRIDGE_PID/environ | grep -qx LISTEN_FDS=1"
kill "$BRIDGE_PID" 2>/dev/null
wait "$BRIDGE_PID" 2>/dev/null
printf 'state_dir = "%s"\n\n[bridge]\norigins = ["https://vpdt.example.gov.vn"]\n' "$WORK/policy-state" >"$WORK/policy.toml"
check "kyso bridge policy writes Chromium's LoopbackNetworkAllowedForUrls from [bridge] origins" \
    bash -c "kyso bridge policy --config '$WORK/policy.toml' >/dev/null && grep -q 'vpdt.example.gov.vn' /etc/chromium/policies/managed/kyso.json"

# GnuTLS: through p11-kit's registration (no configuration), and naming the module.
check "p11tool (p11-kit registration) lists the token" \
    bash -c "p11tool --list-tokens | grep -q 'serial=$SERIAL_A'"
p11tool --provider "$SHIM" --list-all-certs "pkcs11:serial=$SERIAL_A" >"$WORK/p11tool.out" 2>&1
certs=$(grep -c 'Type: X.509 Certificate' "$WORK/p11tool.out")
[ "$certs" -ge 2 ] && ok "p11tool lists the token's 2 certificates" ||
    bad "p11tool lists the token's 2 certificates" "$(cat "$WORK/p11tool.out")"

# NSS.
NSSDB=sql:$WORK/nss
mkdir -p "$WORK/nss"
certutil -N -d "$NSSDB" --empty-password >/dev/null 2>&1
check "modutil -add registers the installed module" \
    bash -c "modutil -dbdir '$NSSDB' -add kyso -libfile '$SHIM' -force >/dev/null"
check "modutil -list sees the token" \
    bash -c "modutil -dbdir '$NSSDB' -list kyso | grep -q 'NGUYEN VAN A'"
certutil -L -d "$NSSDB" -h all >"$WORK/certutil.out" 2>&1
nss_certs=$(grep -c '^NGUYEN VAN A:' "$WORK/certutil.out")
[ "$nss_certs" -ge 2 ] && ok "certutil -L -h all lists the token's 2 certificates" ||
    bad "certutil -L -h all lists the token's 2 certificates" "$(cat "$WORK/certutil.out")"

# OpenSSL through libengine-pkcs11-openssl, by pkcs11: URI.
DOC=$WORK/cong-van.txt
printf 'UBND TINH DEMO\nCong van so 68/UBND-VP\n' >"$DOC"
openssl x509 -in "$WORK/fixture/cert-01.pem" -pubkey -noout >"$WORK/pub-01.pem"
check "openssl signs by pkcs11: URI with the engine" \
    env PKCS11_MODULE_PATH="$SHIM" openssl dgst -engine pkcs11 -keyform engine -sha256 \
    -sign "pkcs11:serial=$SERIAL_A;id=%01;type=private;pin-value=123456" -out "$DOC.sig" "$DOC"
check "the signature verifies with the certificate's key" \
    openssl dgst -sha256 -verify "$WORK/pub-01.pem" -signature "$DOC.sig" "$DOC"
cp "$DOC" "$DOC.changed"
echo "changed" >>"$DOC.changed"
if openssl dgst -sha256 -verify "$WORK/pub-01.pem" -signature "$DOC.sig" "$DOC.changed" >/dev/null 2>&1; then
    bad "a changed document does not verify"
else
    ok "a changed document does not verify"
fi

# The installed kyso reports the signature from the installed kysod's journal.
TODAY=$(date -u +%F)
if /usr/bin/kyso report --from "$TODAY" --to "$TODAY" --format json >"$WORK/report.json" 2>"$WORK/report.err"; then
    check "kyso report counts the openssl signature" \
        /usr/bin/python3 -c "
import json, sys
r = json.load(open(sys.argv[1]))
assert r['totals']['all'] == 1, r
# Every certificate kysod saw is listed; the one that signed counts the signature.
signed = [c for c in r['certificates'] if c['signatures']]
assert len(signed) == 1, r
c = signed[0]
assert c['signatures'] == 1 and c['class'] == 'personal', c
assert list(c['by_application']) == ['/usr/bin/openssl'], c
assert len(r['certificates']) >= 2, r
" "$WORK/report.json"
else
    bad "kyso report runs" "$(cat "$WORK/report.err")"
fi

kill -TERM "$KYSOD_PID" 2>/dev/null
wait "$KYSOD_PID" 2>/dev/null
KYSOD_PID=

# ---- remove, then purge
check "dpkg -r removes it" dpkg -r kyso
left=$(for f in "${FILES[@]}"; do [ "$f" = /etc/kyso/kysod.toml ] || [ ! -e "$f" ] || echo "$f"; done)
left+=$(compgen -G '/usr/share/man/man1/kyso*')
[ -z "$left" ] && ok "remove leaves no program, module or unit" || bad "remove leaves no program, module or unit" "$left"
check "remove keeps the configuration" test -f /etc/kyso/kysod.toml
check "remove masks kysod.socket for user sessions" \
    bash -c '[ "$(readlink /etc/systemd/user/kysod.socket)" = /dev/null ]'
check "remove takes away the loopback policy" test ! -e /etc/chromium/policies/managed/kyso.json
check "p11-kit no longer lists kyso" bash -c "! p11-kit list-modules 2>/dev/null | grep -q '^kyso:'"
check "dpkg --purge purges it" dpkg --purge kyso
left=$(for f in "${FILES[@]}" /etc/kyso /usr/share/doc/kyso; do [ ! -e "$f" ] || echo "$f"; done)
left+=$(compgen -G '/usr/share/man/man1/kyso*')
left+=$(find /etc/systemd/user /var/lib/systemd/deb-systemd-user-helper-enabled \
    /var/lib/systemd/deb-systemd-user-helper-masked -name 'kysod.*' -o -name 'kyso-bridge*' 2>/dev/null)
left+=$(find /etc/systemd/system /var/lib/systemd/deb-systemd-helper-enabled \
    /var/lib/systemd/deb-systemd-helper-masked -name 'kyso-bridge*' 2>/dev/null)
[ -z "$left" ] && ok "purge leaves nothing behind" || bad "purge leaves nothing behind" "$left"
check "dpkg knows no kyso any more" \
    bash -c "! dpkg-query -W -f='\${db:Status-Status}' kyso 2>/dev/null | grep -qv '^not-installed\$'"

summary
