//! Prepared signatures: `C_SignInit` done ahead of time, on spare module sessions of kysod's
//! own, for the (mechanism, key) pair an application keeps signing with.
//!
//! With a software token most of a signature's cost is `C_SignInit` (finding the key,
//! decrypting it, building the library's key object). An application signing a batch calls it
//! before every `C_Sign`. kysod, which sees the pair come back, initialises the next
//! operations on spare sessions in a thread of its own while the current signature is made and
//! answered, so that the application's next `C_Sign` only costs the module's `C_Sign`.
//!
//! What keeps this invisible to applications:
//! - A prepared operation is used only for a signature kysod has admitted exactly as before
//!   (the client's session and key handle, the signing policy, the audit journal); it replaces
//!   the module's `C_SignInit` on the client's session and nothing else.
//! - It is used only while the token's login and objects are as they were when it was
//!   prepared (any login or logout at the module, or any object created, changed or destroyed
//!   through kysod, makes it stale), and within [`FRESH`] of being prepared.
//! - It is not used while another operation (a search, a digest …) may be under way on the
//!   client's session, where the module answers `CKR_OPERATION_ACTIVE`
//!   (`Session::other_operation`).
//! - Only keys that are token objects and not `CKA_ALWAYS_AUTHENTICATE` are prepared.
//! - The operations are initialised with a session copy of the key (`C_CopyObject` with
//!   `CKA_TOKEN` false, on a session of kysod's own, see [`KeyCopy`]), made under the same login
//!   and objects and renewed as often as the operations are: a software token that keeps its
//!   objects in files, as SoftHSM2 does, reads the key's file again for every access to a
//!   token object, to see whether another process changed it, and not for a session object.
//!   Session objects of kysod's are never shown to applications (`calls::object::find`). A key
//!   that cannot be copied (`CKA_COPYABLE` false) is used as it is.
//! - A prepared `C_Sign` that fails is not answered: the spare session is closed and the
//!   signature is made the ordinary way on the client's session, whose answer the application
//!   gets.
//!
//! Modules opt in (`prepare_signatures` in the configuration; on by default for modules whose
//! tokens are always present, off for USB token modules, whose cost is the card's and whose
//! vendor code may not take concurrent operations well).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cryptoki_sys as ck;
use kyso_proto::mechanism::Mechanism;
use kyso_proto::wait::current_cpu;
use kyso_proto::{Attribute, AttributeQuery, Operation, Ulong};
use nix::unistd::Pid;

use crate::cpus::CpuSet;
use crate::token::Token;

/// Spare sessions one token may hold open for prepared operations. Enough for the preparing
/// thread to keep ahead of two signing threads: measured at ECDSA 2T, a signature found its
/// operation ready 93–94 % of the time with six, 82–83 % with three, and a miss costs more than
/// its own `C_SignInit` (two initialisations then meet in the module): kysod's and the
/// application's CPU per signature went from 93–104 µs to ~82 µs.
const MAX_SESSIONS: usize = 6;
/// A prepared operation older than this is not used (and its session is closed).
const FRESH: Duration = Duration::from_secs(1);
/// The preparing thread ends, closing its sessions, after this long without work.
const IDLE: Duration = Duration::from_secs(2);
/// How long the preparing thread waits for its next job yielding the CPU before it sleeps:
/// longer than a signature, so that in a batch no job needs a wake-up (~30 µs across CPUs on
/// a small VM). Measured at ECDSA 1T: ~0.9× without it, ~1.05–1.1× with 100–200 µs.
const WAIT_FOR_WORK: Duration = Duration::from_micros(200);
/// How long work must come from one CPU alone before the preparing thread is kept off it
/// again, after work came from several (see `Prepared::keep_off_this_cpu`).
const SETTLE: Duration = Duration::from_millis(2);
/// How long a signature waits, yielding its CPU, for the operation the preparing thread is
/// initialising for its pair, rather than initialising one itself (see [`Prepared::take`]).
const WAIT_FOR_PREPARING: Duration = Duration::from_micros(200);

/// The operation a prepared session holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub mechanism: Mechanism,
    /// The key's module handle.
    pub key: Ulong,
}

/// What a prepared operation was made under; it is used only while this is still current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    login: u64,
    objects: u64,
}

/// A session copy of a token key, which prepared operations are initialised with.
///
/// Measured with SoftHSM2 (one process, `C_SignInit` + `C_Sign` in a loop): an ECDSA P-256
/// signature costs ~55 µs with the token key, ~40 µs with a session copy of it; the token key
/// costs per signature two `openat`, `read`, `close` and `newfstatat` and six `fcntl` locks,
/// which the copy does not (RSA-2048: ~10 µs less system time of ~600 µs).
struct KeyCopy {
    /// The copy's handle; `None` when the key could not be copied (it is then used itself).
    handle: Option<Ulong>,
    /// The [`Keeper`] it was made on.
    keeper: u64,
    stamp: Stamp,
    at: Instant,
}

/// The session kysod's key copies are made on: they go when it is closed. It is closed
/// whenever the module's login changes, rather than the copies destroyed one by one: a logout
/// at the module has destroyed the private ones already, and a module may give their handles
/// to new objects.
struct Keeper {
    session: ck::CK_SESSION_HANDLE,
    login: u64,
    /// Which keeper this is, counted from 1: a copy made on an earlier one went with it, and
    /// its handle may name another object by now.
    id: u64,
}

struct Ready {
    pair: Pair,
    session: ck::CK_SESSION_HANDLE,
    stamp: Stamp,
    at: Instant,
}

/// A session to initialise for `pair`: a spare one already open, or a new one.
struct Job {
    pair: Pair,
    session: Option<ck::CK_SESSION_HANDLE>,
}

#[derive(Default)]
struct State {
    ready: Vec<Ready>,
    jobs: VecDeque<Job>,
    /// Spare sessions open or being opened: ready, queued, or in use by a signature.
    sessions: usize,
    /// Whether a preparing thread runs, and whether it is waiting for work.
    worker: bool,
    sleeping: bool,
    /// Keys checked for preparing (token object, not always-authenticate), per stamp.
    eligible: HashMap<Ulong, (Stamp, bool)>,
    /// The preparing thread's id, once it runs.
    worker_tid: Option<Pid>,
    /// The CPU the preparing thread is kept off (see [`Prepared::keep_off_this_cpu`]), and
    /// whether its CPUs were set since it started.
    kept_off: Option<u32>,
    placed: bool,
    /// The CPU work last came from, and since when work has come from it alone.
    source: Option<(u32, Instant)>,
    /// The pair the preparing thread is initialising an operation for right now.
    working: Option<Pair>,
    /// Session copies of the keys prepared (see [`KeyCopy`]), by the token key's handle, and the
    /// session that holds them.
    copies: HashMap<Ulong, KeyCopy>,
    keeper: Option<Keeper>,
    /// Copies no longer used for new operations, and since when: an operation prepared with
    /// one may still be used for up to [`FRESH`], and some modules end an operation whose
    /// key is gone, so they are destroyed only after that.
    retired: Vec<(Ulong, Instant, u64)>,
    /// Keepers opened so far.
    keepers: u64,
}

/// The prepared operations of one token.
pub struct Prepared {
    enabled: bool,
    /// Bumped whenever the token's objects change through kysod.
    objects: AtomicU64,
    /// How many jobs are queued, readable without the lock.
    queued: AtomicUsize,
    /// Bumped each time the preparing thread is done with a job.
    landed: AtomicU64,
    state: Mutex<State>,
    work: Condvar,
}

/// What [`Prepared::find`] found for a pair.
enum Found {
    Ready(Taken),
    Preparing,
}

/// A prepared session taken for one signature: either handed back to be prepared again, or
/// discarded.
pub struct Taken {
    pub session: ck::CK_SESSION_HANDLE,
    pair: Pair,
}

impl Prepared {
    pub fn new(enabled: bool) -> Prepared {
        Prepared {
            enabled,
            objects: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            landed: AtomicU64::new(0),
            state: Mutex::new(State::default()),
            work: Condvar::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The token's objects changed: every prepared operation is stale.
    pub fn objects_changed(&self) {
        self.objects.fetch_add(1, Ordering::AcqRel);
    }

    /// The current stamp, or `None` when the token is not logged in as the user at the module.
    fn stamp(&self, token: &Token) -> Option<Stamp> {
        let login = token.login.lock().unwrap_or_else(|e| e.into_inner());
        (login.module_user() == Some(ck::CKU_USER)).then(|| Stamp {
            login: login.generation(),
            objects: self.objects.load(Ordering::Acquire),
        })
    }

    /// A session prepared for `pair` under the current login and objects, if one is ready, or
    /// once the one the preparing thread is initialising for `pair` is (for up to
    /// [`WAIT_FOR_PREPARING`]). Stale ones met on the way are closed.
    ///
    /// Why wait: with one signing thread the preparing thread is busy all the time (its
    /// `C_SignInit` is the longer half of a signature), and a signature that finds nothing
    /// ready initialises its own operation, on the client's session, while the preparing
    /// thread initialises one too: two initialisations meeting in the module, each slower.
    /// Measured at ECDSA 1T once frames went through shared pages (stop 16), which brought
    /// the next signature sooner: 2.5–3.8 % of the signatures found nothing ready, against
    /// 0.6 % before, and the rate fell by ~5 %.
    pub fn take(&self, token: &Token, pair: &Pair) -> Option<Taken> {
        if !self.enabled {
            return None;
        }
        // Read first: a job done from now on shows as a change.
        let landed = self.landed.load(Ordering::Acquire);
        match self.find(token, pair)? {
            Found::Ready(taken) => Some(taken),
            Found::Preparing => {
                let since = Instant::now();
                while self.landed.load(Ordering::Acquire) == landed
                    && since.elapsed() < WAIT_FOR_PREPARING
                {
                    std::thread::yield_now();
                }
                match self.find(token, pair)? {
                    Found::Ready(taken) => Some(taken),
                    Found::Preparing => None,
                }
            }
        }
    }

    /// A session ready for `pair`, or whether the preparing thread is initialising one for it
    /// now (`None`: neither). Stale ones met on the way are closed.
    fn find(&self, token: &Token, pair: &Pair) -> Option<Found> {
        let stamp = self.stamp(token)?;
        let mut st = self.state();
        let now = Instant::now();
        let mut stale = Vec::new();
        let mut found = None;
        let mut i = 0;
        while i < st.ready.len() {
            let r = &st.ready[i];
            if r.stamp != stamp || now.duration_since(r.at) > FRESH {
                stale.push(st.ready.swap_remove(i).session);
                continue;
            }
            if found.is_none() && r.pair == *pair {
                found = Some(st.ready.swap_remove(i));
                continue;
            }
            i += 1;
        }
        st.sessions -= stale.len();
        let preparing = st.working.as_ref() == Some(pair);
        drop(st);
        for session in stale {
            let _ = token.module.close_session(session);
        }
        match found {
            Some(r) => Some(Found::Ready(Taken {
                session: r.session,
                pair: r.pair,
            })),
            None => preparing.then_some(Found::Preparing),
        }
    }

    /// The prepared signature was made: the session is prepared again for the same pair.
    pub fn give_back(&self, token: &Arc<Token>, taken: Taken) {
        let job = Job {
            pair: taken.pair,
            session: Some(taken.session),
        };
        let mut st = self.state();
        st.jobs.push_back(job);
        self.kick(token, st);
    }

    /// Closes the spare sessions now (before `C_InitToken`, which a module refuses while any
    /// session is open). A session being prepared at this moment is closed when next met.
    pub fn close_all(&self, token: &Token) {
        let mut st = self.state();
        let dropped = st.ready.len() + st.jobs.len();
        let mut sessions: Vec<_> = st.ready.drain(..).map(|r| r.session).collect();
        sessions.extend(st.jobs.drain(..).filter_map(|j| j.session));
        sessions.extend(Self::drop_copies(&mut st));
        self.queued.store(0, Ordering::Release);
        st.sessions -= dropped;
        drop(st);
        for session in sessions {
            let _ = token.module.close_session(session);
        }
    }

    /// The prepared signature failed: the session is closed.
    pub fn discard(&self, token: &Token, taken: Taken) {
        self.state().sessions -= 1;
        let _ = token.module.close_session(taken.session);
    }

    /// A signature with `pair` was just made the ordinary way (through `session`, the
    /// client's): prepare the next ones, if the key may be prepared.
    pub fn want(&self, token: &Arc<Token>, session: ck::CK_SESSION_HANDLE, pair: &Pair) {
        if !self.enabled {
            return;
        }
        let Some(stamp) = self.stamp(token) else {
            return;
        };
        let known = self.state().eligible.get(&pair.key).copied();
        let eligible = match known {
            Some((s, eligible)) if s == stamp => eligible,
            _ => {
                let eligible = may_prepare(token, session, pair.key);
                self.state().eligible.insert(pair.key, (stamp, eligible));
                eligible
            }
        };
        if !eligible {
            return;
        }
        let mut st = self.state();
        let queued = st.ready.iter().filter(|r| r.pair == *pair).count()
            + st.jobs.iter().filter(|j| j.pair == *pair).count();
        if queued > 0 && st.sessions >= MAX_SESSIONS {
            return;
        }
        // Other pairs' ready sessions make room first.
        let mut freed = Vec::new();
        while st.sessions >= MAX_SESSIONS {
            match st.ready.iter().position(|r| r.pair != *pair) {
                Some(i) => {
                    freed.push(st.ready.swap_remove(i).session);
                    st.sessions -= 1;
                }
                None => break,
            }
        }
        while st.sessions < MAX_SESSIONS {
            st.sessions += 1;
            st.jobs.push_back(Job {
                pair: pair.clone(),
                session: None,
            });
        }
        self.kick(token, st);
        for session in freed {
            let _ = token.module.close_session(session);
        }
    }

    /// Wakes the preparing thread (on a connection's thread, once its next request has come:
    /// see [`wake_deferred`]), or starts one.
    fn kick(&self, token: &Arc<Token>, mut st: MutexGuard<'_, State>) {
        self.queued.store(st.jobs.len(), Ordering::Release);
        if st.worker {
            Self::keep_off_this_cpu(&mut st);
            if st.sleeping {
                if DEFERRING.get() {
                    drop(st);
                    WAKE_LATER.with_borrow_mut(|later| {
                        if !later.iter().any(|t| Arc::ptr_eq(t, token)) {
                            later.push(token.clone());
                        }
                    });
                } else {
                    self.wake(&mut st);
                }
            }
            return;
        }
        st.worker = true;
        drop(st);
        tracing::debug!(token = %token.label, "preparing signatures ahead");
        let worker = token.clone();
        let started = std::thread::Builder::new()
            .name("kysod-prepare".into())
            .spawn(move || worker.prepared.run(&worker));
        if let Err(e) = started {
            tracing::warn!(error = %e, "cannot start the thread preparing signatures");
            let mut st = self.state();
            st.worker = false;
            let dropped: Vec<_> = st.jobs.drain(..).collect();
            self.queued.store(0, Ordering::Release);
            st.sessions -= dropped.len();
            drop(st);
            for session in dropped.into_iter().filter_map(|j| j.session) {
                let _ = token.module.close_session(session);
            }
        }
    }

    /// Wakes the preparing thread if it sleeps waiting for work.
    fn wake(&self, st: &mut State) {
        if st.sleeping {
            st.sleeping = false;
            self.work.notify_one();
        }
    }

    /// Keeps the preparing thread off the CPU of the calling thread, which hands it work and
    /// goes on with its signature (or, served on its caller's CPU, shares it with the
    /// application). Woken on the caller's CPU, as the scheduler tends to, the preparing
    /// thread would stop that signature for its own work: measured at RSA 1T, it ran on the
    /// connection thread's CPU four times in five while both had work, and keeping it off
    /// took RSA 1T from 0.77–0.89× to 0.94–1.04× of SoftHSM2 in process (four pairs of runs).
    /// One system call when the
    /// caller's CPU changes, none in a steady batch. When work comes from several CPUs in
    /// turn (several signing threads), there is no CPU to keep off: the thread may use all of
    /// them, and is kept off one again once work has come from that CPU alone for
    /// [`SETTLE`]. (Until stop 15 it was kept off the next CPU work came from whenever 2 ms
    /// had passed since the last change, and let onto all at the next job from the other
    /// CPU: two `sched_setaffinity` calls every ~2 ms with two signing threads, 0.28 per
    /// signature at RSA 2T; 0.03 now, and migrations of kysod's threads 0.09 → 0.015.)
    fn keep_off_this_cpu(st: &mut State) {
        let (Some(tid), Some(cpu), Some(all)) =
            (st.worker_tid, current_cpu(), CpuSet::of_process())
        else {
            return;
        };
        let now = Instant::now();
        // Since when work has come from this CPU alone.
        let alone_since = match st.source {
            Some((from, since)) if from == cpu => since,
            _ => {
                st.source = Some((cpu, now));
                now
            }
        };
        if st.kept_off == Some(cpu) {
            return;
        }
        let (set, kept_off) = match st.kept_off {
            // Work came from another CPU: all CPUs, until work comes from one CPU alone.
            Some(_) => (all, None),
            None if !st.placed || now.duration_since(alone_since) >= SETTLE => {
                match all.without(cpu) {
                    Some(rest) => (rest, Some(cpu)),
                    None => return,
                }
            }
            None => return,
        };
        if set.apply(Some(tid)) {
            st.kept_off = kept_off;
            st.placed = true;
        }
    }

    /// The preparing thread: initialises queued sessions until idle for [`IDLE`], then closes
    /// the spare sessions and ends.
    fn run(&self, token: &Token) {
        // Started by a connection's thread, it inherited that thread's CPU: it may use all.
        if let Some(all) = CpuSet::of_process() {
            all.apply(None);
        }
        {
            let mut st = self.state();
            st.worker_tid = Some(nix::unistd::gettid());
            st.kept_off = None;
            st.placed = false;
            st.source = None;
        }
        // Whether the last job came within WAIT_FOR_WORK of the thread being free for it.
        let mut quick = true;
        loop {
            // In a batch of quick signatures the next job comes within one signature: wait
            // for it a while without sleeping, yielding the CPU, so that handing it over
            // costs no wake-up. Not when the last job came later than that (long signatures,
            // RSA): the wait would only spend a CPU that the signatures need.
            let since = Instant::now();
            while quick
                && self.queued.load(Ordering::Acquire) == 0
                && since.elapsed() < WAIT_FOR_WORK
            {
                std::thread::yield_now();
            }
            let mut st = self.state();
            let job = loop {
                if let Some(job) = st.jobs.pop_front() {
                    self.queued.store(st.jobs.len(), Ordering::Release);
                    st.working = Some(job.pair.clone());
                    break job;
                }
                st.sleeping = true;
                let (next, timeout) = self
                    .work
                    .wait_timeout(st, IDLE)
                    .unwrap_or_else(|e| e.into_inner());
                st = next;
                st.sleeping = false;
                if timeout.timed_out() && st.jobs.is_empty() {
                    // Decided under the lock, so a job queued from now on starts a new thread.
                    st.worker = false;
                    st.worker_tid = None;
                    let mut sessions: Vec<_> = st.ready.drain(..).map(|r| r.session).collect();
                    st.sessions -= sessions.len();
                    sessions.extend(Self::drop_copies(&mut st));
                    drop(st);
                    for session in sessions {
                        let _ = token.module.close_session(session);
                    }
                    return;
                }
            };
            drop(st);
            quick = since.elapsed() < WAIT_FOR_WORK;
            self.prepare(token, job);
            self.state().working = None;
            self.landed.fetch_add(1, Ordering::Release);
        }
    }

    /// Initialises one queued session (opening it first if needed). A session that cannot be
    /// prepared is closed: the next ordinary signature asks again.
    fn prepare(&self, token: &Token, job: Job) {
        let module = &token.module;
        let Some(stamp) = self.stamp(token) else {
            if let Some(session) = job.session {
                let _ = module.close_session(session);
            }
            self.state().sessions -= 1;
            return;
        };
        let session = match job.session {
            Some(session) => session,
            None => match module.open_session(token.module_slot, ck::CKF_SERIAL_SESSION) {
                Ok(session) => session,
                Err(rv) => {
                    tracing::debug!(%rv, "no spare session to prepare signatures on");
                    self.state().sessions -= 1;
                    return;
                }
            },
        };
        let key = self.copy_of(token, job.pair.key, stamp);
        match module.operation_init(session, Operation::Sign, &job.pair.mechanism, key) {
            Ok(()) => self.state().ready.push(Ready {
                pair: job.pair,
                session,
                stamp,
                at: Instant::now(),
            }),
            Err(rv) => {
                tracing::debug!(%rv, "signature not prepared");
                let _ = module.close_session(session);
                let mut guard = self.state();
                let st = &mut *guard;
                st.sessions -= 1;
                // Should the copy be what failed, the key itself is used until the copy would
                // have been renewed (a copy per job could pile up in the keeping session).
                if let Some(c) = st.copies.get_mut(&job.pair.key) {
                    if let Some(h) = c.handle.take() {
                        st.retired.push((h, Instant::now(), c.keeper));
                    }
                }
            }
        }
    }

    /// The handle to initialise operations for `key` with: its session copy under `stamp`,
    /// made now if there is none that is fresh, or `key` itself if it cannot be copied. Runs
    /// on the preparing thread, the only one that makes copies; stale copies met on the way
    /// are destroyed.
    fn copy_of(&self, token: &Token, key: Ulong, stamp: Stamp) -> Ulong {
        let module = &token.module;
        let now = Instant::now();
        let mut st = self.state();
        if let Some(c) = st.copies.get(&key) {
            if c.stamp == stamp && now.duration_since(c.at) <= FRESH {
                return c.handle.unwrap_or(key);
            }
        }
        // A new login: the copies go with the session that holds them.
        let mut closing = None;
        if st.keeper.as_ref().is_some_and(|k| k.login != stamp.login) {
            closing = Self::drop_copies(&mut st);
        }
        let keeper = st.keeper.as_ref().map(|k| (k.session, k.id));
        let current = keeper.map(|(_, id)| id);
        // Copies made under other objects go now (what was prepared with them is stale too),
        // copies only too old once nothing prepared with them can be used. A copy made on an
        // earlier keeper went with it.
        let mut stale = Vec::new();
        let mut aged = Vec::new();
        st.copies.retain(|_, c| {
            let fresh = c.stamp == stamp && now.duration_since(c.at) <= FRESH;
            match c.handle {
                Some(h) if !fresh && Some(c.keeper) == current => {
                    if c.stamp == stamp {
                        aged.push((h, now, c.keeper));
                    } else {
                        stale.push(h);
                    }
                }
                _ => {}
            }
            fresh
        });
        st.retired.extend(aged);
        st.retired.retain(|&(h, since, on)| {
            let done = now.duration_since(since) > FRESH || Some(on) != current;
            if done && Some(on) == current {
                stale.push(h);
            }
            !done
        });
        drop(st);
        if let Some(session) = closing {
            let _ = module.close_session(session);
        }
        if let Some((session, _)) = keeper {
            for copy in stale {
                let _ = module.destroy_object(session, copy);
            }
        }
        let keeper = match keeper {
            Some(keeper) => Some(keeper),
            None => match module.open_session(token.module_slot, ck::CKF_SERIAL_SESSION) {
                Ok(session) => {
                    let mut st = self.state();
                    st.keepers += 1;
                    let id = st.keepers;
                    st.keeper = Some(Keeper {
                        session,
                        login: stamp.login,
                        id,
                    });
                    Some((session, id))
                }
                Err(rv) => {
                    tracing::debug!(%rv, "no session to copy keys on");
                    None
                }
            },
        };
        let session_object = [Attribute {
            kind: ck::CKA_TOKEN,
            value: Some(vec![ck::CK_FALSE]),
        }];
        let handle = keeper.and_then(|(session, _)| {
            module
                .copy_object(session, key, &session_object)
                .map_err(|rv| tracing::debug!(%rv, "key not copied; preparing with the key itself"))
                .ok()
        });
        if handle.is_some() {
            tracing::debug!("key copied to a session object for preparing");
        }
        self.state().copies.insert(
            key,
            KeyCopy {
                handle,
                keeper: keeper.map_or(0, |(_, id)| id),
                stamp,
                at: Instant::now(),
            },
        );
        handle.unwrap_or(key)
    }

    /// Forgets every key copy; returns the session that holds them, for the caller to close
    /// (outside the lock).
    fn drop_copies(st: &mut State) -> Option<ck::CK_SESSION_HANDLE> {
        st.copies.clear();
        st.retired.clear();
        st.keeper.take().map(|k| k.session)
    }
}

thread_local! {
    /// Whether this thread defers waking preparing threads (see [`defer_wakes`]).
    static DEFERRING: Cell<bool> = const { Cell::new(false) };
    /// The tokens whose preparing thread this thread is to wake (see [`wake_deferred`]).
    static WAKE_LATER: RefCell<Vec<Arc<Token>>> = const { RefCell::new(Vec::new()) };
}

/// Called by a connection's thread: a preparing thread it hands work to while that thread
/// sleeps is woken at this thread's next [`wake_deferred`], not at once.
///
/// The work comes with a signature, before its answer is sent, and a preparing thread woken
/// then takes the CPU it wakes on at once: kept off the connection thread's CPU, that is
/// the application's, which then reads its answer and sends its next request only once the
/// operation is initialised. Measured at RSA 1T (where the preparing thread sleeps between
/// jobs), the connection thread waited ~60–90 µs per signature for the next request, about
/// one `C_SignInit`. Woken once the next request has come, the preparing thread works while
/// the application waits for its answer.
///
/// Deferring ends, and what is pending is woken, when the returned guard is dropped (the
/// connection ends, however it ends).
#[must_use = "deferring ends when the guard is dropped"]
pub fn defer_wakes() -> Deferring {
    DEFERRING.set(true);
    Deferring
}

/// Defers this thread's wakes of preparing threads while it lives (see [`defer_wakes`]).
pub struct Deferring;

impl Drop for Deferring {
    fn drop(&mut self) {
        DEFERRING.set(false);
        wake_deferred();
    }
}

/// Wakes the preparing threads this thread handed work to since its last call: called by a
/// connection's thread once its wait for the next request has ended.
pub fn wake_deferred() {
    for token in WAKE_LATER.take() {
        let prepared = &token.prepared;
        prepared.wake(&mut prepared.state());
    }
}

/// Whether `key` may have its operations prepared: a token object (session objects go with
/// the session that made them) that needs no fresh authentication per signature.
fn may_prepare(token: &Token, session: ck::CK_SESSION_HANDLE, key: Ulong) -> bool {
    let query = |kind| AttributeQuery {
        kind,
        len: Some(std::mem::size_of::<ck::CK_BBOOL>() as Ulong),
    };
    let (_, values) = token.module.get_attributes(
        session,
        key,
        &[query(ck::CKA_TOKEN), query(ck::CKA_ALWAYS_AUTHENTICATE)],
    );
    let flag = |i: usize| {
        values
            .get(i)
            .and_then(|v| v.value.as_deref())
            .map(|v| v.first() == Some(&ck::CK_TRUE))
    };
    flag(0) == Some(true) && flag(1) != Some(true)
}
