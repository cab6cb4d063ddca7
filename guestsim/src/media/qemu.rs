//! The generated media on a real PC: `qemu-system-x86_64` with the serial port in a file, KVM where the machine
//! has it and software emulation otherwise. It is how the tests prove that an installer ISO really installs and the
//! installed disk really boots, and how they make a disk the tiny installer installed, for image validation.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The emulator every machine runs in.
pub const QEMU: &str = "qemu-system-x86_64";

/// Why a machine did not do what was waited for. Each carries what the serial port held by then.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error("cannot run {QEMU}: {0} (`cargo xtask setup` installs qemu-system-x86)")]
    Spawn(#[source] std::io::Error),
    #[error("{QEMU} exited with {status} while waiting for {while_}; stderr:\n{stderr}\nserial:\n{serial}")]
    Exited { status: ExitStatus, while_: Waiting, stderr: String, serial: String },
    #[error("no sign of {while_} after {timeout:?}; the serial port holds:\n{serial}")]
    TimedOut { while_: Waiting, timeout: Duration, serial: String },
    #[error("cannot wait for {QEMU}: {0}")]
    Wait(#[source] std::io::Error),
}

/// Debian's OVMF builds (package `ovmf`), as libvirt picks them for a Nova guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ovmf {
    /// UEFI without Secure Boot (`OVMF_CODE_4M.fd`): what a `hw_firmware_type=uefi` guest gets.
    Plain,
    /// Secure Boot enforced, with Debian's published test keys ("snakeoil") enrolled in PK, KEK and db: the keys the
    /// UEFI tiny installer is signed with, as an operator's own keys would be.
    SecureBootTestKeys,
}

impl Ovmf {
    /// The firmware's code and the template of its variable store.
    pub fn files(self) -> (&'static str, &'static str) {
        match self {
            Ovmf::Plain => ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
            Ovmf::SecureBootTestKeys => {
                ("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd", "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd")
            }
        }
    }
}

/// What a [`QemuError`] happened while waiting for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// Text on the serial port.
    ForText(String),
    /// The guest powering the machine off.
    ForPowerOff,
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Waiting::ForText(text) => write!(f, "{text:?} on the serial port"),
            Waiting::ForPowerOff => f.write_str("the guest powering the machine off"),
        }
    }
}

/// A running machine with 64 MiB, no network and no display; killed when dropped.
pub struct Machine {
    child: Child,
    serial: PathBuf,
}

impl Machine {
    /// Starts a machine whose serial port goes to `dir/<name>.serial`; `args` are its drives and boot options.
    /// `-no-reboot` makes a guest's reboot end the emulator, as a power-off does.
    pub fn start(dir: &Path, name: &str, args: &[&str]) -> Result<Machine, QemuError> {
        Machine::spawn(dir, name, &["-accel", "kvm", "-accel", "tcg", "-m", "64"], args)
    }

    /// Starts a q35 machine on Debian's OVMF (`firmware`), its variable store a fresh copy of the firmware's template
    /// in `dir`: libvirt's layout of a Nova UEFI guest (the CD-ROMs on the AHCI controller's ports, `ide.N`). Always
    /// under software emulation: OVMF's first stage fails under a nested KVM that runs SeaBIOS well ("KVM internal
    /// error", an emulation failure on its first x87 instruction).
    pub fn start_uefi(dir: &Path, name: &str, firmware: Ovmf, args: &[&str]) -> Result<Machine, QemuError> {
        let (code, vars_template) = firmware.files();
        let vars = dir.join(format!("{name}.vars.fd"));
        std::fs::copy(vars_template, &vars).map_err(QemuError::Spawn)?;
        let code = format!("if=pflash,format=raw,unit=0,readonly=on,file={code}");
        let vars = format!("if=pflash,format=raw,unit=1,file={}", vars.display());
        let machine = if firmware == Ovmf::SecureBootTestKeys { "q35,smm=on" } else { "q35" };
        let mut base = vec!["-machine", machine, "-accel", "tcg", "-m", "512", "-drive", &code, "-drive", &vars];
        if firmware == Ovmf::SecureBootTestKeys {
            // The variable store is writable only from System Management Mode, as Secure Boot requires.
            base.extend(["-global", "driver=cfi.pflash01,property=secure,value=on"]);
        }
        Machine::spawn(dir, name, &base, args)
    }

    fn spawn(dir: &Path, name: &str, base: &[&str], args: &[&str]) -> Result<Machine, QemuError> {
        let serial = dir.join(format!("{name}.serial"));
        let child = Command::new(QEMU)
            .args(base)
            .args(["-display", "none", "-nic", "none", "-no-reboot"])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(QemuError::Spawn)?;
        Ok(Machine { child, serial })
    }

    /// Boots the installer ISO `iso` with `disk` (qcow2) as its virtio disk and waits for the installer to power
    /// the machine off.
    pub fn install(dir: &Path, iso: &Path, disk: &Path, timeout: Duration) -> Result<String, QemuError> {
        let drive = format!("file={},if=virtio,format=qcow2", disk.display());
        let cdrom = format!("file={},media=cdrom,format=raw", iso.display());
        let mut machine = Machine::start(dir, "install", &["-drive", &drive, "-drive", &cdrom, "-boot", "d"])?;
        machine.wait_powered_off(timeout)?;
        Ok(machine.serial())
    }

    /// How the emulator exited, if it has.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>, QemuError> {
        self.child.try_wait().map_err(QemuError::Wait)
    }

    /// What the guest wrote to the serial port so far.
    pub fn serial(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.serial).unwrap_or_default()).into_owned()
    }

    /// Waits until the serial port holds `text`, and returns all it holds.
    pub fn wait_for(&mut self, text: &str, timeout: Duration) -> Result<String, QemuError> {
        self.wait(Waiting::ForText(text.to_owned()), timeout, |serial, _| serial.contains(text))?;
        Ok(self.serial())
    }

    /// Waits for the guest to power the machine off (the emulator exits 0).
    pub fn wait_powered_off(&mut self, timeout: Duration) -> Result<(), QemuError> {
        self.wait(Waiting::ForPowerOff, timeout, |_, exited| exited.is_some_and(|status| status.success()))
    }

    /// Polls the serial port and the emulator until `done`; an emulator that exits before is an error.
    fn wait(
        &mut self,
        waiting: Waiting,
        timeout: Duration,
        done: impl Fn(&str, Option<ExitStatus>) -> bool,
    ) -> Result<(), QemuError> {
        let deadline = Instant::now() + timeout;
        loop {
            let exited = self.exited()?;
            // Read after the exit check, so that a guest that wrote and then exited is read in full.
            let serial = self.serial();
            if done(&serial, exited) {
                return Ok(());
            }
            if let Some(status) = exited {
                return Err(QemuError::Exited { status, while_: waiting, stderr: self.stderr(), serial });
            }
            if Instant::now() >= deadline {
                return Err(QemuError::TimedOut { while_: waiting, timeout, serial });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stderr(&mut self) -> String {
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        stderr
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
