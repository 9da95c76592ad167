//! Prints the running kernel's features and every mount of this mount namespace, read with
//! listmount + statmount: `cargo run -p crcli-sys --example mounts`.

use crcli_sys::features::Features;
use crcli_sys::listmount::{listmount_all, ListmountFlags, LSMT_ROOT};
use crcli_sys::statmount::{statmount, StatmountMask};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let features = Features::current();
    println!("kernel {}", features.kernel_release());
    for (feature, present) in features.iter() {
        println!(
            "  {:<22} {:<3} (Linux {})",
            feature.name(),
            if present { "yes" } else { "no" },
            feature.since()
        );
    }
    if let Some(mask) = features.statmount_supported_mask() {
        println!("  statmount supported mask: {mask:?}");
    }
    let mask = StatmountMask::MNT_BASIC
        | StatmountMask::MNT_POINT
        | StatmountMask::MNT_ROOT
        | StatmountMask::FS_TYPE
        | StatmountMask::SB_SOURCE
        | StatmountMask::MNT_OPTS;
    for id in listmount_all(LSMT_ROOT, None, ListmountFlags::empty())? {
        let sm = statmount(id, None, mask)?;
        let old = sm.mnt.map(|m| m.mnt_id_old).unwrap_or_default();
        println!(
            "{id:#x} ({old}) {:?} root={:?} type={:?} source={:?} opts={:?}",
            sm.mnt_point.unwrap_or_default(),
            sm.mnt_root.unwrap_or_default(),
            sm.fs_type.unwrap_or_default(),
            sm.sb_source.unwrap_or_default(),
            sm.mnt_opts.unwrap_or_default(),
        );
    }
    Ok(())
}
