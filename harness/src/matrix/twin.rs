//! A real hypervisor's cells side by side with mockstack's: the same scenario on the same layout, run on the real
//! cloud with the generated media and on an embedded mockstack (the twin), compared by what each saw.
//!
//! Two cells agree when they reach the same outcome, their installers chose the same disk and read the same driver
//! medium (read from the console in the one language both speak, guestsim's script), their snapshots hold the same
//! kind of content, and their install domains are the same device by device (machine family, each disk in domain
//! order, the boot order). Anything else differs, and the comparison says where.

use guestsim::guest::GuestFacts;
use guestsim::script::{Hole, InstallerScript, Line};
use serde::{Deserialize, Serialize};

use super::report::Cell;
use crate::inspect::Content;
use crate::scenario::Scenario;
use crate::workflow::BuildReport;
use crate::workflow::validate::ValidationReport;
use guestsim::OutcomeKind;

/// Whether a real cell and its twin agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::Display, strum::IntoStaticStr)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum Agreement {
    Agrees,
    Differs,
}

/// What one side of a comparison saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub outcome: Option<OutcomeKind>,
    /// The installer's lines on the console (the script's lines only).
    pub installer_lines: Vec<String>,
    /// The disk the installer wrote: `vda (virtio)`.
    pub installed_onto: Option<String>,
    /// The driver it loaded, and from which medium: `/viostor/2k12/amd64/viostor.inf from hdb`.
    pub driver_from: Option<String>,
    /// What the snapshot holds, as image validation read it.
    pub snapshot: Option<String>,
    /// The install domain's devices: machine family, each disk in domain order, the boot order.
    pub devices: Vec<String>,
}

/// A real cell against its twin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwinComparison {
    pub agreement: Agreement,
    /// Where they differ, one line per fact; empty when they agree.
    pub differences: Vec<String>,
    pub real: Evidence,
    pub mockstack: Evidence,
}

/// What a cell's build saw, kept beside the cell for the comparison (not part of the report's JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub install_console: Vec<String>,
    pub snapshot: Option<String>,
    pub domain_xml: Option<String>,
}

impl Observed {
    pub fn of(report: &BuildReport) -> Observed {
        Observed {
            install_console: report.install_console.clone(),
            snapshot: report.validation.as_ref().and_then(snapshot_content),
            domain_xml: report.domain_xml.clone(),
        }
    }
}

fn snapshot_content(validation: &ValidationReport) -> Option<String> {
    Some(match &validation.inspection.as_ref()?.content {
        Content::InstalledDisk { table } => format!("an installed disk ({table})"),
        Content::Iso9660 { volume_id } => format!("the ISO 9660 volume {volume_id:?}"),
        Content::Empty => "a blank disk".to_owned(),
        Content::Unknown => "data of no known kind".to_owned(),
    })
}

impl Evidence {
    pub fn of(cell: &Cell, guest: &GuestFacts) -> Evidence {
        let script = InstallerScript::for_guest(guest);
        let said = script.recognise(cell.observed_by.install_console.iter().map(String::as_str));
        let hole = |line: Line, hole: Hole| said.iter().filter(|s| s.line == line).find_map(|s| s.hole(hole));
        let installed_onto = hole(Line::Installing, Hole::TargetDevice)
            .map(|dev| format!("{dev} ({})", hole(Line::Installing, Hole::TargetBus).unwrap_or("?")));
        let driver_from = hole(Line::LoadedDriver, Hole::DriverPath)
            .map(|path| format!("{path} from {}", hole(Line::LoadedDriver, Hole::DriverMedium).unwrap_or("?")));
        Evidence {
            outcome: cell.observed,
            installer_lines: said.into_iter().map(|s| s.text).collect(),
            installed_onto,
            driver_from,
            snapshot: cell.observed_by.snapshot.clone(),
            devices: cell.observed_by.domain_xml.as_deref().map(domain_devices).unwrap_or_default(),
        }
    }
}

impl TwinComparison {
    /// The comparison as text: the verdict, where they differ, and both sides' evidence.
    pub fn render_text(&self) -> String {
        let mut out = format!("\n{} with mockstack", self.agreement);
        for difference in &self.differences {
            out.push_str(&format!("\n  {difference}"));
        }
        for (side, evidence) in [("real", &self.real), ("mockstack", &self.mockstack)] {
            out.push_str(&format!("\n{side}:"));
            for line in &evidence.installer_lines {
                out.push_str(&format!("\n  | {line}"));
            }
            if let Some(snapshot) = &evidence.snapshot {
                out.push_str(&format!("\n  snapshot: {snapshot}"));
            }
        }
        out
    }
}

/// Attaches to every judged cell of `real` the comparison with the same cell (scenario and layout) of `twin`.
pub fn attach(real: &mut super::MatrixReport, twin: &super::MatrixReport, scenarios: &[Scenario]) {
    for cell in real.cells.iter_mut().filter(|c| c.judged()) {
        let twin_cell = twin.cells.iter().find(|t| t.scenario == cell.scenario && t.layout == cell.layout);
        let scenario = scenarios.iter().find(|s| s.name == cell.scenario);
        if let (Some(twin_cell), Some(scenario)) = (twin_cell, scenario) {
            cell.twin = Some(compare(cell, twin_cell, &scenario.guest));
        }
    }
}

/// Compares a real cell with its twin's, the same scenario and layout on an embedded mockstack.
pub fn compare(real: &Cell, twin: &Cell, guest: &GuestFacts) -> TwinComparison {
    let (real, mockstack) = (Evidence::of(real, guest), Evidence::of(twin, guest));
    let mut differences = Vec::new();
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "nothing".into());
    if real.outcome != mockstack.outcome {
        let show = |o: Option<OutcomeKind>| o.map_or("no outcome".to_owned(), |o| o.to_string());
        differences.push(format!("outcome: real {}, mockstack {}", show(real.outcome), show(mockstack.outcome)));
    }
    let same = |a: &Option<String>, b: &Option<String>| match (a, b) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        (a, b) => a == b,
    };
    for (what, r, m) in [
        ("installed onto", &real.installed_onto, &mockstack.installed_onto),
        ("driver loaded", &real.driver_from, &mockstack.driver_from),
        ("snapshot holds", &real.snapshot, &mockstack.snapshot),
    ] {
        if !same(r, m) {
            differences.push(format!("{what}: real {}, mockstack {}", show(r), show(m)));
        }
    }
    differences.extend(device_differences(&real.devices, &mockstack.devices));
    let agreement = if differences.is_empty() { Agreement::Agrees } else { Agreement::Differs };
    TwinComparison { agreement, differences, real, mockstack }
}

/// The facts of a domain that a layout fixes, one line each: the machine family (without QEMU's version), each disk
/// in domain order (kind, target, bus, read-only, instance-directory file, boot order), then the `<os><boot>` order.
/// A document that does not parse is one line saying why.
pub fn domain_devices(xml: &str) -> Vec<String> {
    let domain = match crate::domxml::parse(xml) {
        Ok(domain) => domain,
        Err(e) => return vec![format!("unreadable domain XML: {e}")],
    };
    let os = domain.os.as_ref();
    let machine = os.and_then(|os| os.machine.as_deref()).unwrap_or("none");
    let mut devices = vec![format!("machine {}", machine.rsplit_once('-').map_or(machine, |(family, _)| family))];
    devices.extend(domain.disks.iter().map(|disk| {
        let boot = disk.boot_order.as_ref().map_or(String::new(), |b| format!(" boot-order={}", b.value));
        format!(
            "{} {} {}{} {}{boot}",
            disk.device,
            disk.target_dev().unwrap_or("?"),
            disk.bus().unwrap_or("?"),
            if disk.readonly { " readonly" } else { "" },
            disk.source_file_name().unwrap_or("-"),
        )
    }));
    let boot: Vec<&str> = os.map(|os| os.boot_devs.iter().map(|b| b.dev.as_str()).collect()).unwrap_or_default();
    devices.push(format!("boot {}", boot.join(",")));
    devices
}

/// The device-by-device difference of two [`domain_devices`] lists, position by position.
fn device_differences(real: &[String], mockstack: &[String]) -> Vec<String> {
    if real.is_empty() || mockstack.is_empty() {
        return if real.is_empty() == mockstack.is_empty() {
            Vec::new()
        } else {
            vec![format!(
                "domain: real {}, mockstack {}",
                if real.is_empty() { "none" } else { "one" },
                if mockstack.is_empty() { "none" } else { "one" }
            )]
        };
    }
    let mut differences = Vec::new();
    for index in 0..real.len().max(mockstack.len()) {
        let (r, m) = (real.get(index), mockstack.get(index));
        if r != m {
            let show = |d: Option<&String>| d.cloned().unwrap_or_else(|| "nothing".into());
            differences.push(format!("device {}: real {}, mockstack {}", index, show(r), show(m)));
        }
    }
    differences
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOMAIN: &str = r#"<domain type='kvm'><name>instance-1</name>
  <os><type arch='x86_64' machine='pc-i440fx-10.0'>hvm</type><boot dev='cdrom'/><boot dev='hd'/></os>
  <devices>
    <disk type='file' device='cdrom'><source file='/i/disk'/><target dev='hda' bus='ide'/><readonly/></disk>
    <disk type='file' device='disk'><source file='/i/disk.eph0'/><target dev='vdb' bus='virtio'/></disk>
  </devices></domain>"#;

    #[test]
    fn devices_name_the_machine_family_each_disk_and_the_boot_order() {
        assert_eq!(
            domain_devices(DOMAIN),
            ["machine pc-i440fx", "cdrom hda ide readonly disk", "disk vdb virtio disk.eph0", "boot cdrom,hd"]
        );
        assert!(domain_devices("<domain")[0].starts_with("unreadable domain XML"));
    }

    #[test]
    fn device_differences_are_given_position_by_position() {
        let real = domain_devices(DOMAIN);
        let twin = domain_devices(&DOMAIN.replace("machine='pc-i440fx-10.0'", "machine='pc-i440fx-7.2'"));
        assert!(device_differences(&real, &twin).is_empty(), "the QEMU version is not the layout");
        let twin = domain_devices(&DOMAIN.replace("dev='vdb' bus='virtio'", "dev='hdb' bus='ide'"));
        assert_eq!(
            device_differences(&real, &twin),
            ["device 2: real disk vdb virtio disk.eph0, mockstack disk hdb ide disk.eph0"]
        );
        assert_eq!(device_differences(&real, &[]), ["domain: real one, mockstack none"]);
    }
}
