//! The libvirt domain XML Nova 34's libvirt driver defines for an instance, rendered from a [`DiskMapping`].
//!
//! The shape follows what `virsh dumpxml` printed for a real Nova 34 instance on libvirt 9 /
//! QEMU 7.2 (Nova's metadata element, sysinfo, `<os>` with the versioned machine type and
//! `<boot dev>` from the boot indexes, features, cpu, clock, then the devices) and Listing 1 of
//! the article for the disks. Device addresses are assigned the way libvirt does: on i440fx the
//! PIIX3 sits in slot 1 (IDE at function 1, UHCI at function 2), the primary video card takes
//! slot 2, then controllers, network interfaces, virtio disks, the balloon and the RNG take the
//! next slots in that order (which is why the article's `vda` sits in slot 4, behind video and
//! the NIC). On q35 and aarch64 `virt` every PCI Express device gets its own `pcie-root-port`,
//! and q35's built-in AHCI controller is at 00:1f.2. IDE disks are addressed by channel and unit
//! (`hdb` = bus 0 unit 1), SATA/SCSI/floppy disks by unit.

use std::io::Cursor;

use quick_xml::Writer;
use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};
use serde::{Deserialize, Serialize};

use super::blockinfo::{DiskBus, DiskMapping, VirtType, device_index};
use crate::guest::{Arch, Firmware};

/// Where Nova keeps instance directories on a compute host.
pub const DEFAULT_INSTANCES_PATH: &str = "/var/lib/nova/instances";
/// The Nova release the metadata and sysinfo claim.
pub const NOVA_VERSION: &str = "34.0.0";

/// The flavor as Nova records it in the domain metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainFlavor {
    pub id: String,
    pub name: String,
    pub memory_mb: u64,
    pub vcpus: u32,
    pub root_gb: u64,
    pub ephemeral_gb: u64,
    pub swap_mb: u64,
}

/// The boot image as Nova records it in the domain metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainImage {
    pub id: String,
    pub disk_format: String,
    pub container_format: String,
    pub min_disk: u64,
    pub min_ram: u64,
}

/// A network port plugged into the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInterface {
    pub port_id: String,
    pub mac: String,
    /// NIC model (`virtio`, `e1000`, `rtl8139`...), from `hw_vif_model`.
    pub model: String,
}

/// Everything the domain XML says besides the disks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainSpec {
    /// The database id behind `instance-%08x`.
    pub instance_id: u64,
    pub uuid: String,
    pub display_name: String,
    /// `YYYY-MM-DD HH:MM:SS`, as Nova writes `nova:creationTime`.
    pub creation_time: String,
    pub flavor: DomainFlavor,
    pub image: DomainImage,
    /// The boot image's properties (Nova lists them in `nova:properties`; `os_type` and `hw_video_model` also shape the domain).
    pub image_properties: std::collections::BTreeMap<String, String>,
    pub user_id: String,
    pub user_name: String,
    pub project_id: String,
    pub project_name: String,
    /// Directory holding instance directories, normally [`DEFAULT_INSTANCES_PATH`].
    pub instances_path: String,
    pub interfaces: Vec<NetworkInterface>,
    /// Whether the host has VNC enabled (adds graphics, a video card and a USB tablet).
    pub vnc: bool,
}

impl DomainSpec {
    /// libvirt's domain name for the instance.
    pub fn domain_name(&self) -> String {
        format!("instance-{:08x}", self.instance_id)
    }

    /// The instance directory on the simulated host.
    pub fn instance_dir(&self) -> String {
        format!("{}/{}", self.instances_path.trim_end_matches('/'), self.uuid)
    }
}

/// A rendering failure (only possible if the underlying writer fails).
#[derive(Debug, thiserror::Error)]
#[error("cannot write domain xml")]
pub struct DomainError(#[source] std::io::Error);

/// Renders the domain XML (without an XML declaration, as `virsh dumpxml` prints it).
pub fn render_domain(spec: &DomainSpec, mapping: &DiskMapping) -> Result<String, DomainError> {
    let mut x = Xml::new();
    let windows = spec.image_properties.get("os_type").is_some_and(|v| v == "windows");
    let x86 = mapping.arch != Arch::Aarch64;
    let q35 = mapping.machine_type.contains("q35");
    let pcie = mapping.is_pcie();
    let dir = spec.instance_dir();
    let mut pci = PciAllocator::new(pcie, spec.vnc);

    x.open("domain", &[("type", mapping.virt_type.as_str())]);
    x.text("name", &[], &spec.domain_name());
    x.text("uuid", &[], &spec.uuid);
    metadata(&mut x, spec);
    let kib = (spec.flavor.memory_mb * 1024).to_string();
    x.text("memory", &[("unit", "KiB")], &kib);
    x.text("currentMemory", &[("unit", "KiB")], &kib);
    x.text("vcpu", &[("placement", "static")], &spec.flavor.vcpus.to_string());
    x.text("iothreads", &[], "1");
    if x86 {
        x.open("sysinfo", &[("type", "smbios")]);
        x.open("system", &[]);
        for (name, value) in [
            ("manufacturer", "OpenStack Foundation"),
            ("product", "OpenStack Nova"),
            ("version", NOVA_VERSION),
            ("serial", spec.uuid.as_str()),
            ("uuid", spec.uuid.as_str()),
            ("family", "Virtual Machine"),
        ] {
            x.text("entry", &[("name", name)], value);
        }
        x.close("system");
        x.close("sysinfo");
    }

    let arch = mapping.arch.as_str();
    if mapping.firmware == Firmware::Uefi {
        x.open("os", &[("firmware", "efi")]);
    } else {
        x.open("os", &[]);
    }
    x.text("type", &[("arch", arch), ("machine", &mapping.machine_type)], "hvm");
    if mapping.firmware == Firmware::Uefi {
        let secure = if mapping.secure_boot { "yes" } else { "no" };
        x.open("firmware", &[]);
        x.empty("feature", &[("enabled", secure), ("name", "enrolled-keys")]);
        x.empty("feature", &[("enabled", secure), ("name", "secure-boot")]);
        x.close("firmware");
        let (code, vars) = match (mapping.arch, mapping.secure_boot) {
            (Arch::Aarch64, _) => ("/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd"),
            (_, true) => ("/usr/share/OVMF/OVMF_CODE_4M.ms.fd", "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"),
            (_, false) => ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
        };
        x.text("loader", &[("readonly", "yes"), ("secure", secure), ("type", "pflash")], code);
        let nvram = format!("/var/lib/libvirt/qemu/nvram/{}_VARS.fd", spec.domain_name());
        x.text("nvram", &[("template", vars)], &nvram);
    }
    for dev in mapping.boot_devices() {
        x.empty("boot", &[("dev", dev.boot_dev())]);
    }
    if x86 {
        x.empty("smbios", &[("mode", "sysinfo")]);
    }
    x.close("os");

    x.open("features", &[]);
    x.empty("acpi", &[]);
    if x86 {
        x.empty("apic", &[]);
    }
    if windows {
        x.open("hyperv", &[("mode", "custom")]);
        x.empty("relaxed", &[("state", "on")]);
        x.empty("vapic", &[("state", "on")]);
        x.empty("spinlocks", &[("state", "on"), ("retries", "8191")]);
        x.close("hyperv");
    }
    if mapping.arch == Arch::Aarch64 {
        x.empty("gic", &[("version", "3")]);
    }
    if mapping.secure_boot && x86 {
        x.empty("smm", &[("state", "on")]);
    }
    x.empty("vmcoreinfo", &[("state", "on")]);
    x.close("features");

    // Nova prefers sockets when the flavor and image say nothing about the topology.
    let sockets = spec.flavor.vcpus.to_string();
    let topology = [("sockets", sockets.as_str()), ("dies", "1"), ("cores", "1"), ("threads", "1")];
    match (mapping.virt_type, mapping.arch) {
        (VirtType::Kvm, _) => x.open("cpu", &[("mode", "host-model"), ("check", "partial")]),
        (_, Arch::Aarch64) => {
            x.open("cpu", &[("mode", "custom"), ("match", "exact"), ("check", "none")]);
            x.text("model", &[("fallback", "forbid")], "max");
        }
        _ => {
            x.open("cpu", &[("mode", "custom"), ("match", "exact"), ("check", "none")]);
            x.text("model", &[("fallback", "forbid")], "qemu64");
        }
    }
    x.empty("topology", &topology);
    x.close("cpu");

    x.open("clock", &[("offset", if windows { "localtime" } else { "utc" })]);
    if x86 && (windows || mapping.virt_type == VirtType::Kvm) {
        x.empty("timer", &[("name", "pit"), ("tickpolicy", "delay")]);
        x.empty("timer", &[("name", "rtc"), ("tickpolicy", "catchup")]);
        x.empty("timer", &[("name", "hpet"), ("present", "no")]);
        if windows {
            x.empty("timer", &[("name", "hypervclock"), ("present", "yes")]);
        }
    }
    x.close("clock");
    x.text("on_poweroff", &[], "destroy");
    x.text("on_reboot", &[], "restart");
    x.text("on_crash", &[], "destroy");

    // PCI slots in libvirt's order: controllers, NICs, virtio disks, balloon, RNG.
    let uses = |bus: DiskBus| mapping.disks.iter().any(|d| d.bus == bus);
    let sata_addr = if q35 {
        Some(PciAddr { bus: 0, slot: 0x1f, function: 2 })
    } else if uses(DiskBus::Sata) {
        Some(pci.next())
    } else {
        None
    };
    let scsi_addr = uses(DiskBus::Scsi).then(|| pci.next());
    let usb = spec.vnc || uses(DiskBus::Usb);
    let usb_addr = match (usb, pcie) {
        (false, _) => None,
        (true, false) => Some(PciAddr { bus: 0, slot: 1, function: 2 }),
        (true, true) => Some(pci.next()),
    };
    let nic_addrs: Vec<PciAddr> = spec.interfaces.iter().map(|_| pci.next()).collect();
    let disk_addrs: Vec<Option<PciAddr>> =
        mapping.disks.iter().map(|d| (d.bus == DiskBus::Virtio).then(|| pci.next())).collect();
    let balloon_addr = pci.next();
    let rng_addr = pci.next();

    x.open("devices", &[]);
    let emulator = if x86 { "/usr/bin/qemu-system-x86_64" } else { "/usr/bin/qemu-system-aarch64" };
    x.text("emulator", &[], emulator);
    for (disk, addr) in mapping.disks.iter().zip(&disk_addrs) {
        x.open("disk", &[("type", "file"), ("device", disk.device.as_str())]);
        x.empty("driver", &[("name", "qemu"), ("type", disk.format.as_str()), ("cache", "none")]);
        x.empty("source", &[("file", &format!("{dir}/{}", disk.file_name))]);
        x.empty("target", &[("dev", &disk.dev), ("bus", disk.bus.as_str())]);
        if disk.readonly {
            x.empty("readonly", &[]);
        }
        let index = device_index(&disk.dev).unwrap_or(0);
        match disk.bus {
            DiskBus::Virtio => {
                if let Some(addr) = addr {
                    addr.write(&mut x);
                }
            }
            DiskBus::Ide => drive_address(&mut x, index / 2, index % 2),
            DiskBus::Sata | DiskBus::Scsi | DiskBus::Fdc => drive_address(&mut x, 0, index),
            DiskBus::Usb => {
                let port = (index + if spec.vnc { 2 } else { 1 }).to_string();
                x.empty("address", &[("type", "usb"), ("bus", "0"), ("port", &port)]);
            }
        }
        x.close("disk");
    }

    match usb_addr {
        Some(addr) => {
            let model = if pcie { "qemu-xhci" } else { "piix3-uhci" };
            x.open("controller", &[("type", "usb"), ("index", "0"), ("model", model)]);
            addr.write(&mut x);
            x.close("controller");
        }
        None => x.empty("controller", &[("type", "usb"), ("index", "0"), ("model", "none")]),
    }
    x.empty("controller", &[("type", "pci"), ("index", "0"), ("model", if pcie { "pcie-root" } else { "pci-root" })]);
    for (index, port_addr) in pci.root_ports() {
        x.open("controller", &[("type", "pci"), ("index", &index.to_string()), ("model", "pcie-root-port")]);
        x.empty("model", &[("name", "pcie-root-port")]);
        let chassis = index.to_string();
        let port = format!("0x{:x}", 0x10 + index - 1);
        x.empty("target", &[("chassis", &chassis), ("port", &port)]);
        port_addr.write_multifunction(&mut x);
        x.close("controller");
    }
    if !pcie {
        x.open("controller", &[("type", "ide"), ("index", "0")]);
        PciAddr { bus: 0, slot: 1, function: 1 }.write(&mut x);
        x.close("controller");
    }
    if let Some(addr) = sata_addr {
        x.open("controller", &[("type", "sata"), ("index", "0")]);
        addr.write(&mut x);
        x.close("controller");
    }
    if let Some(addr) = scsi_addr {
        let model = if mapping.arch == Arch::Aarch64 { "virtio-scsi" } else { "lsilogic" };
        x.open("controller", &[("type", "scsi"), ("index", "0"), ("model", model)]);
        addr.write(&mut x);
        x.close("controller");
    }
    if uses(DiskBus::Fdc) {
        x.empty("controller", &[("type", "fdc"), ("index", "0")]);
    }

    for (iface, addr) in spec.interfaces.iter().zip(&nic_addrs) {
        x.open("interface", &[("type", "ethernet")]);
        x.empty("mac", &[("address", &iface.mac)]);
        let tap: String = format!("tap{}", iface.port_id.chars().take(11).collect::<String>());
        x.empty("target", &[("dev", &tap)]);
        x.empty("model", &[("type", &iface.model)]);
        x.empty("mtu", &[("size", "1442")]);
        addr.write(&mut x);
        x.close("interface");
    }

    let log = format!("{dir}/console.log");
    x.open("serial", &[("type", "pty")]);
    x.empty("log", &[("file", &log), ("append", "off")]);
    let (target_type, model) = if x86 { ("isa-serial", "isa-serial") } else { ("system-serial", "pl011") };
    x.open("target", &[("type", target_type), ("port", "0")]);
    x.empty("model", &[("name", model)]);
    x.close("target");
    x.close("serial");
    x.open("console", &[("type", "pty")]);
    x.empty("log", &[("file", &log), ("append", "off")]);
    x.empty("target", &[("type", "serial"), ("port", "0")]);
    x.close("console");

    if spec.vnc {
        x.open("input", &[("type", "tablet"), ("bus", "usb")]);
        x.empty("address", &[("type", "usb"), ("bus", "0"), ("port", "1")]);
        x.close("input");
    }
    if x86 {
        x.empty("input", &[("type", "mouse"), ("bus", "ps2")]);
        x.empty("input", &[("type", "keyboard"), ("bus", "ps2")]);
    }
    if spec.vnc {
        x.open("graphics", &[("type", "vnc"), ("port", "-1"), ("autoport", "yes"), ("listen", "127.0.0.1")]);
        x.empty("listen", &[("type", "address"), ("address", "127.0.0.1")]);
        x.close("graphics");
    }
    x.empty("audio", &[("id", "1"), ("type", "none")]);
    if spec.vnc {
        let model = spec.image_properties.get("hw_video_model").map(String::as_str).unwrap_or("virtio");
        x.open("video", &[]);
        x.empty("model", &[("type", model), ("heads", "1"), ("primary", "yes")]);
        pci.video_address().write(&mut x);
        x.close("video");
    }
    if let Some(tpm) = mapping.tpm {
        x.open("tpm", &[("model", tpm.model.as_str())]);
        x.empty("backend", &[("type", "emulator"), ("version", tpm.version.as_str())]);
        x.close("tpm");
    }
    x.open("memballoon", &[("model", "virtio"), ("autodeflate", "on"), ("freePageReporting", "on")]);
    x.empty("stats", &[("period", "10")]);
    balloon_addr.write(&mut x);
    x.close("memballoon");
    x.open("rng", &[("model", "virtio")]);
    x.text("backend", &[("model", "random")], "/dev/urandom");
    rng_addr.write(&mut x);
    x.close("rng");
    x.close("devices");
    x.close("domain");
    x.finish()
}

fn metadata(x: &mut Xml, spec: &DomainSpec) {
    x.open("metadata", &[]);
    x.open("nova:instance", &[("xmlns:nova", "http://openstack.org/xmlns/libvirt/nova/1.1")]);
    x.empty("nova:package", &[("version", NOVA_VERSION)]);
    x.text("nova:name", &[], &spec.display_name);
    x.text("nova:creationTime", &[], &spec.creation_time);
    let f = &spec.flavor;
    x.open("nova:flavor", &[("name", &f.name), ("id", &f.id)]);
    x.text("nova:memory", &[], &f.memory_mb.to_string());
    x.text("nova:disk", &[], &f.root_gb.to_string());
    x.text("nova:swap", &[], &f.swap_mb.to_string());
    x.text("nova:ephemeral", &[], &f.ephemeral_gb.to_string());
    x.text("nova:vcpus", &[], &f.vcpus.to_string());
    x.empty("nova:extraSpecs", &[]);
    x.close("nova:flavor");
    let i = &spec.image;
    x.open("nova:image", &[("uuid", &i.id)]);
    x.text("nova:containerFormat", &[], &i.container_format);
    x.text("nova:diskFormat", &[], &i.disk_format);
    x.text("nova:minDisk", &[], &i.min_disk.to_string());
    x.text("nova:minRam", &[], &i.min_ram.to_string());
    if spec.image_properties.is_empty() {
        x.empty("nova:properties", &[]);
    } else {
        x.open("nova:properties", &[]);
        for (k, v) in &spec.image_properties {
            x.text("nova:property", &[("name", k)], v);
        }
        x.close("nova:properties");
    }
    x.close("nova:image");
    x.open("nova:owner", &[]);
    x.text("nova:user", &[("uuid", &spec.user_id)], &spec.user_name);
    x.text("nova:project", &[("uuid", &spec.project_id)], &spec.project_name);
    x.close("nova:owner");
    x.empty("nova:root", &[("type", "image"), ("uuid", &i.id)]);
    if spec.interfaces.is_empty() {
        x.empty("nova:ports", &[]);
    } else {
        x.open("nova:ports", &[]);
        for iface in &spec.interfaces {
            x.empty("nova:port", &[("uuid", &iface.port_id)]);
        }
        x.close("nova:ports");
    }
    x.close("nova:instance");
    x.close("metadata");
}

fn drive_address(x: &mut Xml, bus: usize, unit: usize) {
    let (bus, unit) = (bus.to_string(), unit.to_string());
    x.empty("address", &[("type", "drive"), ("controller", "0"), ("bus", &bus), ("target", "0"), ("unit", &unit)]);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PciAddr {
    bus: u32,
    slot: u32,
    function: u32,
}

impl PciAddr {
    fn attrs(&self) -> [(&'static str, String); 5] {
        [
            ("type", "pci".to_string()),
            ("domain", "0x0000".to_string()),
            ("bus", format!("0x{:02x}", self.bus)),
            ("slot", format!("0x{:02x}", self.slot)),
            ("function", format!("0x{:x}", self.function)),
        ]
    }

    fn write(&self, x: &mut Xml) {
        let attrs = self.attrs();
        let refs: Vec<(&str, &str)> = attrs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        x.empty("address", &refs);
    }

    fn write_multifunction(&self, x: &mut Xml) {
        let attrs = self.attrs();
        let mut refs: Vec<(&str, &str)> = attrs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if self.function == 0 {
            refs.push(("multifunction", "on"));
        }
        x.empty("address", &refs);
    }
}

/// Hands out PCI addresses as libvirt does: i440fx slots from 3 (2 without video), or one
/// root port per device on PCI Express machines (ports at 00:02.x, eight functions a slot).
struct PciAllocator {
    pcie: bool,
    next_slot: u32,
    ports: u32,
}

impl PciAllocator {
    fn new(pcie: bool, video: bool) -> PciAllocator {
        PciAllocator { pcie, next_slot: if video { 3 } else { 2 }, ports: 0 }
    }

    fn next(&mut self) -> PciAddr {
        if self.pcie {
            self.ports += 1;
            PciAddr { bus: self.ports, slot: 0, function: 0 }
        } else {
            let slot = self.next_slot;
            self.next_slot += 1;
            PciAddr { bus: 0, slot, function: 0 }
        }
    }

    fn video_address(&self) -> PciAddr {
        if self.pcie { PciAddr { bus: 0, slot: 1, function: 0 } } else { PciAddr { bus: 0, slot: 2, function: 0 } }
    }

    /// The root ports handed out, with their own addresses on the root bus.
    fn root_ports(&self) -> Vec<(u32, PciAddr)> {
        (1..=self.ports).map(|i| (i, PciAddr { bus: 0, slot: 2 + (i - 1) / 8, function: (i - 1) % 8 })).collect()
    }
}

/// A small wrapper over quick-xml's writer that keeps the first IO error.
struct Xml {
    writer: Writer<Cursor<Vec<u8>>>,
    error: Option<std::io::Error>,
}

impl Xml {
    fn new() -> Xml {
        Xml { writer: Writer::new_with_indent(Cursor::new(Vec::new()), b' ', 2), error: None }
    }

    fn event(&mut self, event: Event<'_>) {
        if let Err(e) = self.writer.write_event(event)
            && self.error.is_none()
        {
            self.error = Some(e);
        }
    }

    fn start<'a>(name: &'a str, attrs: &[(&'a str, &'a str)]) -> BytesStart<'a> {
        let mut start = BytesStart::new(name);
        for attr in attrs {
            start.push_attribute(*attr);
        }
        start
    }

    fn open(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.event(Event::Start(Xml::start(name, attrs)));
    }

    fn close(&mut self, name: &str) {
        self.event(Event::End(BytesEnd::new(name)));
    }

    fn empty(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.event(Event::Empty(Xml::start(name, attrs)));
    }

    fn text(&mut self, name: &str, attrs: &[(&str, &str)], text: &str) {
        self.event(Event::Start(Xml::start(name, attrs)));
        self.event(Event::Text(BytesText::new(text)));
        self.event(Event::End(BytesEnd::new(name)));
    }

    fn finish(self) -> Result<String, DomainError> {
        if let Some(e) = self.error {
            return Err(DomainError(e));
        }
        let mut bytes = self.writer.into_inner().into_inner();
        bytes.push(b'\n');
        String::from_utf8(bytes).map_err(|e| DomainError(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
    }
}

#[cfg(test)]
mod tests;
