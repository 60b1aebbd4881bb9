//! The settings page at `https://127.0.0.1:PORT/`, Vietnamese with English: tokens and their
//! certificates (expiry, renew-by), PIN state, the sites allowed (revocable), and the recent
//! signatures from kysod's journal.
//!
//! Only the page itself changes settings: a change is a `POST /revoke` whose `Origin` is the
//! bridge's own, with a JSON body (so a cross-site form cannot send it and a cross-site script
//! cannot send it without a CORS preflight, which is never granted) carrying a token that only
//! the page holds.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, BufReader};

use crate::consent::ConsentStore;
use crate::http::{respond, respond_plain, Head, MAX_BODY};
use crate::origin::Origin;

pub struct SettingsPage {
    port: u16,
    socket: PathBuf,
    journal: PathBuf,
    /// Proves a change comes from the page the bridge served.
    token: String,
}

/// How many signatures of the journal the page shows.
const RECENT: usize = 20;

impl SettingsPage {
    pub fn new(port: u16, socket: PathBuf, journal: PathBuf) -> SettingsPage {
        let mut n = [0u8; 16];
        if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
            use std::io::Read;
            let _ = f.read_exact(&mut n);
        }
        SettingsPage {
            port,
            socket,
            journal,
            token: n.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.port)
    }

    fn own_origin(&self, origin: &str) -> bool {
        Origin::parse(origin).is_ok_and(|o| {
            o.as_str() == format!("https://127.0.0.1:{}", self.port)
                || o.as_str() == format!("https://localhost:{}", self.port)
        })
    }

    fn own_host(&self, host: &str) -> bool {
        host == format!("127.0.0.1:{}", self.port) || host == format!("localhost:{}", self.port)
    }
}

/// Opens the settings page in the user's browser, when there is a desktop to open it on.
pub fn open_in_browser(url: &str) {
    if std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none() {
        return;
    }
    if let Err(e) = std::process::Command::new("xdg-open")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        tracing::warn!("cannot open {url}: {e}");
    }
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn day(t: i64) -> String {
    kyso_proto::audit::rfc3339_utc(SystemTime::UNIX_EPOCH + Duration::from_secs(t.max(0) as u64))
        [..10]
        .to_string()
}

fn pin_state(flags: u64) -> &'static str {
    if flags & cryptoki_sys::CKF_USER_PIN_LOCKED != 0 {
        "đã khóa / locked"
    } else if flags & cryptoki_sys::CKF_USER_PIN_FINAL_TRY != 0 {
        "còn 1 lần thử / one try left"
    } else if flags & cryptoki_sys::CKF_USER_PIN_COUNT_LOW != 0 {
        "đã nhập sai, còn ít lần thử / few tries left"
    } else {
        "bình thường / all tries left"
    }
}

/// Serves one plain HTTP request on the bridge's port.
pub(crate) async fn http<S: AsyncRead + AsyncWrite + Unpin>(
    page: &SettingsPage,
    consent: &Mutex<ConsentStore>,
    stream: &mut BufReader<S>,
    head: &Head,
) {
    if !head.header("host").is_some_and(|h| page.own_host(h)) {
        let _ = respond_plain(stream, 421, "Misdirected Request", "wrong host").await;
        return;
    }
    match (head.method.as_str(), head.path.as_str()) {
        ("GET", "/") => {
            let html = render(page, consent).await;
            let csp = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; form-action 'none'; frame-ancestors 'none'";
            let _ = respond(
                stream,
                200,
                "OK",
                "text/html; charset=utf-8",
                html.as_bytes(),
                &[("Content-Security-Policy", csp)],
            )
            .await;
        }
        ("POST", "/revoke") => {
            let (code, text) = revoke(page, consent, stream, head).await;
            let _ = respond_plain(
                stream,
                code,
                if code == 200 { "OK" } else { "Forbidden" },
                text,
            )
            .await;
        }
        _ => {
            let _ = respond_plain(stream, 404, "Not Found", "not found").await;
        }
    }
}

async fn revoke<S: AsyncRead + Unpin>(
    page: &SettingsPage,
    consent: &Mutex<ConsentStore>,
    stream: &mut BufReader<S>,
    head: &Head,
) -> (u16, &'static str) {
    if !head.header("origin").is_some_and(|o| page.own_origin(o)) {
        return (403, "only the settings page may change settings");
    }
    if !head
        .header("content-type")
        .is_some_and(|c| c.trim().starts_with("application/json"))
    {
        return (403, "expected JSON");
    }
    if head.header("x-kyso-token") != Some(page.token.as_str()) {
        return (403, "bad token");
    }
    let len: usize = match head
        .header("content-length")
        .and_then(|l| l.trim().parse().ok())
    {
        Some(l) if l <= MAX_BODY => l,
        _ => return (403, "bad length"),
    };
    let mut body = vec![0u8; len];
    if tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut body))
        .await
        .map_or(true, |r| r.is_err())
    {
        return (403, "no body");
    }
    let origin = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("origin").and_then(|o| o.as_str()).map(str::to_string))
        .and_then(|o| Origin::parse(&o).ok());
    let Some(origin) = origin else {
        return (403, "bad origin");
    };
    match consent.lock().revoke(&origin) {
        Ok(_) => {
            tracing::info!(site = %origin, "revoked on the settings page");
            (200, "ok")
        }
        Err(e) => {
            tracing::warn!("{e}");
            (403, "cannot save")
        }
    }
}

/// The tokens as kysod reports them (empty when kysod cannot be reached).
fn tokens(socket: &std::path::Path) -> Result<Vec<kyso_proto::TokenStatus>, String> {
    let mut conn =
        kyso_proto::client::Connection::open(socket, u64::from(std::process::id()) << 32)
            .map_err(|e| e.to_string())?;
    conn.set_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    match conn
        .call(kyso_proto::Call::Status)
        .map_err(|e| e.to_string())?
    {
        kyso_proto::Response {
            rv: 0,
            reply: kyso_proto::Reply::Status(t),
            ..
        } => Ok(t),
        r => Err(format!("kysod: 0x{:x}", r.rv)),
    }
}

/// The last signatures in the journal, newest first.
fn recent(journal: &std::path::Path) -> Vec<serde_json::Value> {
    let Ok(text) = std::fs::read_to_string(journal) else {
        return Vec::new();
    };
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e.get("event").and_then(|v| v.as_str()) == Some("signature"))
        .take(RECENT)
        .collect()
}

async fn render(page: &SettingsPage, consent: &Mutex<ConsentStore>) -> String {
    let (socket, journal) = (page.socket.clone(), page.journal.clone());
    let (tokens, recent) = tokio::task::spawn_blocking(move || (tokens(&socket), recent(&journal)))
        .await
        .unwrap_or_else(|_| (Err("internal".into()), Vec::new()));
    let now = SystemTime::now();
    let (configured, always) = consent.lock().allowed();
    let refused = consent.lock().refused(now);
    let unix_now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);

    let mut h = String::new();
    h.push_str(&format!(
        "<!doctype html><html lang=\"vi\"><head><meta charset=\"utf-8\"><title>kyso — Cài đặt ký số / Signing settings</title>\
<meta name=\"kyso-token\" content=\"{}\">\
<style>body{{font-family:'Liberation Sans',Arial,sans-serif;margin:2em;max-width:60em;color:#222}}\
h1{{font-size:1.5em}}h2{{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}}\
table{{border-collapse:collapse;width:100%}}td,th{{border:1px solid #ddd;padding:.3em .5em;text-align:left;font-size:.92em}}\
th{{background:#f3f3f3}}.en{{color:#666;font-size:.9em}}.warn{{color:#b00}}button{{cursor:pointer}}</style></head><body>\
<h1>kyso — Cài đặt ký số <span class=\"en\">/ Signing settings</span></h1>",
        esc(&page.token)
    ));

    h.push_str("<h2>Thiết bị ký số <span class=\"en\">/ Tokens</span></h2>");
    match tokens {
        Err(e) => h.push_str(&format!(
            "<p class=\"warn\">Không kết nối được kysod <span class=\"en\">/ kysod cannot be reached</span>: {}</p>",
            esc(&e)
        )),
        Ok(tokens) if tokens.is_empty() => h.push_str("<p>Chưa có thiết bị <span class=\"en\">/ No token</span></p>"),
        Ok(tokens) => {
            h.push_str("<table><tr><th>Thiết bị <span class=\"en\">/ Token</span></th><th>Số sê-ri <span class=\"en\">/ Serial</span></th><th>Đã cắm <span class=\"en\">/ Present</span></th><th>PIN</th></tr>");
            for t in &tokens {
                h.push_str(&format!(
                    "<tr><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&t.label),
                    esc(&t.model),
                    esc(&t.serial),
                    if t.present { "có / yes" } else { "không / no" },
                    if t.present { pin_state(t.flags) } else { "—" }
                ));
            }
            h.push_str("</table><h2>Chứng thư số <span class=\"en\">/ Certificates</span></h2><table><tr><th>Chủ thể <span class=\"en\">/ Holder</span></th><th>Loại <span class=\"en\">/ Class</span></th><th>Thiết bị <span class=\"en\">/ Token</span></th><th>Hết hạn <span class=\"en\">/ Expires</span></th><th>Gia hạn trước <span class=\"en\">/ Renew by</span></th></tr>");
            for t in &tokens {
                for c in &t.certificates {
                    let state = if unix_now >= c.not_after {
                        " <span class=\"warn\">đã hết hạn / expired</span>"
                    } else if unix_now >= c.renew_by - 30 * 86400 {
                        " <span class=\"warn\">sắp hết hạn / renew now</span>"
                    } else {
                        ""
                    };
                    h.push_str(&format!(
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td></tr>",
                        esc(&c.holder),
                        esc(&c.class),
                        esc(&t.label),
                        day(c.not_after),
                        state,
                        day(c.renew_by)
                    ));
                }
            }
            h.push_str("</table>");
        }
    }

    h.push_str("<h2>Trang web được phép <span class=\"en\">/ Sites allowed</span></h2><table><tr><th>Trang web <span class=\"en\">/ Site</span></th><th>Vì sao <span class=\"en\">/ Why</span></th><th></th></tr>");
    for o in &configured {
        h.push_str(&format!(
            "<tr><td>{}</td><td>cấu hình / configured</td><td></td></tr>",
            esc(o)
        ));
    }
    for (o, since) in &always {
        h.push_str(&format!(
            "<tr><td>{}</td><td>bạn cho phép từ / you allowed it on {}</td><td><button data-origin=\"{}\">Thu hồi / Revoke</button></td></tr>",
            esc(o),
            day(*since as i64),
            esc(o)
        ));
    }
    for (o, until) in &refused {
        h.push_str(&format!(
            "<tr><td>{}</td><td class=\"warn\">bị từ chối tới / refused until {}</td><td><button data-origin=\"{}\">Bỏ / Clear</button></td></tr>",
            esc(o),
            kyso_proto::audit::rfc3339_utc(SystemTime::UNIX_EPOCH + Duration::from_secs(*until)),
            esc(o)
        ));
    }
    h.push_str("</table>");

    h.push_str("<h2>Chữ ký gần đây <span class=\"en\">/ Recent signatures</span></h2>");
    if recent.is_empty() {
        h.push_str("<p>Chưa có <span class=\"en\">/ None yet</span></p>");
    } else {
        h.push_str("<table><tr><th>Thời gian <span class=\"en\">/ Time</span></th><th>Trang web <span class=\"en\">/ Site</span></th><th>Nội dung <span class=\"en\">/ What</span></th><th>Chứng thư <span class=\"en\">/ Certificate</span></th><th>Kết quả <span class=\"en\">/ Result</span></th></tr>");
        let field = |e: &serde_json::Value, k: &str| {
            e.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string()
        };
        for e in &recent {
            let site = field(e, "site");
            let app = field(e, "application");
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&field(e, "time")),
                esc(if site.is_empty() { &app } else { &site }),
                esc(&field(e, "document")),
                esc(&field(e, "cert_subject")),
                esc(&field(e, "result"))
            ));
        }
        h.push_str("</table>");
    }
    h.push_str(
        "<script>\
const token=document.querySelector('meta[name=kyso-token]').content;\
for(const b of document.querySelectorAll('button[data-origin]')){b.onclick=async()=>{\
const r=await fetch('/revoke',{method:'POST',headers:{'Content-Type':'application/json','X-Kyso-Token':token},body:JSON.stringify({origin:b.dataset.origin})});\
if(r.ok)location.reload();else alert(await r.text());};}\
</script></body></html>",
    );
    h
}
