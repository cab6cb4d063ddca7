//! Block device mappings: `block_device_mapping_v2` read and checked with Nova's rules and messages (`BlockDeviceDict.from_api`, `_check_and_transform_bdm`, `_validate_bdm`).

use serde_json::Value;

use super::flavors::Flavor;
use super::request::{int_value, truthy};

/// One block device mapping in Nova's internal (v2) form.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bdm {
    /// `image`, `blank`, `volume` or `snapshot`.
    pub source_type: String,
    /// `local` or `volume`; `None` when the request left it out.
    pub destination_type: Option<String>,
    pub guest_format: Option<String>,
    /// `disk`, `cdrom`, `floppy`, `lun`; `None` lets the driver decide.
    pub device_type: Option<String>,
    pub disk_bus: Option<String>,
    /// `None` or negative: not bootable.
    pub boot_index: Option<i64>,
    pub device_name: Option<String>,
    pub delete_on_termination: bool,
    /// GiB.
    pub volume_size: Option<u64>,
    pub image_id: Option<String>,
    pub volume_id: Option<String>,
    pub snapshot_id: Option<String>,
    pub volume_type: Option<String>,
    pub tag: Option<String>,
}

impl Bdm {
    /// The mapping Nova makes for `imageRef` when no block devices are requested.
    pub fn image_root(image_id: &str) -> Bdm {
        Bdm {
            source_type: "image".into(),
            destination_type: Some("local".into()),
            device_type: Some("disk".into()),
            boot_index: Some(0),
            delete_on_termination: true,
            image_id: Some(image_id.into()),
            ..Bdm::default()
        }
    }

    /// A flavor-defined blank local disk (`block_device.create_blank_bdm`).
    fn blank(size: u64, guest_format: Option<&str>) -> Bdm {
        Bdm {
            source_type: "blank".into(),
            destination_type: Some("local".into()),
            guest_format: guest_format.map(String::from),
            boot_index: Some(-1),
            delete_on_termination: true,
            volume_size: Some(size),
            ..Bdm::default()
        }
    }

    pub fn is_swap(&self) -> bool {
        self.source_type == "blank" && self.is_local() && self.guest_format.as_deref() == Some("swap")
    }

    pub fn is_ephemeral(&self) -> bool {
        self.source_type == "blank" && self.is_local() && self.guest_format.as_deref() != Some("swap")
    }

    pub fn is_local(&self) -> bool {
        self.destination_type.as_deref() == Some("local")
    }

    pub fn is_bootable(&self) -> bool {
        self.boot_index.is_some_and(|i| i >= 0)
    }
}

/// Nova's `DiskBus.ALL`.
const DISK_BUSES: [&str; 9] = ["fdc", "ide", "sata", "scsi", "usb", "virtio", "xen", "lxc", "uml"];

/// `CONF.max_local_block_devices`.
const MAX_LOCAL_BLOCK_DEVICES: usize = 3;

fn invalid_format(details: &str) -> String {
    format!("Block Device Mapping is Invalid: {details}")
}

fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) | None => None,
        Some(other) => Some(other.to_string()),
    }
}

/// Reads one schema-checked `block_device_mapping_v2` entry (`BlockDeviceDict.from_api`).
pub fn from_api(entry: &Value, image_uuid_specified: bool) -> Result<Bdm, String> {
    let no_device = entry.get("no_device").is_some_and(|v| !v.is_null() && v != &Value::Bool(false));
    let source_type = text(entry, "source_type");
    let uuid = text(entry, "uuid").filter(|s| !s.is_empty());
    let destination_type = text(entry, "destination_type");
    let volume_type = text(entry, "volume_type");
    let mut bdm = Bdm {
        source_type: source_type.clone().unwrap_or_default(),
        destination_type: destination_type.clone(),
        guest_format: text(entry, "guest_format"),
        device_type: text(entry, "device_type"),
        disk_bus: text(entry, "disk_bus"),
        boot_index: None,
        device_name: text(entry, "device_name"),
        delete_on_termination: entry.get("delete_on_termination").is_some_and(truthy),
        volume_size: None,
        image_id: text(entry, "image_id"),
        volume_id: text(entry, "volume_id"),
        snapshot_id: text(entry, "snapshot_id"),
        volume_type: volume_type.clone(),
        tag: text(entry, "tag"),
    };
    if !no_device {
        if source_type.as_deref() == Some("blank") && uuid.is_some() {
            return Err(invalid_format("Invalid device UUID."));
        }
        if source_type.as_deref() != Some("blank") {
            let Some(uuid) = uuid.clone() else { return Err(invalid_format("Missing device UUID.")) };
            match source_type.as_deref() {
                Some("image") => bdm.image_id = Some(uuid),
                Some("volume") => bdm.volume_id = Some(uuid),
                Some("snapshot") => bdm.snapshot_id = Some(uuid),
                _ => {}
            }
        }
        if source_type.as_deref() == Some("image") && destination_type.as_deref() == Some("local") {
            let boot_index = entry.get("boot_index").and_then(int_value).unwrap_or(-1);
            if !(image_uuid_specified && boot_index == 0) {
                return Err(invalid_format("Mapping image to local is not supported."));
            }
        }
        if destination_type.as_deref() == Some("local") && volume_type.is_some() {
            return Err(invalid_format("Specifying a volume_type with destination_type=local is not supported."));
        }
        if source_type.as_deref() == Some("volume") && volume_type.is_some() {
            return Err(invalid_format("Specifying volume type to existing volume is not supported."));
        }
    }
    // BlockDeviceDict._validate
    if no_device {
        return Ok(bdm);
    }
    if source_type.is_none() {
        return Err(invalid_format("Some required fields are missing"));
    }
    if let Some(name) = &bdm.device_name {
        if name.is_empty() || name.chars().count() > 255 {
            return Err(invalid_format("Device name empty or too long."));
        }
        if name.contains(' ') {
            return Err(invalid_format("Device name contains spaces."));
        }
    }
    if let Some(size) = entry.get("volume_size").filter(|v| !v.is_null()) {
        match int_value(size) {
            Some(n) if n >= 0 => bdm.volume_size = Some(n as u64).filter(|n| *n > 0),
            _ => return Err(invalid_format("Invalid volume_size.")),
        }
    }
    match entry.get("boot_index") {
        None | Some(Value::Null) => {}
        Some(v) => match int_value(v) {
            Some(i) => bdm.boot_index = Some(i),
            None => return Err(invalid_format("Boot index is invalid.")),
        },
    }
    Ok(bdm)
}

/// The devices the instance gets: requested ones, or the image root, plus the flavor's
/// ephemeral and swap disks unless requested ones replace them.
pub fn with_defaults(requested: Vec<Bdm>, image_ref: &str, flavor: &Flavor) -> Vec<Bdm> {
    let mut bdms =
        if requested.is_empty() && !image_ref.is_empty() { vec![Bdm::image_root(image_ref)] } else { requested };
    if flavor.ephemeral_gb > 0 && !bdms.iter().any(Bdm::is_ephemeral) {
        bdms.push(Bdm::blank(flavor.ephemeral_gb, None));
    }
    if flavor.swap_mb > 0 && !bdms.iter().any(Bdm::is_swap) {
        bdms.push(Bdm::blank(flavor.swap_mb, Some("swap")));
    }
    bdms
}

/// Why `_validate_bdm` refused the mappings; every variant is a 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BdmError(pub String);

/// What the image and volume services know, for the checks that consult them.
pub trait Lookup {
    fn image_exists(&self, id: &str) -> bool;
}

/// `API._validate_bdm`, in Nova's order. There is no Cinder in mockstack, so every volume
/// and snapshot lookup fails as it would against a cloud whose volume service lacks them.
pub fn validate(bdms: &[Bdm], image_ref: &str, flavor: &Flavor, lookup: &dyn Lookup) -> Result<(), BdmError> {
    let mut boot_indexes: Vec<i64> = bdms.iter().filter_map(|b| b.boot_index).filter(|i| *i >= 0).collect();
    boot_indexes.sort_unstable();
    if boot_indexes.is_empty() || boot_indexes.iter().enumerate().any(|(i, v)| i as i64 != *v) {
        return Err(BdmError(
            "Block Device Mapping is Invalid: Boot sequence for the instance and image/block device mapping \
             combination is not valid."
                .into(),
        ));
    }
    for bdm in bdms {
        if let Some(image_id) = &bdm.image_id {
            if image_id != image_ref && !lookup.image_exists(image_id) {
                return Err(BdmError(format!("Block Device Mapping is Invalid: failed to get image {image_id}.")));
            }
            if bdm.source_type == "image"
                && bdm.destination_type.as_deref() == Some("volume")
                && bdm.volume_size.is_none()
            {
                return Err(BdmError(
                    "Images with destination_type 'volume' need to have a non-zero size specified".into(),
                ));
            }
        } else if let Some(volume_id) = &bdm.volume_id {
            return Err(BdmError(format!("Block Device Mapping is Invalid: failed to get volume {volume_id}.")));
        } else if let Some(snapshot_id) = &bdm.snapshot_id {
            return Err(BdmError(format!("Block Device Mapping is Invalid: failed to get snapshot {snapshot_id}.")));
        } else if bdm.source_type == "blank"
            && bdm.destination_type.as_deref() == Some("volume")
            && bdm.volume_size.is_none()
        {
            return Err(BdmError("Blank volumes (source: 'blank', dest: 'volume') need to have non-zero size".into()));
        }
        if let Some(bus) = &bdm.disk_bus
            && !DISK_BUSES.contains(&bus.as_str())
        {
            // Nova's InvalidBDMDiskBus misspells msg_fmt, so the generic message is what users see.
            return Err(BdmError("Block Device Mapping is Invalid.".into()));
        }
    }
    let ephemeral: u64 =
        bdms.iter().filter(|b| b.is_ephemeral()).map(|b| b.volume_size.unwrap_or(flavor.ephemeral_gb)).sum();
    if ephemeral > flavor.ephemeral_gb {
        return Err(BdmError(
            "Ephemeral disks requested are larger than the instance type allows. If no size is given in one block \
             device mapping, flavor ephemeral size will be used."
                .into(),
        ));
    }
    let swaps: Vec<&Bdm> = bdms.iter().filter(|b| b.is_swap()).collect();
    if swaps.len() > 1 {
        return Err(BdmError(invalid_format("More than one swap drive requested.")));
    }
    if let Some(swap) = swaps.first()
        && swap.volume_size.unwrap_or(0) > flavor.swap_mb
    {
        return Err(BdmError("Swap drive requested is larger than instance type allows.".into()));
    }
    if bdms.iter().filter(|b| b.is_local()).count() > MAX_LOCAL_BLOCK_DEVICES {
        return Err(BdmError(
            "Block Device Mapping is Invalid: You specified more local devices than the limit allows".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    struct KnownImages(Vec<&'static str>);
    impl Lookup for KnownImages {
        fn image_exists(&self, id: &str) -> bool {
            self.0.contains(&id)
        }
    }

    fn flavor(ephemeral_gb: u64, swap_mb: u64) -> Flavor {
        let mut f = super::super::flavors::devstack_flavors().remove(0);
        f.ephemeral_gb = ephemeral_gb;
        f.swap_mb = swap_mb;
        f
    }

    /// Parses and validates a request's mappings, returning Nova's message on failure.
    fn check(entries: Value, image_ref: &str, flavor: &Flavor) -> Result<Vec<Bdm>, String> {
        let parsed: Result<Vec<Bdm>, String> =
            entries.as_array().unwrap().iter().map(|e| from_api(e, !image_ref.is_empty())).collect();
        let bdms = with_defaults(parsed?, image_ref, flavor);
        validate(&bdms, image_ref, flavor, &KnownImages(vec!["11111111-1111-1111-1111-111111111111"]))
            .map_err(|e| e.0)?;
        Ok(bdms)
    }

    const IMG: &str = "11111111-1111-1111-1111-111111111111";

    #[test]
    fn nova_rules_and_messages() {
        let f = flavor(0, 0);
        let cases: Vec<(Value, &str, &str)> = vec![
            (
                json!([{"source_type": "blank", "uuid": IMG, "destination_type": "local", "boot_index": 0}]),
                IMG,
                "Block Device Mapping is Invalid: Invalid device UUID.",
            ),
            (
                json!([{"source_type": "image", "destination_type": "local", "boot_index": 0}]),
                IMG,
                "Block Device Mapping is Invalid: Missing device UUID.",
            ),
            (
                json!([{"source_type": "image", "uuid": IMG, "destination_type": "local", "boot_index": 1}]),
                IMG,
                "Block Device Mapping is Invalid: Mapping image to local is not supported.",
            ),
            (
                json!([{"source_type": "image", "uuid": IMG, "destination_type": "local", "boot_index": 0}]),
                "",
                "Block Device Mapping is Invalid: Mapping image to local is not supported.",
            ),
            (
                json!([{"source_type": "blank", "destination_type": "local", "boot_index": 1, "volume_size": 1}]),
                IMG,
                "Block Device Mapping is Invalid: Boot sequence for the instance and image/block device mapping combination is not valid.",
            ),
            (
                json!([{"source_type": "image", "uuid": IMG, "destination_type": "local", "boot_index": 0},
                    {"source_type": "blank", "destination_type": "local", "boot_index": -1, "volume_size": 1}]),
                IMG,
                "Ephemeral disks requested are larger than the instance type allows. If no size is given in one block device mapping, flavor ephemeral size will be used.",
            ),
            (
                json!([{"source_type": "image", "uuid": IMG, "destination_type": "local", "boot_index": 0},
                    {"source_type": "volume", "uuid": "22222222-2222-2222-2222-222222222222", "destination_type": "volume"}]),
                IMG,
                "Block Device Mapping is Invalid: failed to get volume 22222222-2222-2222-2222-222222222222.",
            ),
            (
                json!([{"source_type": "image", "uuid": IMG, "destination_type": "local", "boot_index": 0},
                    {"source_type": "image", "uuid": "33333333-3333-3333-3333-333333333333", "destination_type": "volume", "volume_size": 1}]),
                IMG,
                "Block Device Mapping is Invalid: failed to get image 33333333-3333-3333-3333-333333333333.",
            ),
            (
                json!([{"source_type": "image", "uuid": IMG, "destination_type": "local", "boot_index": 0, "disk_bus": "nvme0"}]),
                IMG,
                "Block Device Mapping is Invalid.",
            ),
            (
                json!([{"source_type": "image", "uuid": IMG, "destination_type": "local", "boot_index": 0, "device_name": "vd a"}]),
                IMG,
                "Block Device Mapping is Invalid: Device name contains spaces.",
            ),
        ];
        for (entries, image_ref, expected) in cases {
            assert_eq!(check(entries.clone(), image_ref, &f).unwrap_err(), expected, "{entries}");
        }
    }

    #[test]
    fn flavor_disks_are_added_unless_requested() {
        let bdms = check(json!([]), IMG, &flavor(10, 512)).unwrap();
        assert_eq!(bdms.len(), 3);
        assert!(bdms[1].is_ephemeral() && bdms[1].volume_size == Some(10));
        assert!(bdms[2].is_swap() && bdms[2].volume_size == Some(512));
        let requested = json!([
            {"source_type": "image", "uuid": IMG, "destination_type": "local", "boot_index": 0, "device_type": "cdrom"},
            {"source_type": "blank", "destination_type": "local", "boot_index": 1, "volume_size": 4, "device_type": "disk"},
        ]);
        let bdms = check(requested, IMG, &flavor(10, 0)).unwrap();
        assert_eq!(bdms.len(), 2, "the requested blank disk replaces the flavor's ephemeral one");
        assert_eq!(bdms[0].device_type.as_deref(), Some("cdrom"));
    }
}
