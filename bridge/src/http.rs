//! The plain HTTP the bridge speaks before a WebSocket upgrade or for its settings page: the
//! request head, and short answers that close the connection.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// The largest request head.
pub const MAX_HEAD: usize = 16 * 1024;
/// The largest settings-page request body.
pub const MAX_BODY: usize = 16 * 1024;

/// A parsed request head.
pub(crate) struct Head {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads the request head (up to the blank line) from `reader`; what follows stays buffered.
pub(crate) async fn read_head<S: AsyncRead + Unpin>(reader: &mut BufReader<S>) -> Option<Head> {
    let mut raw = Vec::with_capacity(1024);
    loop {
        let n = reader.read_until(b'\n', &mut raw).await.ok()?;
        if n == 0 || raw.len() > MAX_HEAD {
            return None;
        }
        if raw.ends_with(b"\r\n\r\n") || raw.ends_with(b"\n\n") {
            break;
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&raw) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    Some(Head {
        method: req.method?.to_string(),
        path: req.path?.to_string(),
        headers: req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
    })
}

/// A short plain-text HTTP answer, then the connection closes.
pub(crate) async fn respond_plain<W: AsyncWrite + Unpin>(
    w: &mut W,
    code: u16,
    reason: &str,
    body: &str,
) -> std::io::Result<()> {
    respond(
        w,
        code,
        reason,
        "text/plain; charset=utf-8",
        body.as_bytes(),
        &[],
    )
    .await
}

pub(crate) async fn respond<W: AsyncWrite + Unpin>(
    w: &mut W,
    code: u16,
    reason: &str,
    content_type: &str,
    body: &[u8],
    extra: &[(&str, &str)],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\n",
        body.len()
    );
    for (n, v) in extra {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes()).await?;
    w.write_all(body).await?;
    w.flush().await?;
    let _ = w.shutdown().await;
    Ok(())
}
