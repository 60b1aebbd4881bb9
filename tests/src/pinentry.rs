//! A scripted pinentry for the tests: speaks Assuan, answers from a file, records what it was
//! shown.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Writes `dir/pinentry-scripted`, a pinentry that answers from `dir/answer`: the Nth
/// `GETPIN` (counted across runs in `dir/count`) gets line N as the PIN, or the last line when
/// there are fewer (`CANCEL` cancels instead); `CONFIRM` is confirmed when the first line says
/// `yes` and declined otherwise. Every command it receives is appended to `dir/seen`.
pub fn scripted_pinentry(dir: &Path) -> PathBuf {
    let path = dir.join("pinentry-scripted");
    let script = format!(
        "#!/bin/sh\n\
         seen={seen}\n\
         answer={answer}\n\
         count={count}\n\
         echo 'OK pleased'\n\
         while IFS= read -r line; do\n\
         \x20 printf '%s\\n' \"$line\" >>\"$seen\"\n\
         \x20 case $line in\n\
         \x20   GETPIN*) n=$(($(cat \"$count\" 2>/dev/null || echo 0) + 1)); echo $n >\"$count\"; a=$(sed -n \"${{n}}p\" \"$answer\"); [ -n \"$a\" ] || a=$(tail -n1 \"$answer\"); if [ \"$a\" = CANCEL ]; then echo 'ERR 83886179 Operation cancelled'; else echo \"D $a\"; echo OK; fi;;\n\
         \x20   CONFIRM*) a=$(head -n1 \"$answer\"); if [ \"$a\" = yes ]; then echo OK; else echo 'ERR 83886194 Not confirmed'; fi;;\n\
         \x20   BYE*) echo OK; exit 0;;\n\
         \x20   *) echo OK;;\n\
         \x20 esac\n\
         done\n",
        seen = sh_quote(&dir.join("seen")),
        answer = sh_quote(&dir.join("answer")),
        count = sh_quote(&dir.join("count")),
    );
    std::fs::write(&path, script).expect("write the scripted pinentry");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .expect("make the scripted pinentry executable");
    path
}

/// `p` quoted for a POSIX shell.
pub fn sh_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// Asserts that what the pinentry was shown (`seen`) names this test program and its pid, as
/// kysod's prompts must name the application asking.
pub fn assert_names_this_application(seen: &str) {
    let me = std::env::current_exe().expect("the test's own path");
    let me = me.file_name().expect("a file name").to_string_lossy();
    assert!(seen.contains(&*me), "application name {me} missing: {seen}");
    assert!(
        seen.contains(&format!("pid {}", std::process::id())),
        "pid missing: {seen}"
    );
}
