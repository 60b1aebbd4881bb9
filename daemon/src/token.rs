//! The token registry: which tokens exist, in which module and module slot, under which stable
//! kyso slot id, and whether they are present. Presence is driven by scans of the modules'
//! slot lists (for `always_present` modules) and, for USB-bound tokens, by device events.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cryptoki_sys as ck;
use kyso_proto::audit::AuditEvent;
use kyso_proto::standing::{certificate_standing, Standing};
use kyso_proto::{CertificateStatus, TokenStatus, Ulong};
use parking_lot::{Condvar, Mutex, RwLock};

use crate::audit::{Journal, TokenRef};
use crate::certs::{self, CertFacts, SigningCert};
use crate::error::Rv;
use crate::events::SlotEvents;
use crate::login::TokenLogin;
use crate::module::Module;
use crate::slots::SlotTable;

/// A configured module, loaded on first need.
pub struct ModuleEntry {
    pub path: PathBuf,
    pub always_present: bool,
    loaded: Mutex<Option<Arc<Module>>>,
    /// Set once loading failed, so a broken module is reported once, not on every scan.
    failed: AtomicBool,
}

impl ModuleEntry {
    pub fn new(path: PathBuf, always_present: bool) -> ModuleEntry {
        ModuleEntry {
            path,
            always_present,
            loaded: Mutex::new(None),
            failed: AtomicBool::new(false),
        }
    }

    /// The loaded module, loading it now if needed.
    pub fn module(&self) -> Option<Arc<Module>> {
        let mut loaded = self.loaded.lock();
        if let Some(m) = &*loaded {
            return Some(m.clone());
        }
        match Module::load(&self.path) {
            Ok(m) => {
                tracing::info!(module = %self.path.display(), serialised = m.serialised(), "module loaded");
                let m = Arc::new(m);
                *loaded = Some(m.clone());
                self.failed.store(false, Ordering::Relaxed);
                Some(m)
            }
            Err(e) => {
                if !self.failed.swap(true, Ordering::Relaxed) {
                    tracing::error!(error = %e, "module unavailable");
                }
                None
            }
        }
    }
}

/// One token, known under a stable slot id.
pub struct Token {
    pub slot: Ulong,
    pub module: Arc<Module>,
    pub module_slot: ck::CK_SLOT_ID,
    pub serial: String,
    pub label: String,
    pub model: String,
    pub manufacturer: String,
    present: AtomicBool,
    /// Who is logged in through kysod; see [`crate::login`].
    pub login: Mutex<TokenLogin>,
    /// The certificates on the token, read when it arrived.
    pub certificates: Vec<CertificateStatus>,
    /// The certificate of each signing key, by module key handle (`None`: a key without a
    /// readable certificate), read at the key's first signature and forgotten when a client
    /// changes the token's objects.
    signing_certs: Mutex<HashMap<Ulong, Option<Arc<CertFacts>>>>,
    /// The public keys that had a certificate on the token while kysod served it: one whose
    /// certificate is gone no longer signs.
    certified: Mutex<HashSet<certs::PublicKey>>,
}

impl Token {
    pub fn is_present(&self) -> bool {
        self.present.load(Ordering::Acquire)
    }

    /// The token as the audit journal names it.
    pub fn audit_ref(&self) -> TokenRef<'_> {
        TokenRef {
            serial: &self.serial,
            label: &self.label,
            slot: self.slot,
        }
    }

    /// The certificate of the signing key `key`, looked up through the module `session`: the
    /// one whose public key is the key's, among the token's certificates read now (one with the
    /// same `CKA_ID` but another key is not the key's). A key whose certificate kysod has seen
    /// and is gone is refused; a key that never had one signs as a device key. When the module
    /// shows nothing of the key's public half, the certificate of the same `CKA_ID` is taken.
    /// A failed look-up is an error and is not remembered; a key without certificate is.
    pub fn signing_cert(
        &self,
        session: ck::CK_SESSION_HANDLE,
        key: Ulong,
    ) -> Result<Option<Arc<CertFacts>>, Rv> {
        if let Some(hit) = self.signing_certs.lock().get(&key) {
            return Ok(hit.clone());
        }
        let found = match certs::public_key_of(&self.module, self.module_slot, session, key) {
            Some(public) => {
                let on_token = certs::token_certificates(&self.module, self.module_slot);
                let id = certs::key_id(&self.module, session, key).map(|id| certs::hex(&id));
                let mut matching: Vec<_> = on_token
                    .into_iter()
                    .filter(|c| c.facts.public_key.as_ref() == Some(&public))
                    .collect();
                // Several certificates of one key (a renewal): the one of the key's CKA_ID.
                matching.sort_by_key(|c| Some(&c.status.id) != id.as_ref());
                match matching.into_iter().next() {
                    Some(cert) => {
                        self.certified.lock().insert(public);
                        Some(Arc::new(cert.facts))
                    }
                    None if self.certified.lock().contains(&public) => {
                        tracing::warn!(token = %self.serial, slot = self.slot, "Từ chối ký: chứng thư số của khóa này không còn trên thiết bị / Signature refused: the certificate of this key is no longer on the token");
                        return Err(Rv(ck::CKR_KEY_FUNCTION_NOT_PERMITTED));
                    }
                    None => {
                        tracing::debug!(
                            slot = self.slot,
                            "no certificate for the signing key (a device key)"
                        );
                        None
                    }
                }
            }
            None => self.certificate_by_id(session, key)?,
        };
        self.signing_certs.lock().insert(key, found.clone());
        Ok(found)
    }

    /// The certificate of the same `CKA_ID` as `key`, for a key whose public half the module
    /// does not show.
    fn certificate_by_id(
        &self,
        session: ck::CK_SESSION_HANDLE,
        key: Ulong,
    ) -> Result<Option<Arc<CertFacts>>, Rv> {
        let Some(id) = certs::key_id(&self.module, session, key) else {
            return Ok(None);
        };
        let der = certs::certificate_der(&self.module, self.module_slot, &id)
            .inspect_err(|rv| tracing::warn!(%rv, token = %self.serial, "cannot look up the signing certificate: signature refused"))?;
        Ok(der.and_then(|der| match certs::parse_certificate(&der) {
            Ok(facts) => Some(Arc::new(facts)),
            Err(e) => {
                tracing::warn!(slot = self.slot, id = %certs::hex(&id), error = %e, "the signing key's certificate cannot be parsed: signed as a key without certificate");
                None
            }
        }))
    }

    /// A client changed the token's objects: certificates are read again when next needed.
    pub fn objects_changed(&self) {
        self.signing_certs.lock().clear();
    }
}

/// Waits before each re-read of a module's slot list after a device arrived: CCID readers
/// take a moment before the token shows.
const ARRIVAL_BACKOFF_MS: [u64; 8] = [0, 10, 20, 50, 100, 200, 400, 800];

pub struct Registry {
    modules: Vec<ModuleEntry>,
    /// Modules of USB token models, by path, loaded on a matching device's first arrival.
    usb_modules: Mutex<HashMap<PathBuf, Arc<ModuleEntry>>>,
    /// Plugged devices (bus path) and the slot each is bound to.
    bound: Mutex<HashMap<String, Ulong>>,
    tokens: RwLock<BTreeMap<Ulong, Arc<Token>>>,
    table: Mutex<SlotTable>,
    /// Held while scanning; a caller that finds a scan under way uses the current view.
    scanning: Mutex<()>,
    /// Held by the thread that ends shared logins while it decides how long to sleep.
    sharing: Mutex<()>,
    sharing_changed: Condvar,
    pub events: SlotEvents,
    /// The audit journal: token arrivals and removals.
    audit: Journal,
    /// Days before a certificate's expiry from which its arrival is announced with a warning.
    warn_days: u32,
}

/// Logs a certificate of an arriving token that is not valid yet, or whose standing the user
/// should hear of before signing (renew by, too late to renew, expired).
fn announce(token_serial: &str, cert: &CertFacts, warn_days: u32) {
    let now = certs::now();
    let holder = cert.holder();
    if now < cert.not_before {
        tracing::warn!(token = %token_serial, cert_serial = %cert.serial, %holder, "Chứng thư số chưa có hiệu lực (từ ngày {d}) / The certificate is not valid before {d}", d = certs::date(cert.not_before));
        return;
    }
    let standing = certificate_standing(cert.not_after, now, warn_days);
    if standing != Standing::Valid {
        tracing::warn!(token = %token_serial, cert_serial = %cert.serial, %holder, standing = %standing, "{}", standing.text(cert.not_after));
    }
}

/// A PKCS#11 blank-padded fixed-size text field as a trimmed string.
pub fn field_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim_end_matches([' ', '\0'])
        .to_string()
}

impl Registry {
    pub fn new(
        modules: Vec<ModuleEntry>,
        table: SlotTable,
        audit: Journal,
        warn_days: u32,
    ) -> Registry {
        Registry {
            modules,
            usb_modules: Mutex::new(HashMap::new()),
            bound: Mutex::new(HashMap::new()),
            tokens: RwLock::new(BTreeMap::new()),
            table: Mutex::new(table),
            scanning: Mutex::new(()),
            sharing: Mutex::new(()),
            sharing_changed: Condvar::new(),
            events: SlotEvents::default(),
            audit,
            warn_days,
        }
    }

    pub fn token(&self, slot: Ulong) -> Option<Arc<Token>> {
        self.tokens.read().get(&slot).cloned()
    }

    pub fn slots(&self, present_only: bool) -> Vec<Ulong> {
        let tokens = self.tokens.read();
        tokens
            .values()
            .filter(|t| !present_only || t.is_present())
            .map(|t| t.slot)
            .collect()
    }

    /// Every token known, present or not (a snapshot: the registry is not locked after).
    fn all_tokens(&self) -> Vec<Arc<Token>> {
        self.tokens.read().values().cloned().collect()
    }

    pub fn status(&self) -> Vec<TokenStatus> {
        self.all_tokens()
            .iter()
            .map(|t| TokenStatus {
                slot: t.slot,
                present: t.is_present(),
                label: t.label.clone(),
                serial: t.serial.clone(),
                model: t.model.clone(),
                manufacturer: t.manufacturer.clone(),
                module: t.module.path().display().to_string(),
                flags: if t.is_present() {
                    t.module
                        .token_info(t.module_slot)
                        .map(|i| i.flags)
                        .unwrap_or(0)
                } else {
                    0
                },
                certificates: t.certificates.clone(),
            })
            .collect()
    }

    /// A login began to be shared: [`Registry::expire_shared_logins`] takes its end in.
    pub fn shared_logins_changed(&self) {
        let _sharing = self.sharing.lock();
        self.sharing_changed.notify_all();
    }

    /// Ends each login shared across applications when its time is up, sleeping in between
    /// (until the next end, or until a login begins to be shared). Never returns.
    pub fn expire_shared_logins(&self) {
        let mut sharing = self.sharing.lock();
        loop {
            let now = std::time::Instant::now();
            let mut next = None;
            for t in self.all_tokens() {
                let mut login = t.login.lock();
                login.expire(&t.module, now);
                next = next.into_iter().chain(login.shared_until()).min();
            }
            match next {
                Some(until) => {
                    self.sharing_changed.wait_until(&mut sharing, until);
                }
                None => self.sharing_changed.wait(&mut sharing),
            }
        }
    }

    /// Re-reads the slot lists of the always-present modules and updates presence. When a scan
    /// is already running the caller goes on with the current view instead of waiting on a
    /// possibly slow module.
    pub fn rescan(&self) {
        let Some(_scan) = self.scanning.try_lock() else {
            return;
        };
        for entry in self.modules.iter().filter(|m| m.always_present) {
            let Some(module) = entry.module() else {
                continue;
            };
            let slots = match module.slot_list(true) {
                Ok(s) => s,
                Err(rv) => {
                    tracing::warn!(module = %entry.path.display(), %rv, "cannot list the module's slots");
                    continue;
                }
            };
            let mut seen = HashSet::new();
            for module_slot in slots {
                let info = match module.token_info(module_slot) {
                    Ok(i) => i,
                    Err(rv) => {
                        tracing::debug!(module = %entry.path.display(), module_slot, %rv, "no token info");
                        continue;
                    }
                };
                // SoftHSM2 and others offer an uninitialised token in a spare slot: not a
                // token anyone can use, so it is not offered.
                if info.flags & ck::CKF_TOKEN_INITIALIZED == 0 {
                    continue;
                }
                let slot = self.arrive(&module, module_slot, &info);
                seen.insert(slot);
            }
            let gone: Vec<Arc<Token>> = self
                .tokens
                .read()
                .values()
                .filter(|t| {
                    Arc::ptr_eq(&t.module, &module) && t.is_present() && !seen.contains(&t.slot)
                })
                .cloned()
                .collect();
            for t in gone {
                self.depart(&t);
            }
        }
    }

    /// Records a token seen in `module_slot`; returns its stable slot id.
    fn arrive(
        &self,
        module: &Arc<Module>,
        module_slot: ck::CK_SLOT_ID,
        info: &ck::CK_TOKEN_INFO,
    ) -> Ulong {
        let serial = field_text(&info.serialNumber);
        let label = field_text(&info.label);
        let module_path = module.path().display().to_string();
        let slot = self.table.lock().slot_for(&module_path, &serial, &label);
        let same = self.token(slot).is_some_and(|t| {
            t.is_present() && t.module_slot == module_slot && Arc::ptr_eq(&t.module, module)
        });
        if same {
            return slot;
        }
        // Read outside the registry's lock: a slow token must not hold up the others.
        let certificates = certs::token_certificates(module, module_slot);
        for cert in &certificates {
            announce(&serial, &cert.facts, self.warn_days);
        }
        let seen: Vec<SigningCert> = certificates
            .iter()
            .map(|c| SigningCert::new(&c.facts, certs::class_of_uid(c.facts.uid.as_deref())))
            .collect();
        let mut tokens = self.tokens.write();
        let token = Arc::new(Token {
            slot,
            module: module.clone(),
            module_slot,
            serial: serial.clone(),
            label: label.clone(),
            model: field_text(&info.model),
            manufacturer: field_text(&info.manufacturerID),
            present: AtomicBool::new(true),
            login: Mutex::new(Default::default()),
            certified: Mutex::new(
                certificates
                    .iter()
                    .filter_map(|c| c.facts.public_key.clone())
                    .collect(),
            ),
            certificates: certificates.into_iter().map(|c| c.status).collect(),
            signing_certs: Default::default(),
        });
        tokens.insert(slot, token.clone());
        drop(tokens);
        tracing::info!(slot, %serial, %label, module = %module_path, "token present");
        self.audit
            .token_event(AuditEvent::TokenPresent, token.audit_ref());
        for cert in &seen {
            self.audit.certificate_seen(token.audit_ref(), cert);
        }
        self.events.publish(slot);
        slot
    }

    /// Marks a token absent and forgets who was logged in. Sessions on it fail from now on
    /// (see [`crate::client`]).
    fn depart(&self, token: &Arc<Token>) {
        token.present.store(false, Ordering::Release);
        token.login.lock().reset(&token.module);
        tracing::info!(slot = token.slot, serial = %token.serial, label = %token.label, "token removed");
        self.audit
            .token_event(AuditEvent::TokenRemoved, token.audit_ref());
        self.events.publish(token.slot);
    }

    /// The loaded module at `path` for a USB token: a configured `[[module]]` of that path, or
    /// one kept for USB tokens, loaded now if needed.
    fn usb_module(&self, path: &Path) -> Option<Arc<Module>> {
        if let Some(entry) = self.modules.iter().find(|m| m.path == path) {
            return entry.module();
        }
        let entry = self
            .usb_modules
            .lock()
            .entry(path.to_path_buf())
            .or_insert_with(|| Arc::new(ModuleEntry::new(path.to_path_buf(), false)))
            .clone();
        entry.module()
    }

    /// A token device was plugged: finds its token in the first of `modules` that loads and
    /// shows it, marks it present and binds it to `bus_path`. The token is the one whose serial
    /// equals the device's `serial`; failing that (no serial, or none matches once the backoff
    /// is over) the first initialised token, in the module's slot order, not bound to another
    /// device. Returns the slot id.
    pub fn device_arrived(
        &self,
        modules: &[PathBuf],
        bus_path: &str,
        serial: Option<&str>,
    ) -> Option<Ulong> {
        if let Some(slot) = self.bound_slot(bus_path) {
            return Some(slot);
        }
        let loaded: Vec<Arc<Module>> = modules.iter().filter_map(|p| self.usb_module(p)).collect();
        if loaded.is_empty() {
            tracing::warn!(%bus_path, "none of the token's modules can be loaded");
            return None;
        }
        for (i, wait) in ARRIVAL_BACKOFF_MS.iter().enumerate() {
            std::thread::sleep(Duration::from_millis(*wait));
            // With a serial, fall back to slot order only on the last try.
            let by_order = serial.is_none() || i + 1 == ARRIVAL_BACKOFF_MS.len();
            for module in &loaded {
                if let Some((module_slot, info)) = self.find_token(module, serial, by_order) {
                    let slot = self.arrive(module, module_slot, &info);
                    self.bound.lock().insert(bus_path.to_string(), slot);
                    tracing::debug!(%bus_path, slot, tries = i + 1, "device bound to its token");
                    return Some(slot);
                }
            }
        }
        tracing::warn!(%bus_path, serial = serial.unwrap_or(""), "device plugged but no token of its modules showed");
        None
    }

    fn bound_slot(&self, bus_path: &str) -> Option<Ulong> {
        self.bound.lock().get(bus_path).copied()
    }

    /// An initialised token of `module` for a device with `serial`; see [`Self::device_arrived`].
    fn find_token(
        &self,
        module: &Arc<Module>,
        serial: Option<&str>,
        by_order: bool,
    ) -> Option<(ck::CK_SLOT_ID, ck::CK_TOKEN_INFO)> {
        let slots = match module.slot_list(true) {
            Ok(s) => s,
            Err(rv) => {
                tracing::debug!(module = %module.path().display(), %rv, "cannot list the module's slots");
                return None;
            }
        };
        let mut first_unbound = None;
        for module_slot in slots {
            let Ok(info) = module.token_info(module_slot) else {
                continue;
            };
            if info.flags & ck::CKF_TOKEN_INITIALIZED == 0 {
                continue;
            }
            if serial.is_some_and(|s| s == field_text(&info.serialNumber)) {
                return Some((module_slot, info));
            }
            if first_unbound.is_none() && by_order && !self.in_use(module, module_slot) {
                first_unbound = Some((module_slot, info));
            }
        }
        first_unbound
    }

    /// Whether a present token already sits in `module_slot` of `module`.
    fn in_use(&self, module: &Arc<Module>, module_slot: ck::CK_SLOT_ID) -> bool {
        self.tokens.read().values().any(|t| {
            t.is_present() && t.module_slot == module_slot && Arc::ptr_eq(&t.module, module)
        })
    }

    /// A token device was unplugged: its token is absent at once, its logins are forgotten and
    /// slot-event waiters are woken. Unknown devices are ignored.
    pub fn device_left(&self, bus_path: &str) {
        let slot = self.bound.lock().remove(bus_path);
        let Some(slot) = slot else {
            tracing::debug!(%bus_path, "unplugged device was not a bound token; ignored");
            return;
        };
        match self.token(slot) {
            Some(token) if token.is_present() => self.depart(&token),
            _ => tracing::debug!(%bus_path, slot, "unplugged token was already absent"),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The registry's device binding against real SoftHSM2 tokens (the fixture script's two),
    //! without USB: the device events are what the hotplug source would report.
    use super::*;

    const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";

    /// A fresh fixture directory with tokens A and B; (dir, SERIAL_A, SERIAL_B).
    fn fixture() -> Option<(PathBuf, String, String)> {
        if !Path::new(SOFTHSM).exists() {
            eprintln!("SoftHSM2 missing: skipped");
            return None;
        }
        let mut bytes = [0u8; 8];
        getrandom::getrandom(&mut bytes).ok()?;
        let dir = std::env::temp_dir().join(format!("kyso-usb-{}", u64::from_le_bytes(bytes)));
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/softhsm-token.sh");
        let out = std::process::Command::new(script)
            .arg(&dir)
            .arg("--second")
            .output()
            .ok()?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env = String::from_utf8_lossy(&out.stdout).to_string();
        let value = |key: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim_matches('"').to_string())
        };
        // The process's only SoftHSM2 user (nextest runs each test in its own process).
        std::env::set_var("SOFTHSM2_CONF", dir.join("softhsm2.conf"));
        Some((dir, value("SERIAL_A=")?, value("SERIAL_B=")?))
    }

    /// The fixture, SoftHSM2 as the USB tokens' module, and a registry on the fixture's state.
    fn usb_fixture() -> Option<(PathBuf, String, String, [PathBuf; 1], Registry)> {
        let (dir, a, b) = fixture()?;
        let r = Registry::new(Vec::new(), SlotTable::open(&dir), Journal::open(&dir), 60);
        Some((dir, a, b, [PathBuf::from(SOFTHSM)], r))
    }

    fn present_serials(r: &Registry) -> Vec<String> {
        let mut s: Vec<_> = r
            .status()
            .into_iter()
            .filter(|t| t.present)
            .map(|t| t.serial)
            .collect();
        s.sort();
        s
    }

    #[test]
    fn devices_bind_to_tokens_by_serial_and_keep_their_slots() {
        let Some((dir, a, b, modules, r)) = usb_fixture() else {
            return;
        };
        r.rescan();
        assert!(
            present_serials(&r).is_empty(),
            "a USB module's tokens need a device"
        );

        // B first: binding goes by serial, not by the module's slot order.
        let slot_b = r.device_arrived(&modules, "001/003", Some(&b)).unwrap();
        let slot_a = r.device_arrived(&modules, "001/002", Some(&a)).unwrap();
        assert_ne!(slot_a, slot_b);
        assert_eq!(r.token(slot_a).unwrap().serial, a);
        assert_eq!(r.token(slot_b).unwrap().serial, b);
        r.rescan();
        assert_eq!(
            present_serials(&r).len(),
            2,
            "rescan leaves USB tokens alone"
        );

        let cursor = r.events.cursor();
        r.device_left("001/002");
        assert!(!r.token(slot_a).unwrap().is_present());
        assert_eq!(present_serials(&r), std::slice::from_ref(&b));
        let mut c = cursor;
        assert_eq!(r.events.poll(&mut c), Some(slot_a));
        r.device_left("001/002"); // twice: ignored
        r.device_left("009/009"); // never plugged: ignored

        // Re-plugged on another address: same slot id, a new token object.
        assert_eq!(
            r.device_arrived(&modules, "001/007", Some(&a)),
            Some(slot_a)
        );
        assert!(r.token(slot_a).unwrap().is_present());
        // A repeated arrival of a bound device changes nothing.
        assert_eq!(
            r.device_arrived(&modules, "001/007", Some(&a)),
            Some(slot_a)
        );

        // The same slot ids after a restart (a new registry on the same state).
        let again = Registry::new(Vec::new(), SlotTable::open(&dir), Journal::open(&dir), 60);
        assert_eq!(
            again.device_arrived(&modules, "001/002", Some(&a)),
            Some(slot_a)
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn without_a_serial_the_first_unbound_token_is_taken() {
        let Some((dir, a, b, modules, r)) = usb_fixture() else {
            return;
        };
        let first = r.device_arrived(&modules, "001/002", None).unwrap();
        let second = r.device_arrived(&modules, "001/003", None).unwrap();
        assert_ne!(first, second);
        assert_eq!(present_serials(&r), {
            let mut v = vec![a, b];
            v.sort();
            v
        });
        // No module that loads: nothing bound, no panic.
        assert_eq!(
            r.device_arrived(&[PathBuf::from("/nonexistent.so")], "001/004", None),
            None
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_shared_login_outlives_its_application_but_not_the_token() {
        let Some((dir, a, _, modules, r)) = usb_fixture() else {
            return;
        };
        let pin = kyso_proto::Pin::new(b"123456");
        let state = |m: &Module, session| m.session_state(session).unwrap();
        // Client 1 logs in on `session`, the login is shared, and client 1 logs out again.
        let share_and_leave = |token: &Token, session| {
            let m = &token.module;
            let mut login = token.login.lock();
            login
                .login(m, session, 1, ck::CKU_USER, Some(&pin), false)
                .unwrap();
            login.share(m, token.module_slot, Duration::from_secs(60));
            login.logout(m, Some(session), 1).unwrap();
        };

        // A device plugged at `bus`: its token, and a module session on it.
        let plug = |bus: &str| {
            let token = r.token(r.device_arrived(&modules, bus, Some(&a)).unwrap());
            let token = token.unwrap();
            let session = token
                .module
                .open_session(token.module_slot, ck::CKF_SERIAL_SESSION);
            (session.unwrap(), token)
        };

        let (first, token) = plug("001/002");
        let m = &token.module;
        share_and_leave(&token, first);
        // The application has closed its session too: the module stays logged in.
        m.close_session(first).unwrap();
        let probe = m
            .open_session(token.module_slot, ck::CKF_SERIAL_SESSION)
            .unwrap();
        assert_eq!(state(m, probe), ck::CKS_RO_USER_FUNCTIONS);
        // Another application joins without a PIN.
        let mut login = token.login.lock();
        assert!(login.join_shared(m, 2));
        login.logout(m, Some(probe), 2).unwrap();
        drop(login);

        // The device leaves: the shared login goes, and the module is logged out.
        r.device_left("001/002");
        let mut login = token.login.lock();
        assert!(!login.is_logged_in());
        assert!(!login.join_shared(m, 3));
        assert_eq!(state(m, probe), ck::CKS_RO_PUBLIC_SESSION);
        drop(login);
        m.close_session(probe).unwrap();

        // Expiry does the same once the time is up.
        let (first, token) = plug("001/003");
        let m = &token.module;
        share_and_leave(&token, first);
        assert_eq!(state(m, first), ck::CKS_RO_USER_FUNCTIONS);
        let mut login = token.login.lock();
        login.expire(m, std::time::Instant::now() + Duration::from_secs(61));
        assert!(!login.is_logged_in());
        assert_eq!(state(m, first), ck::CKS_RO_PUBLIC_SESSION);
        drop(login);

        // A module that logged out by itself: the shared login is dropped, not retried.
        share_and_leave(&token, first);
        m.logout(first).unwrap();
        let mut login = token.login.lock();
        assert!(!login.join_shared(m, 2));
        assert!(!login.is_logged_in());
        assert_eq!(login.user_of(2), None);
        drop(login);
        m.close_session(first).unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }
}
