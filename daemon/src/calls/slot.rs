//! Slot and token functions: the slot list, slot and token information, mechanisms, events.

use cryptoki_sys as ck;
use kyso_proto::{MechanismInfo, Pin, Reply, SlotInfo, TokenInfo, Ulong, Version};

use crate::client::Client;
use crate::error::Rv;
use crate::server::Daemon;
use crate::token::Token;

fn version(v: ck::CK_VERSION) -> Version {
    Version {
        major: v.major,
        minor: v.minor,
    }
}

fn present_token(d: &Daemon, slot: Ulong) -> Result<std::sync::Arc<Token>, Rv> {
    let token = d.registry.token(slot).ok_or(Rv(ck::CKR_SLOT_ID_INVALID))?;
    if !token.is_present() {
        return Err(Rv(ck::CKR_TOKEN_NOT_PRESENT));
    }
    Ok(token)
}

pub fn slot_list(d: &Daemon, token_present: bool) -> Result<Reply, Rv> {
    d.registry.rescan();
    Ok(Reply::SlotList(d.registry.slots(token_present)))
}

pub fn slot_info(d: &Daemon, slot: Ulong) -> Result<Reply, Rv> {
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

pub fn token_info(d: &Daemon, slot: Ulong) -> Result<Reply, Rv> {
    let token = present_token(d, slot)?;
    let i = token.module.token_info(token.module_slot)?;
    let protected = if d.pin.protected_path {
        ck::CKF_PROTECTED_AUTHENTICATION_PATH
    } else {
        0
    };
    Ok(Reply::TokenInfo(TokenInfo {
        label: i.label.to_vec(),
        manufacturer: i.manufacturerID.to_vec(),
        model: i.model.to_vec(),
        serial: i.serialNumber.to_vec(),
        flags: i.flags | protected,
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
        utc_time: i.utcTime.to_vec(),
    }))
}

pub fn mechanism_list(d: &Daemon, slot: Ulong) -> Result<Reply, Rv> {
    let token = present_token(d, slot)?;
    Ok(Reply::Mechanisms(
        token.module.mechanism_list(token.module_slot)?,
    ))
}

pub fn mechanism_info(d: &Daemon, slot: Ulong, mechanism: Ulong) -> Result<Reply, Rv> {
    let token = present_token(d, slot)?;
    let i = token.module.mechanism_info(token.module_slot, mechanism)?;
    Ok(Reply::MechanismInfo(MechanismInfo {
        min_key_size: i.ulMinKeySize,
        max_key_size: i.ulMaxKeySize,
        flags: i.flags,
    }))
}

pub fn init_token(
    d: &Daemon,
    slot: Ulong,
    so_pin: Option<&Pin>,
    label: &[u8],
) -> Result<Reply, Rv> {
    let token = present_token(d, slot)?;
    let mut padded = [b' '; 32];
    let n = label.len().min(32);
    padded[..n].copy_from_slice(&label[..n]);
    let result = token
        .module
        .init_token(token.module_slot, so_pin.map(Pin::expose), &padded);
    tracing::info!(slot, serial = %token.serial, rv = %result.err().unwrap_or(Rv::OK), "token initialisation");
    result?;
    token
        .login
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .reset();
    Ok(Reply::None)
}

/// `C_WaitForSlotEvent` with `CKF_DONT_BLOCK`.
pub fn poll_event(d: &Daemon, c: &Client) -> Result<Reply, Rv> {
    let mut cursor = c.event_cursor.lock().unwrap_or_else(|e| e.into_inner());
    d.registry
        .events
        .poll(&mut cursor)
        .map(Reply::Slot)
        .ok_or(Rv(ck::CKR_NO_EVENT))
}
