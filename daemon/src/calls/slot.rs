//! Slot and token functions: the slot list, slot and token information, mechanisms, events.

use cryptoki_sys as ck;
use kyso_proto::{MechanismInfo, Pin, Reply, SlotInfo, TokenInfo, Ulong, Version};

use crate::client::Client;
use crate::error::Rv;
use crate::state::State;
use crate::token::Token;
use crate::tries::PinKind;

fn version(v: ck::CK_VERSION) -> Version {
    Version {
        major: v.major,
        minor: v.minor,
    }
}

fn present_token(d: &State, slot: Ulong) -> Result<std::sync::Arc<Token>, Rv> {
    let token = d.registry.token(slot).ok_or(Rv(ck::CKR_SLOT_ID_INVALID))?;
    if !token.is_present() {
        return Err(Rv(ck::CKR_TOKEN_NOT_PRESENT));
    }
    Ok(token)
}

pub fn slot_list(d: &State, token_present: bool) -> Result<Reply, Rv> {
    d.registry.rescan();
    Ok(Reply::SlotList(d.registry.slots(token_present)))
}

pub fn slot_info(d: &State, slot: Ulong) -> Result<Reply, Rv> {
    let token = d.registry.token(slot).ok_or(Rv(ck::CKR_SLOT_ID_INVALID))?;
    if token.is_present() {
        if let Ok(info) = token.module.slot_info(token.module_slot) {
            return Ok(Reply::SlotInfo(SlotInfo {
                description: info.slotDescription.to_vec(),
                manufacturer: info.manufacturerID.to_vec(),
                flags: info.flags | ck::CKF_TOKEN_PRESENT,
                hardware_version: version(info.hardwareVersion),
                firmware_version: version(info.firmwareVersion),
            }));
        }
    }
    // A known token that is not plugged in keeps its slot, shown empty.
    Ok(Reply::SlotInfo(SlotInfo {
        description: format!("kyso slot for {}", token.label).into_bytes(),
        manufacturer: token.manufacturer.clone().into_bytes(),
        flags: ck::CKF_REMOVABLE_DEVICE,
        hardware_version: Version { major: 0, minor: 0 },
        firmware_version: Version { major: 0, minor: 0 },
    }))
}

pub fn token_info(d: &State, slot: Ulong) -> Result<Reply, Rv> {
    let token = present_token(d, slot)?;
    let i = token.module.token_info(token.module_slot)?;
    let protected = if d.settings().pin.protected_path {
        ck::CKF_PROTECTED_AUTHENTICATION_PATH
    } else {
        0
    };
    let (clock, utc_time) = token_clock(i.flags, i.utcTime);
    Ok(Reply::TokenInfo(TokenInfo {
        label: i.label.to_vec(),
        manufacturer: i.manufacturerID.to_vec(),
        model: i.model.to_vec(),
        serial: i.serialNumber.to_vec(),
        flags: (i.flags & !ck::CKF_CLOCK_ON_TOKEN) | clock | protected,
        max_session_count: i.ulMaxSessionCount,
        session_count: i.ulSessionCount,
        max_rw_session_count: i.ulMaxRwSessionCount,
        rw_session_count: i.ulRwSessionCount,
        max_pin_len: i.ulMaxPinLen,
        min_pin_len: i.ulMinPinLen,
        total_public_memory: i.ulTotalPublicMemory,
        free_public_memory: i.ulFreePublicMemory,
        total_private_memory: i.ulTotalPrivateMemory,
        free_private_memory: i.ulFreePrivateMemory,
        hardware_version: version(i.hardwareVersion),
        firmware_version: version(i.firmwareVersion),
        utc_time,
    }))
}

/// The token's clock as applications may rely on it: `CKF_CLOCK_ON_TOKEN` and `utcTime` when
/// the time is in PKCS#11's form (`YYYYMMDDhhmmss` and two reserved characters), else no
/// clock and a blank time. Some modules flag a clock and fill in something else
/// (opencryptoki's soft token writes the host's time of day, `15:34:22`), which
/// applications that parse the time — the `cryptoki` crate among them — fail on.
fn token_clock(flags: Ulong, utc: [u8; 16]) -> (Ulong, Vec<u8>) {
    if flags & ck::CKF_CLOCK_ON_TOKEN != 0 && utc[..14].iter().all(u8::is_ascii_digit) {
        (ck::CKF_CLOCK_ON_TOKEN, utc.to_vec())
    } else {
        (0, vec![b' '; 16])
    }
}

pub fn mechanism_list(d: &State, slot: Ulong) -> Result<Reply, Rv> {
    let token = present_token(d, slot)?;
    Ok(Reply::Mechanisms(
        token.module.mechanism_list(token.module_slot)?,
    ))
}

pub fn mechanism_info(d: &State, slot: Ulong, mechanism: Ulong) -> Result<Reply, Rv> {
    let token = present_token(d, slot)?;
    let i = token.module.mechanism_info(token.module_slot, mechanism)?;
    Ok(Reply::MechanismInfo(MechanismInfo {
        min_key_size: i.ulMinKeySize,
        max_key_size: i.ulMaxKeySize,
        flags: i.flags,
    }))
}

/// `C_InitToken`: checks the SO PIN, so it goes through the guard of every PIN try.
pub fn init_token(
    d: &State,
    c: &Client,
    slot: Ulong,
    so_pin: Option<&Pin>,
    label: &[u8],
) -> Result<Reply, Rv> {
    let token = present_token(d, slot)?;
    let mut padded = [b' '; 32];
    let n = label.len().min(32);
    padded[..n].copy_from_slice(&label[..n]);
    let result = super::session::guarded_try(
        d,
        c,
        &token,
        false,
        |_| Some(PinKind::So),
        |login, tally| {
            let result =
                token
                    .module
                    .init_token(token.module_slot, so_pin.map(Pin::expose), &padded);
            tally.record(result);
            if result.is_ok() {
                // A new token: no user PIN yet, and nobody logged in.
                d.pin_failures.succeeded(&token.serial, PinKind::User);
                login.reset(&token.module);
            }
            result
        },
    )
    .and_then(|r| r);
    tracing::info!(slot, serial = %token.serial, rv = %result.err().unwrap_or(Rv::OK), "token initialisation");
    result.map(|()| Reply::None)
}

/// `C_WaitForSlotEvent` with `CKF_DONT_BLOCK`.
pub fn poll_event(d: &State, c: &Client) -> Result<Reply, Rv> {
    let mut cursor = c.event_cursor.lock();
    d.registry
        .events
        .poll(&mut cursor)
        .map(Reply::Slot)
        .ok_or(Rv(ck::CKR_NO_EVENT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_formed_token_clock_is_passed_on() {
        let (flag, time) = token_clock(ck::CKF_CLOCK_ON_TOKEN | 1, *b"2026112315342200");
        assert_eq!(flag, ck::CKF_CLOCK_ON_TOKEN);
        assert_eq!(time, b"2026112315342200");
    }

    #[test]
    fn a_malformed_or_absent_clock_is_not_offered() {
        let mut opencryptoki = [0u8; 16];
        opencryptoki[..8].copy_from_slice(b"15:34:22");
        for (flags, utc) in [
            (ck::CKF_CLOCK_ON_TOKEN, opencryptoki),
            (ck::CKF_CLOCK_ON_TOKEN, [b' '; 16]),
            (0, *b"2026112315342200"),
        ] {
            assert_eq!(token_clock(flags, utc), (0, vec![b' '; 16]));
        }
    }
}
