//! Applying bridge network plans: a thin layer over rtnetlink, `/proc/sys` and nftables.

use std::fs;
use std::io;
use std::path::PathBuf;

use crate::netlink::{Netlink, NetlinkError};
use crate::netns::{Netns, NetnsError};
use crate::nft::{Nft, NftError};
use crate::plan::{AttachPlan, DetachPlan, NetworkPlan};

/// A failed step of setting up or tearing down a bridge network or a container's link to it.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// A link, address or route could not be configured.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// The container's network namespace could not be opened or entered.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// The NAT rules could not be changed.
    #[error(transparent)]
    Nft(#[from] NftError),
    /// A sysctl could not be written.
    #[error("write {value} to {path}")]
    Sysctl {
        /// The file under `/proc/sys`.
        path: PathBuf,
        /// The value.
        value: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Applies [`NetworkPlan`]s, [`AttachPlan`]s and [`DetachPlan`]s from the host's network
/// namespace (that of the calling thread).
#[derive(Debug, Clone)]
pub struct BridgeDriver {
    nft: Nft,
    proc_sys: PathBuf,
}

impl Default for BridgeDriver {
    fn default() -> Self {
        Self::new(Nft::default())
    }
}

impl BridgeDriver {
    /// A driver that keeps its NAT rules in `nft`'s table.
    pub fn new(nft: Nft) -> Self {
        Self {
            nft,
            proc_sys: PathBuf::from("/proc/sys"),
        }
    }

    /// The nftables table it uses.
    pub fn nft(&self) -> &Nft {
        &self.nft
    }

    /// Creates (or keeps) the bridge with its addresses, up; sets the sysctls; sets the
    /// network's NAT rules. Repeating it changes nothing.
    pub fn setup_network(&self, plan: &NetworkPlan) -> Result<(), BridgeError> {
        let mut netlink = Netlink::open()?;
        netlink.ensure_bridge(&plan.bridge)?;
        for address in &plan.addresses {
            netlink.add_address(&plan.bridge, address.addr(), address.prefix_len())?;
        }
        netlink.set_up(&plan.bridge)?;
        for sysctl in &plan.sysctls {
            let path = self.proc_sys.join(&sysctl.key);
            fs::write(&path, sysctl.value).map_err(|source| BridgeError::Sysctl {
                path,
                value: sysctl.value,
                source,
            })?;
        }
        self.nft.replace_rules(&plan.nat_tag, &plan.nat)?;
        tracing::info!(bridge = %plan.bridge, "bridge network set up");
        Ok(())
    }

    /// Deletes the bridge and the network's NAT rules, and the table when no rule is left in
    /// it. What is already gone is no error. Forwarding stays on: other networks or the host
    /// may rely on it.
    pub fn teardown_network(&self, plan: &NetworkPlan) -> Result<(), BridgeError> {
        Netlink::open()?.delete_link(&plan.bridge)?;
        self.nft.remove_rules(&plan.nat_tag, true)?;
        tracing::info!(bridge = %plan.bridge, "bridge network torn down");
        Ok(())
    }

    /// Connects a container's namespace to the bridge: a veth pair whose host end joins the
    /// bridge and whose other end is made inside the namespace under its final name, both up
    /// and with the plan's MTU (one request); then, in one round trip inside, the loopback up,
    /// the addresses and the default routes to the gateways, with their own MTU; then the port
    /// forwarding rules.
    /// On failure whatever was created is removed again.
    pub fn attach(&self, plan: &AttachPlan) -> Result<(), BridgeError> {
        let netns = Netns::open(&plan.netns)?;
        let result = self.connect(plan, &netns);
        if result.is_err() {
            let detach = DetachPlan {
                host_veth: plan.host_veth.clone(),
                nat_tag: plan.nat_tag.clone(),
            };
            if let Err(e) = self.detach(&detach) {
                tracing::warn!(host_veth = %plan.host_veth, error = %e, "rollback of attach failed");
            }
        }
        result
    }

    fn connect(&self, plan: &AttachPlan, netns: &Netns) -> Result<(), BridgeError> {
        let mut host = Netlink::open()?;
        // A pair left by an attach that crashed half-way goes first, so a retry succeeds.
        host.delete_link(&plan.host_veth)?;
        host.create_veth_into(&plan.host_veth, &plan.bridge, &plan.ifname, netns, plan.mtu)?;
        netns.netlink()?.configure_link(
            &plan.ifname,
            &plan.addresses,
            &plan.gateways,
            Some(plan.default_route_mtu),
        )?;
        self.nft.replace_rules(&plan.nat_tag, &plan.nat)?;
        tracing::info!(netns = %plan.netns.display(), host_veth = %plan.host_veth, "container attached");
        Ok(())
    }

    /// Deletes the container's veth pair and its NAT rules; what is already gone is no error.
    pub fn detach(&self, plan: &DetachPlan) -> Result<(), BridgeError> {
        Netlink::open()?.delete_link(&plan.host_veth)?;
        self.nft.remove_rules(&plan.nat_tag, false)?;
        Ok(())
    }
}
