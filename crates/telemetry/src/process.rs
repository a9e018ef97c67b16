//! The standard `process_*` metrics every Prometheus client library exports (CPU time,
//! memory, file descriptors, start time), read from `/proc` at each scrape, and
//! `switchyard_build_info`.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The version and commit this binary was built from.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("SWITCHYARD_COMMIT");

/// Registers `process_*` in `root` (a registry without prefix: these names are standard)
/// and `switchyard_build_info{version, commit} 1`.
pub fn register(root: &mut Registry) {
    root.register_collector(Box::new(ProcessCollector));
    root.sub_registry_with_prefix("switchyard").register(
        "build",
        "The version and commit this process was built from (always 1)",
        Info::new(vec![
            ("version".to_string(), VERSION.to_string()),
            ("commit".to_string(), COMMIT.to_string()),
        ]),
    );
}

/// Reads `/proc/self` when scraped. Where `/proc` is missing (not Linux) it exports nothing.
#[derive(Debug)]
struct ProcessCollector;

/// Linux reports times in `/proc` in USER_HZ, which is 100 on every architecture it runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// What one scrape reads.
#[derive(Debug, Default, PartialEq)]
struct Sample {
    cpu_seconds: f64,
    virtual_bytes: u64,
    resident_bytes: u64,
    start_time_seconds: f64,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
}

impl Sample {
    fn read() -> Option<Sample> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let mut sample = parse(&stat, &status, &boot)?;
        sample.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64);
        sample.max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| max_open_files(&l));
        Some(sample)
    }
}

/// `/proc/self/stat` (after the command name, which may hold spaces), `/proc/self/status`
/// (VmRSS) and `/proc/stat` (btime).
fn parse(stat: &str, status: &str, proc_stat: &str) -> Option<Sample> {
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // Fields counted from the state (field 3 in proc(5)): utime 14, stime 15,
    // starttime 22, vsize 23.
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let cpu_ticks = field(14)? + field(15)?;
    let start_ticks = field(22)?;
    let virtual_bytes = field(23)?;
    let resident_bytes = vm_rss(status)?;
    let boot_time = proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<u64>().ok())?;
    Some(Sample {
        cpu_seconds: cpu_ticks as f64 / TICKS_PER_SECOND,
        virtual_bytes,
        resident_bytes,
        start_time_seconds: boot_time as f64 + start_ticks as f64 / TICKS_PER_SECOND,
        open_fds: None,
        max_fds: None,
    })
}

/// This process's resident memory, from `/proc/self/status` (`None` off Linux).
pub fn resident_bytes() -> Option<u64> {
    vm_rss(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// `VmRSS` of a `/proc/PID/status`, in bytes.
fn vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// The soft limit of "Max open files" in `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let m = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(m)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = Sample::read() else {
            return Ok(());
        };
        gauge(
            &mut encoder,
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            ConstCounter::new(s.cpu_seconds),
        )?;
        gauge(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            ConstGauge::new(s.resident_bytes as i64),
        )?;
        gauge(
            &mut encoder,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            ConstGauge::new(s.virtual_bytes as i64),
        )?;
        gauge(
            &mut encoder,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            ConstGauge::new(s.start_time_seconds),
        )?;
        if let Some(n) = s.open_fds {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors",
                ConstGauge::new(n as i64),
            )?;
        }
        if let Some(n) = s.max_fds {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors",
                ConstGauge::new(n as i64),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 12000 123456789 5000 18446744073709551615";
        let status = "Name:\tx\nVmRSS:\t   2048 kB\n";
        let proc_stat = "cpu  1 2 3\nbtime 1700000000\nprocesses 5\n";
        let s = parse(stat, status, proc_stat).expect("parsed");
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.virtual_bytes, 123_456_789);
        assert_eq!(s.resident_bytes, 2048 * 1024);
        assert_eq!(s.start_time_seconds, 1_700_000_120.0);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
    }

    #[test]
    fn this_process_is_readable() {
        let s = Sample::read().expect("/proc is readable");
        assert!(s.resident_bytes > 0 && s.open_fds.unwrap_or(0) > 0);
        let mut registry = Registry::default();
        register(&mut registry);
        let text = crate::exposition::Format::Prometheus.render(&registry);
        assert!(
            text.contains("# TYPE process_cpu_seconds_total counter\n"),
            "{text}"
        );
        assert!(text.contains("switchyard_build_info{version=\""), "{text}");
    }
}
