//! The data path of one connection: a pair of pipes and two shared pages, handed over on the
//! Unix socket at the handshake. Frames that fit go through the pages (see [`crate::shared`]),
//! the others through the pipes, which also wake a side that sleeps.
//!
//! Why pipes: measured on the 2-CPU VM with two processes yielding one CPU to each other (C,
//! 300-byte messages), a round trip costs 8.5–9.8 µs over a Unix stream socket and 5.3 µs
//! over two pipes (shared memory: 3.3 µs). A socket's `send` allocates a buffer for every
//! message and its `recv` frees it; a pipe copies into pages it keeps. A signature is one
//! round trip, and the application and kysod take turns on one CPU (see [`crate::wait`]), so
//! the difference is paid on every call.
//!
//! How: after the handshake kysod makes two pipes and the shared pages, and sends the
//! application its ends with the welcome (`SCM_RIGHTS`): the write end of the request pipe, the
//! read end of the answer pipe, a second read end of the request pipe that the application
//! keeps and never reads, and the pages' memory file. With
//! a reader left on the request pipe, a write to a kysod that died cannot raise `SIGPIPE` in
//! the application (which a shared library must not make it handle); that kysod is gone shows
//! as the end of the answer pipe instead. All ends are non-blocking: a side waits in `poll`,
//! together with the socket.
//!
//! The socket stays open beside the pipes. It identified the application (its peer credentials
//! at `accept`), and it is how either side learns that the other went away or that
//! `C_Finalize` shut a waiting connection down (`shutdown` on the socket): while a side waits
//! on its pipe, a socket that turns readable ends the wait.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use serde::de::DeserializeOwned;

use crate::frame::{decode, FrameError, FrameReader};
use crate::shared::{Shared, Taken};

/// How many descriptors come with the welcome: the request pipe's write end, the answer
/// pipe's read end, a read end of the request pipe the application keeps, and the memory
/// file of the shared pages.
pub const HANDED_OVER: usize = 4;

/// One connection's pipes and shared pages, its socket and the frames read ahead from its
/// input.
pub struct Channel {
    socket: UnixStream,
    /// The pipe ends; `None`: the socket itself (a client that asked for no pipes).
    pipes: Option<(OwnedFd, OwnedFd)>,
    /// The shared pages, beside the pipes.
    shared: Option<Shared>,
    /// The application's read end of its own request pipe (see the module's notes).
    _keep: Option<OwnedFd>,
    reader: FrameReader,
}

/// The two pipes and the shared pages kysod makes for a connection, before they are handed
/// over.
pub struct Pipes {
    request_in: OwnedFd,
    request_out: OwnedFd,
    answer_in: OwnedFd,
    answer_out: OwnedFd,
    shared: Shared,
    memory: OwnedFd,
}

impl Pipes {
    /// Fails when the process is out of descriptors (or of pipe memory, or of memory).
    pub fn new() -> io::Result<Pipes> {
        let flags = OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        let (request_in, request_out) = nix::unistd::pipe2(flags)?;
        let (answer_in, answer_out) = nix::unistd::pipe2(flags)?;
        let (shared, memory) = Shared::create()?;
        Ok(Pipes {
            request_in,
            request_out,
            answer_in,
            answer_out,
            shared,
            memory,
        })
    }
}

impl Channel {
    /// kysod's side: sends `welcome` (an encoded frame) with the application's ends of
    /// `pipes`, keeping the request pipe's read end and the answer pipe's write end.
    pub fn offer(socket: UnixStream, welcome: &[u8], pipes: Pipes) -> io::Result<Channel> {
        let fds = [
            pipes.request_out.as_raw_fd(),
            pipes.answer_in.as_raw_fd(),
            pipes.request_in.as_raw_fd(),
            pipes.memory.as_raw_fd(),
        ];
        let rights = [ControlMessage::ScmRights(&fds)];
        let sent = loop {
            match sendmsg::<()>(
                socket.as_raw_fd(),
                &[IoSlice::new(welcome)],
                &rights,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Err(Errno::EINTR) => continue,
                other => break other?,
            }
        };
        // The descriptors went with the first bytes; the rest of a long frame follows plainly.
        (&socket).write_all(&welcome[sent..])?;
        // The application's ends are its own now: this side's copies go, so that the end of
        // the application shows as the end of the request pipe.
        drop((pipes.request_out, pipes.answer_in, pipes.memory));
        Ok(Channel::from_parts(
            socket,
            pipes.request_in,
            pipes.answer_out,
            pipes.shared,
            None,
        ))
    }

    /// kysod's side of a client that did not ask for pipes (the `kyso` tools, which make a
    /// call now and then): the frames go over the socket itself, read and written the same way.
    pub fn over_socket(socket: UnixStream) -> io::Result<Channel> {
        socket.set_nonblocking(true)?;
        Ok(Channel {
            socket,
            pipes: None,
            shared: None,
            _keep: None,
            reader: FrameReader::new(),
        })
    }

    /// The application's side from the descriptors `[request write end, answer read end,
    /// request read end, memory file]` received with the welcome. Anything but non-blocking
    /// pipes and sealed memory of the pages' size is refused.
    pub fn joined(socket: UnixStream, fds: [OwnedFd; HANDED_OVER]) -> io::Result<Channel> {
        let [output, input, keep, memory] = fds;
        for fd in [&output, &input, &keep] {
            let stat = nix::sys::stat::fstat(fd)?;
            let kind = nix::sys::stat::SFlag::from_bits_truncate(stat.st_mode)
                & nix::sys::stat::SFlag::S_IFMT;
            let flags =
                OFlag::from_bits_truncate(nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)?);
            if kind != nix::sys::stat::SFlag::S_IFIFO || !flags.contains(OFlag::O_NONBLOCK) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the daemon handed over something else than its pipes",
                ));
            }
        }
        let shared = Shared::join(&memory)?;
        Ok(Channel::from_parts(
            socket,
            input,
            output,
            shared,
            Some(keep),
        ))
    }

    /// Assembles a channel from its parts: the application's side, with the descriptors
    /// received with the welcome, in the order [`Channel::offer`] sends them.
    fn from_parts(
        socket: UnixStream,
        input: OwnedFd,
        output: OwnedFd,
        shared: Shared,
        keep: Option<OwnedFd>,
    ) -> Channel {
        Channel {
            socket,
            pipes: Some((input, output)),
            shared: Some(shared),
            _keep: keep,
            reader: FrameReader::new(),
        }
    }

    /// Where frames come from.
    fn input(&self) -> BorrowedFd<'_> {
        input_of(&self.pipes, &self.socket)
    }

    /// Where frames go.
    fn output(&self) -> BorrowedFd<'_> {
        self.pipes
            .as_ref()
            .map_or(self.socket.as_fd(), |(_, output)| output.as_fd())
    }

    /// The connection's socket (to shut a waiting connection down, or to refuse on).
    pub fn socket(&self) -> &UnixStream {
        &self.socket
    }

    /// Sends one encoded frame: posted to the shared page if it fits there and the peer is not
    /// asleep, else written to the pipe. Waits while the pipe is full; fails when the peer is
    /// gone (seen on the pipe; a frame posted to a peer that is gone goes unread, and the next
    /// wait for an answer ends at the pipe's end).
    pub fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        if let (Some(shared), Some(payload)) = (&self.shared, frame.get(4..)) {
            if shared.outbox().post(payload) {
                return Ok(());
            }
        }
        let mut rest = frame;
        while !rest.is_empty() {
            match nix::unistd::write(self.output(), rest) {
                Ok(n) => rest = &rest[n..],
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    // The peer reads no more for now. The wait ends when it has gone: its end
                    // of the input hung up, or the socket did (or, beside pipes, turned
                    // readable at all: nothing comes there after the handshake, so it was
                    // shut down). Early data from the peer is no reason to stop.
                    let socket_events = if self.pipes.is_some() {
                        PollFlags::POLLIN
                    } else {
                        PollFlags::empty()
                    };
                    let mut fds = [
                        PollFd::new(self.output(), PollFlags::POLLOUT),
                        PollFd::new(self.input(), PollFlags::empty()),
                        PollFd::new(self.socket.as_fd(), socket_events),
                    ];
                    match nix::poll::poll(&mut fds, PollTimeout::NONE) {
                        Ok(_) | Err(Errno::EINTR) => {}
                        Err(e) => return Err(e.into()),
                    }
                    let writable = fds[0].any().unwrap_or(false);
                    let other = fds[1].any().unwrap_or(false) || fds[2].any().unwrap_or(false);
                    if !writable && other {
                        return Err(io::ErrorKind::BrokenPipe.into());
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Reads the next frame: first checking for up to `budget` without sleeping (see
    /// [`crate::wait::until`]; `shared_cpu` says the peer works on this thread's CPU), then
    /// sleeping in `poll` on the pipe until it comes. The end of the pipe or of the socket is
    /// [`FrameError::Closed`].
    pub fn receive<T: DeserializeOwned>(
        &mut self,
        payload: &mut Vec<u8>,
        budget: Duration,
        shared_cpu: bool,
    ) -> Result<T, FrameError> {
        let Channel {
            socket,
            pipes,
            shared,
            reader,
            ..
        } = self;
        let input = input_of(pipes, socket);
        let mut asleep = false;
        if !reader.has_buffered() {
            match shared {
                Some(shared) => {
                    // A look at one word each round; the pipe once the box says so.
                    let inbox = shared.inbox();
                    crate::wait::until(budget, shared_cpu, || inbox.stirred());
                    match inbox.take(payload) {
                        Taken::Frame => return decode(payload),
                        Taken::Malformed(len) => {
                            return Err(FrameError::Io(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("a frame of {len} bytes in a shared page too small for it"),
                            )))
                        }
                        Taken::Pipe { asleep: a } => asleep = a,
                    }
                }
                // One read both checks and takes what came: no separate look at the pipe.
                None => crate::wait::until(
                    budget,
                    shared_cpu,
                    || !matches!(reader.read_ahead(&mut NonBlocking(input)), Err(e) if e.kind() == io::ErrorKind::WouldBlock),
                ),
            }
        }
        let mut source = Waiting {
            input,
            socket: socket.as_fd(),
        };
        let got = reader.read(&mut source, payload);
        if let (true, Some(shared)) = (asleep, shared) {
            shared.inbox().awake();
        }
        got
    }

    /// Whether the peer left (or sent something while it should be waiting): its input turned
    /// readable, or its socket did, or it posted to the shared page. Does not wait.
    pub fn peer_stirred(&self) -> bool {
        if self.shared.as_ref().is_some_and(|s| s.inbox().stirred()) {
            return true;
        }
        let mut fds = [
            PollFd::new(self.input(), PollFlags::POLLIN),
            PollFd::new(self.socket.as_fd(), PollFlags::POLLIN),
        ];
        !matches!(nix::poll::poll(&mut fds, PollTimeout::ZERO), Ok(0))
    }
}

/// Where a channel's frames come from: its input pipe, or its socket without pipes. A function
/// of the two fields, so that [`Channel::receive`] can borrow the reader beside it.
fn input_of<'a>(pipes: &'a Option<(OwnedFd, OwnedFd)>, socket: &'a UnixStream) -> BorrowedFd<'a> {
    pipes
        .as_ref()
        .map_or(socket.as_fd(), |(input, _)| input.as_fd())
}

/// Reads a non-blocking descriptor once: `WouldBlock` when nothing is there.
struct NonBlocking<'a>(BorrowedFd<'a>);

impl Read for NonBlocking<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(nix::unistd::read(self.0, buf)?)
    }
}

/// Reads a non-blocking pipe as if it blocked: sleeps in `poll` until the pipe has something.
/// A socket that turns readable while the pipe has nothing reads as the end of the stream.
struct Waiting<'a> {
    input: BorrowedFd<'a>,
    socket: BorrowedFd<'a>,
}

impl Read for Waiting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match nix::unistd::read(self.input, buf) {
                Ok(n) => return Ok(n),
                Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            let mut fds = [
                PollFd::new(self.input, PollFlags::POLLIN),
                PollFd::new(self.socket, PollFlags::POLLIN),
            ];
            match nix::poll::poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            let pipe = fds[0].any().unwrap_or(false);
            if !pipe && fds[1].any().unwrap_or(false) {
                return Ok(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame;
    use crate::shared::CAPACITY;
    use std::time::Instant;

    /// kysod's side and the application's side of one connection, as [`Channel::offer`] and
    /// `Channel::joined` leave them (the hand-over itself is tested in the shim, which
    /// receives the descriptors).
    fn pair() -> (Channel, Channel) {
        let (a, b) = UnixStream::pair().unwrap();
        let pipes = Pipes::new().unwrap();
        let keep = pipes.request_in.try_clone().unwrap();
        let shared = Shared::join(&pipes.memory).unwrap();
        let app = Channel::from_parts(b, pipes.answer_in, pipes.request_out, shared, Some(keep));
        let daemon = Channel::from_parts(a, pipes.request_in, pipes.answer_out, pipes.shared, None);
        (daemon, app)
    }

    fn send(channel: &mut Channel, msg: &Vec<u8>) -> io::Result<()> {
        let mut buf = Vec::new();
        frame::encode(msg, &mut buf).unwrap();
        channel.send(&buf)
    }

    fn receive(channel: &mut Channel) -> Result<Vec<u8>, FrameError> {
        channel.receive(&mut Vec::new(), Duration::from_micros(200), false)
    }

    #[test]
    fn frames_go_both_ways_also_ones_bigger_than_a_pipe_holds() {
        let (mut daemon, mut app) = pair();
        let echo = std::thread::spawn(move || {
            while let Ok(msg) = receive(&mut daemon) {
                send(&mut daemon, &msg).unwrap();
            }
        });
        // A pipe holds 64 KiB: the big ones need the reader to take part while they are written.
        for len in [0, 1, 300, 4096, 70_000, 1 << 20] {
            let msg: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            send(&mut app, &msg).unwrap();
            assert_eq!(receive(&mut app).unwrap(), msg, "{len} bytes");
        }
        drop(app);
        echo.join().unwrap();
    }

    #[test]
    fn the_daemon_gone_ends_the_applications_wait_without_sigpipe() {
        let (daemon, mut app) = pair();
        drop(daemon);
        // The application keeps a reader on its request pipe: the write goes into the pipe
        // instead of raising SIGPIPE, and the end shows on the answer pipe.
        send(&mut app, &b"request".to_vec()).unwrap();
        let t = Instant::now();
        assert!(matches!(receive(&mut app), Err(FrameError::Closed)));
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn the_application_gone_ends_the_daemons_wait_and_its_answer() {
        let (mut daemon, app) = pair();
        assert!(!daemon.peer_stirred());
        drop(app);
        assert!(daemon.peer_stirred());
        assert!(matches!(receive(&mut daemon), Err(FrameError::Closed)));
        // An answer posted to the page goes unread; one that must go through the pipe fails;
        // the wait for the next request ends at the pipe's end.
        send(&mut daemon, &b"answer".to_vec()).unwrap();
        let err = send(&mut daemon, &vec![1; 2 * CAPACITY]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
        assert!(matches!(receive(&mut daemon), Err(FrameError::Closed)));
    }

    /// Whether a frame waits in the channel's input pipe.
    fn pipe_holds_a_frame(channel: &Channel) -> bool {
        let mut fds = [PollFd::new(channel.input(), PollFlags::POLLIN)];
        nix::poll::poll(&mut fds, PollTimeout::ZERO).unwrap() == 1
    }

    #[test]
    fn small_frames_go_through_the_page_and_a_sleeping_peer_is_woken_through_the_pipe() {
        let (mut daemon, mut app) = pair();
        // The application asks and the daemon answers while the other checks: the page.
        send(&mut app, &b"request".to_vec()).unwrap();
        assert!(!pipe_holds_a_frame(&daemon));
        assert!(daemon.peer_stirred());
        assert_eq!(receive(&mut daemon).unwrap(), b"request");
        // The application sleeps at once (no budget): the answer goes to the pipe and wakes it.
        let waiting = std::thread::spawn(move || {
            let got = app.receive::<Vec<u8>>(&mut Vec::new(), Duration::ZERO, false);
            (got, app)
        });
        std::thread::sleep(Duration::from_millis(50));
        send(&mut daemon, &b"answer".to_vec()).unwrap();
        let (got, mut app) = waiting.join().unwrap();
        assert_eq!(got.unwrap(), b"answer");
        // Awake again, it gets the next one through the page.
        send(&mut daemon, &b"posted".to_vec()).unwrap();
        assert!(!pipe_holds_a_frame(&app));
        assert_eq!(receive(&mut app).unwrap(), b"posted");
    }

    #[test]
    fn a_page_scribbled_on_by_the_application_costs_the_daemon_nothing_but_an_error() {
        let (mut daemon, app) = pair();
        let shared = app.shared.as_ref().unwrap();
        // A length over the page's room: an error, not a read past it.
        shared.outbox().scribble(1, u32::MAX);
        let got = receive(&mut daemon);
        assert!(matches!(got, Err(FrameError::Io(_))), "{got:?}");
        // A state that means nothing: the daemon reads the pipe, and takes what comes there.
        shared.outbox().scribble(9, 3);
        let mut buf = Vec::new();
        frame::encode(&b"on the pipe".to_vec(), &mut buf).unwrap();
        nix::unistd::write(app.output(), &buf).unwrap();
        assert_eq!(receive(&mut daemon).unwrap(), b"on the pipe");
        // Bytes that decode to nothing: an error.
        shared.outbox().scribble(0, 0);
        assert!(shared.outbox().post(&[0xff; 64]));
        let got = receive(&mut daemon);
        assert!(got.is_err(), "{got:?}");
    }

    #[test]
    fn a_shut_down_socket_ends_a_wait_on_the_pipe() {
        // `C_Finalize` wakes a thread waiting for a slot event so; kysod still holds its ends.
        let (_daemon, mut app) = pair();
        let socket = app.socket().try_clone().unwrap();
        let waiting = std::thread::spawn(move || {
            let t = Instant::now();
            let got = app.receive::<Vec<u8>>(&mut Vec::new(), Duration::ZERO, false);
            (got, t.elapsed())
        });
        std::thread::sleep(Duration::from_millis(50));
        socket.shutdown(std::net::Shutdown::Both).unwrap();
        let (got, waited) = waiting.join().unwrap();
        assert!(matches!(got, Err(FrameError::Closed)), "{got:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
    }

    #[test]
    fn a_write_waiting_on_a_full_pipe_ends_when_the_peer_leaves() {
        let (daemon, mut app) = pair();
        let gone = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(daemon);
        });
        // 1 MiB to a daemon that never reads: the write waits until the daemon is gone.
        let err = send(&mut app, &vec![7u8; 1 << 20]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
        gone.join().unwrap();
    }

    #[test]
    fn a_long_answer_is_written_whole_to_a_peer_that_sent_early() {
        let (mut daemon, mut app) = pair();
        let reader = std::thread::spawn(move || {
            // The next request before the answer: no reason for kysod to stop writing.
            send(&mut app, &b"next".to_vec()).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            receive(&mut app).unwrap()
        });
        let answer = vec![9u8; 1 << 20];
        send(&mut daemon, &answer).unwrap();
        assert_eq!(reader.join().unwrap(), answer);
        assert_eq!(receive(&mut daemon).unwrap(), b"next");
    }

    #[test]
    fn a_client_without_pipes_is_served_over_the_socket() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut daemon = Channel::over_socket(a).unwrap();
        let mut buf = Vec::new();
        frame::write(&mut b, &b"over the socket".to_vec(), &mut buf).unwrap();
        let got = receive(&mut daemon).unwrap();
        send(&mut daemon, &got).unwrap();
        let back: Vec<u8> = frame::read(&mut b, &mut buf).unwrap();
        assert_eq!(back, b"over the socket");
        drop(b);
        assert!(matches!(receive(&mut daemon), Err(FrameError::Closed)));
    }
}
