//! Restoring the host's forwarding sysctls after tests that turn them on (bridge networks, the
//! CNI bridge plugin).

use std::sync::Mutex;

/// The forwarding sysctls a bridge network turns on (IPv6 for a network with an IPv6 subnet).
const FORWARDING_SYSCTLS: [&str; 2] = [
    "/proc/sys/net/ipv4/ip_forward",
    "/proc/sys/net/ipv6/conf/all/forwarding",
];

/// How many guards of this test binary are held, and the sysctls before the first was taken.
static FORWARDING: Mutex<(usize, Vec<String>)> = Mutex::new((0, Vec::new()));

/// Held by every test (or daemon, or service) that may turn forwarding on: when the last holder
/// of a test binary lets go, the forwarding sysctls get back the values they had before the
/// first one took it, so the tests do not leave a host forwarding that did not before. Counted,
/// because tests run in parallel and one must not switch forwarding off under another.
#[derive(Debug)]
pub struct ForwardingGuard(());

impl ForwardingGuard {
    /// Takes a guard; the first one of the binary notes the current values.
    pub fn acquire() -> Self {
        let mut state = FORWARDING.lock().unwrap_or_else(|e| e.into_inner());
        if state.0 == 0 {
            state.1 = FORWARDING_SYSCTLS
                .iter()
                .map(|path| std::fs::read_to_string(path).unwrap_or_default())
                .collect();
        }
        state.0 += 1;
        Self(())
    }
}

impl Drop for ForwardingGuard {
    fn drop(&mut self) {
        let mut state = FORWARDING.lock().unwrap_or_else(|e| e.into_inner());
        state.0 -= 1;
        if state.0 == 0 {
            for (path, value) in FORWARDING_SYSCTLS.iter().zip(&state.1) {
                if !value.is_empty() {
                    let _ = std::fs::write(path, value.trim());
                }
            }
        }
    }
}
