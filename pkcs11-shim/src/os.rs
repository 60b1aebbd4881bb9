//! The system calls std does not offer in the form the shim needs.

use std::io::{self, IoSliceMut, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;

use kyso_proto::channel::HANDED_OVER;
use kyso_proto::MAX_FRAME;
use nix::errno::Errno;
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

/// Writes to a socket with `MSG_NOSIGNAL`: a dead daemon gives `EPIPE`, never a `SIGPIPE`
/// that would kill the host application (std's `write` would raise one).
pub(crate) struct NoSigPipe<'a>(pub(crate) &'a UnixStream);

impl Write for NoSigPipe<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is readable for `buf.len()` bytes and the fd stays open for the borrow.
        let n = unsafe {
            libc::send(
                self.0.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The real user id, for the default socket path under `/run/user/<uid>`.
pub(crate) fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// This process's id, cached: every PKCS#11 call checks it (a forked child must not use its
/// parent's connections), and `getpid` is a system call each time, a few of them per
/// signature. A handler registered with `pthread_atfork` forgets the cached id in a forked
/// child, which then reads its own. (A child made by a raw `clone`, which runs no fork
/// handlers, is not told apart; such children exec or do not call into loaded libraries.)
pub(crate) fn pid() -> u32 {
    let pid = PID.load(Ordering::Acquire);
    if pid != 0 {
        return pid;
    }
    static HANDLER: Once = Once::new();
    HANDLER.call_once(|| {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe as a fork
        // handler must be. glibc removes the handler when this library is unloaded.
        unsafe { libc::pthread_atfork(None, None, Some(forget_pid)) };
    });
    // Read after the handler is in place: a fork from now on clears what is stored here.
    let pid = std::process::id();
    PID.store(pid, Ordering::Release);
    pid
}

static PID: AtomicU32 = AtomicU32::new(0);

extern "C" fn forget_pid() {
    PID.store(0, Ordering::Release);
}

/// Room for the most descriptors one message can carry (the kernel's `SCM_MAX_FD`), so that
/// whatever a peer sends arrives whole and can be closed: a truncated list could not be.
const MAX_RIGHTS: usize = 253;

/// Reads the daemon's answer to the hello, one frame whose payload goes into `payload`, and
/// the descriptors that came with it (see `kyso_proto::channel`): none, or exactly
/// [`HANDED_OVER`]; any other count is an error (and what came is closed).
pub(crate) fn read_welcome(
    stream: &UnixStream,
    payload: &mut Vec<u8>,
) -> io::Result<Option<[OwnedFd; HANDED_OVER]>> {
    let mut first = [0u8; 512];
    let mut space = nix::cmsg_space!([RawFd; MAX_RIGHTS]);
    let (got, fds) = loop {
        let mut iov = [IoSliceMut::new(&mut first)];
        match recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(msg) => {
                let mut fds = Vec::new();
                for cmsg in msg.cmsgs()? {
                    if let ControlMessageOwned::ScmRights(raw) = cmsg {
                        // SAFETY: the kernel has just installed these descriptors in this
                        // process's table for this message; nothing else refers to them, so
                        // each is owned exactly once, here.
                        fds.extend(
                            raw.into_iter()
                                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                        );
                    }
                }
                break (msg.bytes, fds);
            }
        }
    };
    let mut frame = first[..got].to_vec();
    let mut stream = stream;
    if frame.len() < 4 {
        // The rest of the length prefix, and not a byte more.
        let mut rest = [0u8; 4];
        let rest = &mut rest[..4 - frame.len()];
        stream.read_exact(rest)?;
        frame.extend_from_slice(rest);
    }
    let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    if len > MAX_FRAME || frame.len() > 4 + len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the daemon's answer to the hello is malformed",
        ));
    }
    payload.clear();
    payload.extend_from_slice(&frame[4..]);
    let have = payload.len();
    payload.resize(len, 0);
    stream.read_exact(&mut payload[have..])?;
    match <[OwnedFd; HANDED_OVER]>::try_from(fds) {
        Ok(fds) => Ok(Some(fds)),
        Err(fds) if fds.is_empty() => Ok(None),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the daemon handed over an unexpected number of descriptors",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::IoSlice;
    use std::time::Duration;

    use kyso_proto::channel::{Channel, Pipes};
    use kyso_proto::{frame, FrameError, HelloReply, Refusal, Welcome};
    use nix::sys::socket::{sendmsg, ControlMessage};

    fn encoded(reply: &HelloReply) -> Vec<u8> {
        let mut buf = Vec::new();
        frame::encode(reply, &mut buf).unwrap();
        buf
    }

    #[test]
    fn the_pipes_come_with_the_welcome_and_carry_the_frames() {
        let (daemon_end, app_end) = UnixStream::pair().unwrap();
        let welcome: HelloReply = Ok(Welcome {
            version: kyso_proto::PROTOCOL_VERSION,
        });
        let mut daemon =
            Channel::offer(daemon_end, &encoded(&welcome), Pipes::new().unwrap()).unwrap();
        let mut payload = Vec::new();
        let fds = read_welcome(&app_end, &mut payload)
            .unwrap()
            .expect("descriptors with the welcome");
        assert_eq!(frame::decode::<HelloReply>(&payload).unwrap(), welcome);
        let mut app = Channel::joined(app_end, fds).unwrap();

        let mut buf = Vec::new();
        frame::encode(&b"request".to_vec(), &mut buf).unwrap();
        app.send(&buf).unwrap();
        let got: Vec<u8> = daemon.receive(&mut payload, Duration::ZERO, false).unwrap();
        assert_eq!(got, b"request");
        frame::encode(&b"answer".to_vec(), &mut buf).unwrap();
        daemon.send(&buf).unwrap();
        let got: Vec<u8> = app.receive(&mut payload, Duration::ZERO, false).unwrap();
        assert_eq!(got, b"answer");

        // The daemon kept no end that is the application's: its going shows at once.
        drop(daemon);
        let got = app.receive::<Vec<u8>>(&mut payload, Duration::ZERO, false);
        assert!(matches!(got, Err(FrameError::Closed)), "{got:?}");
    }

    #[test]
    fn a_refusal_comes_whole_and_without_descriptors() {
        let (mut daemon_end, app_end) = UnixStream::pair().unwrap();
        // Longer than the first read takes.
        let refusal: HelloReply = Err(Refusal {
            reason: "quá nhiều kết nối ".repeat(100),
        });
        daemon_end.write_all(&encoded(&refusal)).unwrap();
        let mut payload = Vec::new();
        let fds = read_welcome(&app_end, &mut payload).unwrap();
        assert!(fds.is_none());
        assert_eq!(frame::decode::<HelloReply>(&payload).unwrap(), refusal);
    }

    #[test]
    fn a_welcome_that_comes_in_pieces_is_read_whole() {
        let (mut daemon_end, app_end) = UnixStream::pair().unwrap();
        let welcome: HelloReply = Ok(Welcome {
            version: kyso_proto::PROTOCOL_VERSION,
        });
        let bytes = encoded(&welcome);
        let writer = std::thread::spawn(move || {
            for piece in [&bytes[..2], &bytes[2..3], &bytes[3..]] {
                daemon_end.write_all(piece).unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let mut payload = Vec::new();
        assert!(read_welcome(&app_end, &mut payload).unwrap().is_none());
        assert_eq!(frame::decode::<HelloReply>(&payload).unwrap(), welcome);
        writer.join().unwrap();
    }

    #[test]
    fn descriptors_that_are_not_the_pipes_and_pages_are_refused() {
        let welcome = encoded(&Ok(Welcome {
            version: kyso_proto::PROTOCOL_VERSION,
        }));
        let file = std::fs::File::open("/dev/null").unwrap();
        let send = |fds: &[RawFd]| {
            let (daemon_end, app_end) = UnixStream::pair().unwrap();
            sendmsg::<()>(
                daemon_end.as_raw_fd(),
                &[IoSlice::new(&welcome)],
                &[ControlMessage::ScmRights(fds)],
                MsgFlags::empty(),
                None,
            )
            .unwrap();
            (daemon_end, app_end)
        };
        // As many as the pipes and the pages, but not them.
        let (_d, app_end) = send(&[file.as_raw_fd(); HANDED_OVER]);
        let fds = read_welcome(&app_end, &mut Vec::new()).unwrap().unwrap();
        assert!(Channel::joined(app_end, fds).is_err());
        // Pipes, and memory that could shrink under the application.
        let flags = nix::fcntl::OFlag::O_NONBLOCK;
        let (a, b) = nix::unistd::pipe2(flags).unwrap();
        let (c, _d) = nix::unistd::pipe2(flags).unwrap();
        let memory =
            nix::sys::memfd::memfd_create(c"unsealed", nix::sys::memfd::MFdFlags::empty()).unwrap();
        nix::unistd::ftruncate(&memory, 1 << 16).unwrap();
        let raw = [
            b.as_raw_fd(),
            c.as_raw_fd(),
            a.as_raw_fd(),
            memory.as_raw_fd(),
        ];
        let (_d, app_end) = send(&raw);
        let fds = read_welcome(&app_end, &mut Vec::new()).unwrap().unwrap();
        assert!(Channel::joined(app_end, fds).is_err());
        // Fewer.
        let (_d, app_end) = send(&[file.as_raw_fd(); HANDED_OVER - 1]);
        assert!(read_welcome(&app_end, &mut Vec::new()).is_err());
    }
}
