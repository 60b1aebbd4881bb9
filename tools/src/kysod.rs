//! A connection to kysod speaking the ordinary protocol, for the command-line tools.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use kyso_proto::frame;
use kyso_proto::{
    Call, Hello, HelloReply, Reply, Request, Response, TokenStatus, PROTOCOL_VERSION,
};

pub fn socket_path(given: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(p) = given {
        return Ok(p);
    }
    if let Some(p) = std::env::var_os("KYSO_SOCKET").filter(|p| !p.is_empty()) {
        return Ok(p.into());
    }
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(d).join("kyso/kysod.sock"))
        .ok_or_else(|| "no socket: set KYSO_SOCKET or XDG_RUNTIME_DIR, or pass --socket".into())
}

/// A connection to kysod speaking the ordinary protocol.
pub struct Kysod {
    stream: UnixStream,
    buf: Vec<u8>,
    next: u32,
}

impl Kysod {
    pub fn connect(socket: Option<PathBuf>) -> Result<Kysod, String> {
        let path = socket_path(socket)?;
        let mut stream = UnixStream::connect(&path)
            .map_err(|e| format!("cannot reach kysod at {}: {e}", path.display()))?;
        let mut buf = Vec::new();
        let instance = u64::from(std::process::id()) << 32
            | u64::from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or(0),
            );
        let hello = Hello {
            version: PROTOCOL_VERSION,
            instance,
            pipes: false,
        };
        frame::write(&mut stream, &hello, &mut buf).map_err(io)?;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        let reply: HelloReply = frame::read(&mut stream, &mut buf).map_err(io)?;
        reply.map_err(|r| format!("kysod refused: {}", r.reason))?;
        Ok(Kysod {
            stream,
            buf,
            next: 1,
        })
    }

    /// One call; `timeout` bounds the wait for the answer (`None`: a person is being asked).
    pub fn call(&mut self, call: Call, timeout: Option<Duration>) -> Result<Response, String> {
        let id = self.next;
        self.next += 1;
        frame::write(
            &mut self.stream,
            &Request {
                id,
                call,
                cpu: None,
            },
            &mut self.buf,
        )
        .map_err(io)?;
        let _ = self.stream.set_read_timeout(timeout);
        frame::read(&mut self.stream, &mut self.buf).map_err(io)
    }
}

fn io(e: frame::FrameError) -> String {
    format!("kysod: {e}")
}

impl Kysod {
    /// The tokens kysod knows.
    pub fn tokens(&mut self) -> Result<Vec<TokenStatus>, String> {
        let response = self.call(Call::Status, Some(Duration::from_secs(30)))?;
        match response.reply {
            Reply::Status(tokens) if response.rv == 0 => Ok(tokens),
            _ => Err(format!(
                "kysod answered the status call with error 0x{:x}",
                response.rv
            )),
        }
    }

    /// The present token named by serial or label, or the only present one.
    pub fn choose_token(&mut self, wanted: Option<&str>) -> Result<TokenStatus, String> {
        let tokens = self.tokens()?;
        let present: Vec<&TokenStatus> = tokens
            .iter()
            .filter(|t| t.present)
            .filter(|t| wanted.is_none_or(|w| t.serial == w || t.label == w))
            .collect();
        match present.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(match wanted {
                Some(w) => format!("no token {w} is present"),
                None => "no token is present".into(),
            }),
            _ => Err("several tokens are present: choose one with --token SERIAL|LABEL".into()),
        }
    }
}
