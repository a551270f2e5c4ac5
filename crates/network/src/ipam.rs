//! IP address management as pure logic over a serialisable state: subnets per network, one
//! lease per owner (a container or cell), the lowest free address first.
//!
//! The state is plain data that the caller persists (the daemon's database; [`IpamStore`], a
//! locked JSON file, until then). Nothing here does I/O, so every rule is unit-tested.

mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

pub use store::{IpamStore, IpamStoreError};

/// The subnets of a network: IPv4 always, IPv6 when configured. The first host address of each
/// is the gateway (the bridge's address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnets {
    /// The IPv4 subnet, at most a /30 (a gateway and one address).
    pub ipv4: Ipv4Net,
    /// The IPv6 subnet, at most a /126.
    pub ipv6: Option<Ipv6Net>,
}

impl Subnets {
    /// The IPv4 gateway: the subnet's first host address.
    pub fn gateway4(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.ipv4.network()) + 1)
    }

    /// The IPv6 gateway, when there is an IPv6 subnet: its first address after the
    /// subnet-router anycast address.
    pub fn gateway6(&self) -> Option<Ipv6Addr> {
        self.ipv6
            .map(|net| Ipv6Addr::from(u128::from(net.network()) + 1))
    }

    fn all(&self) -> impl Iterator<Item = IpNet> {
        std::iter::once(IpNet::V4(self.ipv4)).chain(self.ipv6.map(IpNet::V6))
    }

    fn validate(&self) -> Result<(), IpamError> {
        let invalid =
            |subnet: IpNet, reason: &'static str| Err(IpamError::InvalidSubnet { subnet, reason });
        for subnet in self.all() {
            if subnet.addr() != subnet.network() {
                return invalid(subnet, "host bits are set");
            }
        }
        if self.ipv4.prefix_len() > 30 {
            return invalid(IpNet::V4(self.ipv4), "smaller than a /30");
        }
        if let Some(v6) = self.ipv6 {
            if v6.prefix_len() > 126 {
                return invalid(IpNet::V6(v6), "smaller than a /126");
            }
        }
        Ok(())
    }
}

/// An owner's addresses on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The network.
    pub network: String,
    /// Who holds it (a container or cell id).
    pub owner: String,
    /// Its IPv4 address.
    pub ipv4: Ipv4Addr,
    /// Its IPv6 address, when the network has an IPv6 subnet.
    pub ipv6: Option<Ipv6Addr>,
}

/// One network's subnets and leases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// The subnets.
    pub subnets: Subnets,
    /// Leases by owner.
    pub leases: BTreeMap<String, Lease>,
}

/// Every network's pool: what the caller persists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamState {
    /// Pools by network name.
    pub networks: BTreeMap<String, Pool>,
}

/// An IPAM request that cannot be granted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// A subnet cannot be used.
    #[error("subnet {subnet} cannot be used: {reason}")]
    InvalidSubnet {
        /// The subnet.
        subnet: IpNet,
        /// Why.
        reason: &'static str,
    },
    /// A network of that name exists with other subnets.
    #[error("network {network} already exists with other subnets")]
    NetworkExists {
        /// The network.
        network: String,
    },
    /// A subnet overlaps one of another network.
    #[error("subnet {subnet} of network {network} overlaps {other_subnet} of network {other}")]
    Overlap {
        /// The network being added.
        network: String,
        /// Its subnet.
        subnet: IpNet,
        /// The network it overlaps.
        other: String,
        /// That network's subnet.
        other_subnet: IpNet,
    },
    /// No network of that name.
    #[error("network {network} does not exist")]
    NoSuchNetwork {
        /// The network.
        network: String,
    },
    /// Every address of a subnet is leased.
    #[error("no free address left in {subnet} of network {network}")]
    Exhausted {
        /// The network.
        network: String,
        /// The full subnet.
        subnet: IpNet,
    },
    /// The network still has leases.
    #[error("network {network} still has {leases} leases")]
    InUse {
        /// The network.
        network: String,
        /// How many.
        leases: usize,
    },
}

fn overlaps(a: IpNet, b: IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

impl IpamState {
    /// Adds network `name` with `subnets`; adding it again with the same subnets is a no-op.
    /// Refuses subnets that overlap another network's.
    pub fn add_network(&mut self, name: &str, subnets: Subnets) -> Result<(), IpamError> {
        subnets.validate()?;
        if let Some(pool) = self.networks.get(name) {
            return if pool.subnets == subnets {
                Ok(())
            } else {
                Err(IpamError::NetworkExists {
                    network: name.to_owned(),
                })
            };
        }
        for (other, pool) in &self.networks {
            for subnet in subnets.all() {
                if let Some(other_subnet) = pool.subnets.all().find(|o| overlaps(subnet, *o)) {
                    return Err(IpamError::Overlap {
                        network: name.to_owned(),
                        subnet,
                        other: other.clone(),
                        other_subnet,
                    });
                }
            }
        }
        self.networks.insert(
            name.to_owned(),
            Pool {
                subnets,
                leases: BTreeMap::new(),
            },
        );
        Ok(())
    }

    /// Removes network `name`, which must hold no lease; removing a missing network succeeds.
    pub fn remove_network(&mut self, name: &str) -> Result<(), IpamError> {
        match self.networks.get(name) {
            Some(pool) if !pool.leases.is_empty() => Err(IpamError::InUse {
                network: name.to_owned(),
                leases: pool.leases.len(),
            }),
            _ => {
                self.networks.remove(name);
                Ok(())
            }
        }
    }

    /// The pool of network `name`.
    pub fn pool(&self, name: &str) -> Result<&Pool, IpamError> {
        self.networks
            .get(name)
            .ok_or_else(|| IpamError::NoSuchNetwork {
                network: name.to_owned(),
            })
    }

    /// Leases the lowest free addresses of network `network` to `owner`. An owner that holds a
    /// lease gets the same one back, so a setup retried after a crash keeps its addresses.
    pub fn allocate(&mut self, network: &str, owner: &str) -> Result<Lease, IpamError> {
        let pool = self.pool(network)?;
        if let Some(lease) = pool.leases.get(owner) {
            return Ok(lease.clone());
        }
        let exhausted = |subnet| IpamError::Exhausted {
            network: network.to_owned(),
            subnet,
        };
        let used4: BTreeSet<Ipv4Addr> = pool.leases.values().map(|l| l.ipv4).collect();
        let ipv4 = free_ipv4(pool.subnets.ipv4, &used4)
            .ok_or_else(|| exhausted(IpNet::V4(pool.subnets.ipv4)))?;
        let ipv6 = match pool.subnets.ipv6 {
            Some(subnet) => {
                let used6: BTreeSet<Ipv6Addr> =
                    pool.leases.values().filter_map(|l| l.ipv6).collect();
                Some(free_ipv6(subnet, &used6).ok_or_else(|| exhausted(IpNet::V6(subnet)))?)
            }
            None => None,
        };
        let lease = Lease {
            network: network.to_owned(),
            owner: owner.to_owned(),
            ipv4,
            ipv6,
        };
        if let Some(pool) = self.networks.get_mut(network) {
            pool.leases.insert(owner.to_owned(), lease.clone());
        }
        Ok(lease)
    }

    /// Releases `owner`'s lease on `network`, returning it; releasing nothing succeeds.
    pub fn release(&mut self, network: &str, owner: &str) -> Option<Lease> {
        self.networks.get_mut(network)?.leases.remove(owner)
    }

    /// `owner`'s lease on `network`.
    pub fn lease(&self, network: &str, owner: &str) -> Option<&Lease> {
        self.networks.get(network)?.leases.get(owner)
    }
}

/// The lowest address after the gateway that is not the broadcast address and not in `used`.
fn free_ipv4(subnet: Ipv4Net, used: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let first = u32::from(subnet.network()) + 2;
    let broadcast = u32::from(subnet.broadcast());
    (first..broadcast)
        .map(Ipv4Addr::from)
        .find(|addr| !used.contains(addr))
}

/// The lowest address after the gateway that is not in `used` (IPv6 has no broadcast).
fn free_ipv6(subnet: Ipv6Net, used: &BTreeSet<Ipv6Addr>) -> Option<Ipv6Addr> {
    let first = u128::from(subnet.network()) + 2;
    let last = u128::from(subnet.broadcast());
    // `used` holds at most as many addresses as there are leases, so this ends within
    // `used.len() + 1` steps.
    (first..=last)
        .map(Ipv6Addr::from)
        .find(|addr| !used.contains(addr))
}

#[cfg(test)]
mod tests;
