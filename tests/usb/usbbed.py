"""Emulated USB token devices for kyso's hotplug tests, on umockdev.

Run the driving process under `umockdev-wrapper` with Debian's /usr/bin/python3 (it has `gi`).
A device is a sysfs description (what udev and libusb's enumeration read) plus a small usbdevfs
ioctl emulation answering GET_DESCRIPTOR control transfers, so that libusb can read the
serial number string. Insertion sends the "add" uevent; removal sends "remove" and then drops
the device (umockdev's remove_device alone sends nothing).
"""

import errno
import struct
import sys

import gi

gi.require_version("UMockdev", "1.0")
from gi.repository import UMockdev  # noqa: E402

# usbdevfs ioctl numbers (x86-64)
SUBMITURB, REAPURB, REAPURBNDELAY, DISCARDURB = 0x8038550A, 0x4008550C, 0x4008550D, 0x550B
GET_CAPABILITIES, CLAIMIF, RELEASEIF = 0x8004551A, 0x8004550F, 0x80045510
URB_TYPE_CONTROL = 2
URB_SIZE = 56  # struct usbdevfs_urb up to the iso frame descriptors


def device_descriptors(vid, pid):
    """Device + configuration descriptors of a CCID smart-card token (one bulk in/out pair)."""
    device = struct.pack("<BBHBBBBHHHBBBB", 18, 1, 0x0200, 0, 0, 0, 64, vid, pid, 0x0100, 1, 2, 3, 1)
    ccid = struct.pack("<BBHBBIIIBIIBIIIIIBBHBB", 54, 0x21, 0x0100, 0, 7, 3, 4000, 4000, 0,
                       10752, 10752, 0, 254, 0, 0, 0x000404BE, 271, 0xFF, 0xFF, 0, 0, 1)
    interface = struct.pack("<9B", 9, 4, 0, 0, 2, 0x0B, 0, 0, 0)
    endpoints = struct.pack("<BBBBHB", 7, 5, 0x81, 2, 64, 0) + struct.pack("<BBBBHB", 7, 5, 0x02, 2, 64, 0)
    body = interface + ccid + endpoints
    config = struct.pack("<BBHBBBBB", 9, 2, 9 + len(body), 1, 1, 0, 0x80, 50)
    return device + config + body


class Usbdevfs:
    """Answers libusb's usbdevfs ioctls for one device node: descriptors and string reads."""

    def __init__(self):
        self.descriptors = b""
        self.strings = {}
        self.pending = []
        self.handler = UMockdev.IoctlBase()
        self.handler.connect("handle-ioctl", self._ioctl)

    def _control(self, setup):
        request_type, request, value, _index, length = struct.unpack("<BBHHH", setup)
        if request_type != 0x80 or request != 6:  # only standard GET_DESCRIPTOR
            return None
        kind, index = value >> 8, value & 0xFF
        if kind == 1:
            data = self.descriptors[:18]
        elif kind == 2:
            data = self.descriptors[18:]
        elif kind == 3 and index == 0:
            data = bytes([4, 3, 0x09, 0x04])  # language ids: en-US
        elif kind == 3 and index in self.strings:
            text = self.strings[index].encode("utf-16-le")
            data = bytes([2 + len(text), 3]) + text
        else:
            return None
        return data[:length]

    def _ioctl(self, _handler, client):
        request, arg = client.get_request(), client.get_arg()
        try:
            if request == GET_CAPABILITIES:
                arg.resolve(0, 4).update(0, struct.pack("<I", 0))
            elif request in (CLAIMIF, RELEASEIF):
                pass
            elif request == SUBMITURB:
                urb = arg.resolve(0, URB_SIZE)
                raw = urb.retrieve()
                if raw[0] != URB_TYPE_CONTROL:
                    client.complete(-1, errno.ENODEV)
                    return True
                length = struct.unpack_from("<i", raw, 24)[0]
                buffer = urb.resolve(16, length)
                self.pending.append((urb, buffer, self._control(buffer.retrieve()[:8])))
            elif request in (REAPURB, REAPURBNDELAY):
                if not self.pending:
                    client.complete(-1, errno.EAGAIN)
                    return True
                urb, buffer, answer = self.pending.pop(0)
                if answer is None:  # stall
                    urb.update(4, struct.pack("<i", -errno.EPIPE))
                    urb.update(28, struct.pack("<i", 0))
                else:
                    buffer.update(8, answer)
                    urb.update(4, struct.pack("<i", 0))
                    urb.update(28, struct.pack("<i", len(answer)))
                arg.resolve(0, 8).set_ptr(0, urb)
            elif request == DISCARDURB:
                client.complete(-1, errno.EINVAL)
                return True
            else:
                print(f"usbbed: unhandled ioctl 0x{request:x}", file=sys.stderr)
                return False
        except Exception as e:  # the emulation must not take the test down
            print("usbbed: ioctl failed:", e, file=sys.stderr)
            client.complete(-1, errno.EIO)
            return True
        client.complete(0, 0)
        return True


class UsbBed:
    """A umockdev test bed holding emulated USB tokens, one per (bus, address)."""

    def __init__(self):
        self.testbed = UMockdev.Testbed.new()
        if not UMockdev.in_mock_environment():
            raise SystemExit("run me under umockdev-wrapper")
        self.root = self.testbed.get_root_dir()
        self.nodes = {}

    def insert(self, vid, pid, serial, addr, port, bus=1, manufacturer="kyso", product="token"):
        """Plugs a device; returns its sysfs path (for `remove`)."""
        syspath = f"/devices/pci0000:00/0000:00:14.0/usb{bus}/{bus}-{port}"
        devnode = f"/dev/bus/usb/{bus:03d}/{addr:03d}"
        minor = (bus - 1) * 128 + addr - 1
        descriptors = device_descriptors(vid, pid)
        emulation = self.nodes.get(devnode)
        if emulation is None:
            emulation = self.nodes[devnode] = Usbdevfs()
            self.testbed.attach_ioctl(devnode, emulation.handler)
        emulation.descriptors = descriptors
        emulation.strings = {1: manufacturer, 2: product}
        if serial is not None:
            emulation.strings[3] = serial
        attrs = [
            ("idVendor", f"{vid:04x}"), ("idProduct", f"{pid:04x}"),
            ("manufacturer", manufacturer), ("product", product),
            ("busnum", str(bus)), ("devnum", str(addr)), ("speed", "12"),
            ("bConfigurationValue", "1"), ("bNumConfigurations", "1"), ("dev", f"189:{minor}"),
        ]
        if serial is not None:
            attrs.append(("serial", serial))
        lines = [
            f"P: {syspath}",
            f"N: bus/usb/{bus:03d}/{addr:03d}",
            "E: SUBSYSTEM=usb", "E: DEVTYPE=usb_device", "E: DRIVER=usb",
            f"E: DEVNAME={devnode}", f"E: BUSNUM={bus:03d}", f"E: DEVNUM={addr:03d}",
            "E: MAJOR=189", f"E: MINOR={minor}", f"E: PRODUCT={vid:x}/{pid:x}/100",
            f"E: ID_VENDOR_ID={vid:04x}", f"E: ID_MODEL_ID={pid:04x}",
        ]
        lines += [f"A: {k}={v}\\n" for k, v in attrs]
        lines.append(f"H: descriptors={descriptors.hex().upper()}")
        self.testbed.add_from_string("\n".join(lines) + "\n")
        return "/sys" + syspath

    def remove(self, syspath):
        self.testbed.uevent(syspath, "remove")
        self.testbed.remove_device(syspath)
