//! kysod as the command-line tools see it: kyso-proto's client, with the look-ups they share.

use std::path::PathBuf;
use std::time::Duration;

use kyso_proto::client::Connection;
use kyso_proto::{Call, Reply, Response, TokenStatus};

/// A connection to kysod.
pub struct Kysod {
    conn: Connection,
}

impl Kysod {
    /// Connects to `socket`, else to kysod's usual socket (`KYSO_SOCKET`, `XDG_RUNTIME_DIR`).
    pub fn connect(socket: Option<PathBuf>) -> Result<Kysod, String> {
        let path = socket.unwrap_or_else(kyso_proto::client::default_socket);
        // Each run of a tool is a client of its own.
        let instance = u64::from(std::process::id()) << 32
            | u64::from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or(0),
            );
        let conn = Connection::open(&path, instance).map_err(|e| e.to_string())?;
        Ok(Kysod { conn })
    }

    /// One call; `timeout` bounds the wait for the answer (`None`: a person is being asked).
    pub fn call(&mut self, call: Call, timeout: Option<Duration>) -> Result<Response, String> {
        self.conn
            .set_timeout(timeout)
            .map_err(|e| format!("kysod: {e}"))?;
        self.conn.call(call).map_err(|e| format!("kysod: {e}"))
    }
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
