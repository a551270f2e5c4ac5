//! `update`'s resource flags turned into `LinuxResources`.

use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

use crate::cli::UpdateArgs;

/// Parses a size like runc's `RAMInBytes`: a number with an optional b/k/m/g/t suffix (powers of
/// 1024); `-1` means unlimited.
pub(crate) fn parse_size(text: &str) -> Result<i64, String> {
    let t = text.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (digits, unit) = match t
        .char_indices()
        .find(|(_, c)| !c.is_ascii_digit() && *c != '.')
    {
        Some((i, _)) => (&t[..i], &t[i..]),
        None => (t, ""),
    };
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(format!("invalid size {text:?}")),
    };
    let value: f64 = digits
        .parse()
        .map_err(|_| format!("invalid size {text:?}"))?;
    let bytes = value * 2f64.powi(shift);
    if !bytes.is_finite() || bytes < 0.0 || bytes > i64::MAX as f64 {
        return Err(format!("invalid size {text:?}"));
    }
    #[allow(clippy::cast_possible_truncation)]
    Ok(bytes as i64)
}

/// The resources `update` should apply.
pub(crate) fn from_args(args: &UpdateArgs) -> Result<LinuxResources, String> {
    if let Some(path) = &args.resources {
        let raw = if path.as_os_str() == "-" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .map_err(|e| format!("read stdin: {e}"))?;
            s
        } else {
            std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?
        };
        return serde_json::from_str(&raw).map_err(|e| format!("invalid resources: {e}"));
    }
    let mut r = LinuxResources::default();
    let size = |v: &Option<String>| v.as_deref().map(parse_size).transpose();
    let (limit, reservation, swap) = (
        size(&args.memory)?,
        size(&args.memory_reservation)?,
        size(&args.memory_swap)?,
    );
    if limit.is_some() || reservation.is_some() || swap.is_some() {
        let mut m = LinuxMemory::default();
        m.set_limit(limit);
        m.set_reservation(reservation);
        m.set_swap(swap);
        r.set_memory(Some(m));
    }
    if args.cpu_period.is_some()
        || args.cpu_quota.is_some()
        || args.cpu_share.is_some()
        || args.cpu_rt_period.is_some()
        || args.cpu_rt_runtime.is_some()
        || args.cpuset_cpus.is_some()
        || args.cpuset_mems.is_some()
    {
        let mut c = LinuxCpu::default();
        c.set_period(args.cpu_period);
        c.set_quota(args.cpu_quota);
        c.set_shares(args.cpu_share);
        c.set_realtime_period(args.cpu_rt_period);
        c.set_realtime_runtime(args.cpu_rt_runtime);
        c.set_cpus(args.cpuset_cpus.clone());
        c.set_mems(args.cpuset_mems.clone());
        r.set_cpu(Some(c));
    }
    if let Some(limit) = args.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(limit);
        r.set_pids(Some(p));
    }
    if let Some(weight) = args.blkio_weight {
        let mut b = oci_spec::runtime::LinuxBlockIo::default();
        b.set_weight(Some(weight));
        r.set_block_io(Some(b));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_suffixes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        assert_eq!(parse_size("2KB"), Ok(2048));
        assert_eq!(parse_size("-1"), Ok(-1));
        assert!(parse_size("12x").is_err());
        assert!(parse_size("").is_err());
    }
}
