//! USB device detection: the device source seam ([`DeviceEvent`]) and its libusb
//! implementation through `rusb` hotplug callbacks.
//!
//! libusb calls the callbacks from the thread running `handle_events`, which blocks without a
//! timeout: an idle kysod uses no CPU. Already-plugged devices arrive at start (`enumerate`).
//! The callbacks only pass the device on: synchronous transfers fail inside libusb's event
//! handling, so a second thread reads the serial string of known token models and forwards a
//! [`DeviceEvent`]; the slow part (loading a module, waiting for its token) is done by the
//! registry thread ([`run_registry`]). Each hop is one ordered channel, so a removal never
//! overtakes its arrival. Where libusb cannot start (no `/dev/bus/usb`, no
//! hotplug support) kysod logs one warning and goes on serving `always_present` modules.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

use rusb::{Context, Device, Hotplug, HotplugBuilder, UsbContext};

use crate::state::State;
use crate::tokentable::TokenTable;

/// A USB device came or went. `bus_path` identifies the device while it is plugged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceEvent {
    Arrived {
        vid: u16,
        pid: u16,
        bus_path: String,
        serial: Option<String>,
    },
    Left {
        bus_path: String,
    },
}

/// The identity of a plugged device: bus number and device address (unique while plugged).
fn bus_path<T: UsbContext>(device: &Device<T>) -> String {
    format!("{:03}/{:03}", device.bus_number(), device.address())
}

/// The device's serial number string, when it has one and it can be read.
fn serial<T: UsbContext>(device: &Device<T>) -> Option<String> {
    let desc = device.device_descriptor().ok()?;
    desc.serial_number_string_index()?;
    let handle = match device.open() {
        Ok(h) => h,
        Err(e) => {
            tracing::debug!(bus_path = %bus_path(device), error = %e, "cannot open the device to read its serial");
            return None;
        }
    };
    // libusb's own control-transfer timeout (1 s) bounds this.
    match handle.read_serial_number_string_ascii(&desc) {
        Ok(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Err(e) => {
            tracing::debug!(bus_path = %bus_path(device), error = %e, "cannot read the device's serial");
            None
        }
    }
}

/// What the hotplug callbacks hand to the serial-reading thread, in the order they happened.
enum Raw {
    Arrived(Device<Context>),
    Left(String),
}

/// The hotplug callbacks. libusb runs them inside its event handling, where synchronous
/// transfers fail (`LIBUSB_ERROR_BUSY`), so reading the serial string is left to
/// [`read_serials`].
struct Forward {
    tx: Sender<Raw>,
}

impl Hotplug<Context> for Forward {
    fn device_arrived(&mut self, device: Device<Context>) {
        let _ = self.tx.send(Raw::Arrived(device));
    }

    fn device_left(&mut self, device: Device<Context>) {
        let _ = self.tx.send(Raw::Left(bus_path(&device)));
    }
}

/// Turns the callbacks' reports into [`DeviceEvent`]s, reading the serial string of the
/// devices `wanted` (known token models; other devices are not opened). One thread, so a
/// removal never overtakes the arrival before it.
fn read_serials(rx: Receiver<Raw>, tx: Sender<DeviceEvent>, wanted: impl Fn(u16, u16) -> bool) {
    for raw in rx {
        let event = match raw {
            Raw::Arrived(device) => {
                let Ok(desc) = device.device_descriptor() else {
                    continue;
                };
                let (vid, pid) = (desc.vendor_id(), desc.product_id());
                DeviceEvent::Arrived {
                    vid,
                    pid,
                    bus_path: bus_path(&device),
                    serial: if wanted(vid, pid) {
                        serial(&device)
                    } else {
                        None
                    },
                }
            }
            Raw::Left(bus_path) => DeviceEvent::Left { bus_path },
        };
        tracing::debug!(?event, "usb device event");
        if tx.send(event).is_err() {
            return;
        }
    }
}

/// Whether this libusb reports hotplug events, asked without libusb's global context (call it
/// after a `Context` was made: libusb asks for an initialised library).
fn has_hotplug() -> bool {
    // SAFETY: `libusb_has_capability` takes no pointers and no context; it reads the backend
    // the library was built with, which a successful `libusb_init` (our `Context`) has set up.
    unsafe { rusb::ffi::libusb_has_capability(rusb::constants::LIBUSB_CAP_HAS_HOTPLUG) != 0 }
}

/// Starts libusb hotplug detection, sending events to `tx`; serial strings are read only for
/// the devices `wanted`. Returns false (after one warning) when USB detection is unavailable.
pub fn start_libusb(
    tx: Sender<DeviceEvent>,
    wanted: impl Fn(u16, u16) -> bool + Send + 'static,
) -> bool {
    // A context of our own first: `rusb::has_hotplug` starts libusb's global context and
    // panics where libusb cannot start (a machine or container without USB: no
    // /dev/bus/usb, no /sys/bus/usb), which would take kysod down with its software tokens.
    let context = match Context::new() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start libusb (is /dev/bus/usb there?): USB tokens will not be detected; always_present modules are still served");
            return false;
        }
    };
    if !has_hotplug() {
        tracing::warn!("this libusb has no hotplug support: USB tokens will not be detected; always_present modules are still served");
        return false;
    }
    let (raw_tx, raw_rx) = channel();
    if let Err(e) = std::thread::Builder::new()
        .name("kysod-usb-serial".into())
        .spawn(move || read_serials(raw_rx, tx, wanted))
    {
        tracing::warn!(error = %e, "cannot start the USB thread: USB tokens will not be detected");
        return false;
    }
    let registration: rusb::Registration<Context> = match HotplugBuilder::new()
        .enumerate(true)
        .register(&context, Box::new(Forward { tx: raw_tx }))
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot register for USB hotplug events: USB tokens will not be detected; always_present modules are still served");
            return false;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("kysod-usb".into())
        .spawn(move || {
            let _registration = registration;
            loop {
                if let Err(e) = context.handle_events(None) {
                    if e != rusb::Error::Interrupted {
                        tracing::error!(error = %e, "libusb event handling failed; USB detection stops");
                        return;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the USB thread: USB tokens will not be detected");
        return false;
    }
    tracing::info!("watching USB devices");
    true
}

/// Applies device events to the registry, matching devices against the token table. Returns
/// when every sender is gone.
pub fn run_registry(rx: Receiver<DeviceEvent>, table: TokenTable, daemon: Arc<State>) {
    for event in rx {
        match event {
            DeviceEvent::Arrived {
                vid,
                pid,
                bus_path,
                serial,
            } => {
                let Some(model) = table.lookup(vid, pid) else {
                    tracing::debug!(usb = %format!("{vid:04x}:{pid:04x}"), %bus_path, "not a known token; ignored");
                    continue;
                };
                tracing::info!(usb = %format!("{vid:04x}:{pid:04x}"), model = %model.name, %bus_path, serial = serial.as_deref().unwrap_or(""), "token device plugged");
                daemon
                    .registry
                    .device_arrived(&model.modules, &bus_path, serial.as_deref());
            }
            DeviceEvent::Left { bus_path } => daemon.registry.device_left(&bus_path),
        }
    }
}

/// Starts USB detection and the registry thread. Returns the sender (kept by the caller, so
/// other device sources can feed the same registry).
pub fn start(table: TokenTable, daemon: Arc<State>) -> Option<Sender<DeviceEvent>> {
    let (tx, rx) = channel();
    let known = table.clone();
    let spawned = std::thread::Builder::new()
        .name("kysod-devices".into())
        .spawn(move || run_registry(rx, table, daemon));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the device thread: USB tokens will not be detected");
        return None;
    }
    start_libusb(tx.clone(), move |vid, pid| known.lookup(vid, pid).is_some());
    Some(tx)
}
