use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

/// A block of IP addresses: a network address and a prefix length, such as `169.254.0.0/16` or
/// `fe80::/10`. A bare address (`169.254.169.254`) is a block of one.
///
/// IPv4 blocks match IPv4 addresses and IPv6 blocks IPv6 addresses. An IPv4-mapped IPv6 address
/// (`::ffff:169.254.169.254`) counts as the IPv4 address it carries, both when it is checked
/// and when it is written as a block (`::ffff:10.0.0.0/104` is `10.0.0.0/8`).
///
/// ```
/// use std::net::IpAddr;
/// use hookgate::transport::Cidr;
///
/// let link_local: Cidr = "169.254.0.0/16".parse()?;
/// assert!(link_local.contains("169.254.169.254".parse::<IpAddr>()?));
/// assert!(link_local.contains("::ffff:169.254.169.254".parse::<IpAddr>()?));
/// assert!(!link_local.contains("10.0.0.1".parse::<IpAddr>()?));
/// assert!("10.0.0.1/8".parse::<Cidr>().is_err()); // bits set past the prefix
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

impl Cidr {
    /// The block of the addresses whose first `prefix_len` bits are those of `network`.
    ///
    /// # Errors
    ///
    /// [`InvalidCidr::PrefixTooLong`] when `prefix_len` exceeds 32 (IPv4) or 128 (IPv6);
    /// [`InvalidCidr::HostBits`] when `network` has bits set past the prefix.
    pub fn new(network: IpAddr, prefix_len: u8) -> Result<Self, InvalidCidr> {
        let (network, prefix_len) = match network {
            IpAddr::V6(v6) => match (v6.to_ipv4_mapped(), prefix_len.checked_sub(96)) {
                (Some(v4), Some(v4_len)) => (IpAddr::V4(v4), v4_len),
                _ => (network, prefix_len),
            },
            IpAddr::V4(_) => (network, prefix_len),
        };
        let max = max_len(network);
        if prefix_len > max {
            return Err(InvalidCidr::PrefixTooLong {
                input: format!("{network}/{prefix_len}"),
                max,
            });
        }
        let cidr = Self {
            network,
            prefix_len,
        };
        let truncated = cidr.truncate(network);
        if truncated != network {
            return Err(InvalidCidr::HostBits {
                input: format!("{network}/{prefix_len}"),
                network: Self {
                    network: truncated,
                    prefix_len,
                },
            });
        }
        Ok(cidr)
    }

    /// The block holding `addr` alone (`/32` or `/128`).
    pub fn host(addr: IpAddr) -> Self {
        let addr = addr.to_canonical();
        Self {
            network: addr,
            prefix_len: max_len(addr),
        }
    }

    /// An IPv4 block; the arguments must be valid (checked by the unit tests of the constants).
    pub(super) const fn v4(network: Ipv4Addr, prefix_len: u8) -> Self {
        Self {
            network: IpAddr::V4(network),
            prefix_len,
        }
    }

    /// An IPv6 block; the arguments must be valid (checked by the unit tests of the constants).
    pub(super) const fn v6(network: Ipv6Addr, prefix_len: u8) -> Self {
        Self {
            network: IpAddr::V6(network),
            prefix_len,
        }
    }

    /// The network address (host bits all zero).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `addr` lies in this block.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        match (self.network, addr) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                self.truncate(addr) == self.network
            }
            _ => false,
        }
    }

    /// `addr` with the bits past the prefix cleared (same family as `addr`).
    fn truncate(&self, addr: IpAddr) -> IpAddr {
        match addr {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len.min(32)))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len.min(128)))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        }
    }
}

fn max_len(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl FromStr for Cidr {
    type Err = InvalidCidr;

    /// Parses `10.0.0.0/8`, `fd00::/8` or a bare address.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let syntax = || InvalidCidr::Syntax {
            input: input.to_owned(),
        };
        match input.split_once('/') {
            None => input.parse().map(Self::host).map_err(|_| syntax()),
            Some((addr, len)) => {
                let addr: IpAddr = addr.parse().map_err(|_| syntax())?;
                // `u8::from_str` accepts a leading `+`; a prefix length is digits only.
                if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(syntax());
                }
                let len: u8 = len.parse().map_err(|_| InvalidCidr::PrefixTooLong {
                    input: input.to_owned(),
                    max: max_len(addr),
                })?;
                Self::new(addr, len)
            }
        }
    }
}

/// Why a [`Cidr`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidCidr {
    /// The text is neither an IP address nor `address/prefix-length`.
    #[error(
        "`{input}` is not an IP address or CIDR block; write e.g. `10.0.0.0/8`, `fd00::/8` or \
         `169.254.169.254`"
    )]
    Syntax {
        /// The text as given.
        input: String,
    },
    /// The prefix length is longer than the address.
    #[error("`{input}` has a prefix length over {max}, the number of bits in the address")]
    PrefixTooLong {
        /// The block as given.
        input: String,
        /// 32 for IPv4, 128 for IPv6.
        max: u8,
    },
    /// The address has bits set past the prefix, which usually means a typo.
    #[error("`{input}` has bits set past its prefix; write `{network}` for the whole block")]
    HostBits {
        /// The block as given.
        input: String,
        /// The block the address belongs to.
        network: Cidr,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_displays_blocks() {
        for text in [
            "10.0.0.0/8",
            "0.0.0.0/0",
            "::/0",
            "fe80::/10",
            "1.2.3.4/32",
            "::1/128",
        ] {
            assert_eq!(text.parse::<Cidr>().unwrap().to_string(), text);
        }
        assert_eq!("1.2.3.4".parse::<Cidr>().unwrap().to_string(), "1.2.3.4/32");
        assert_eq!("::1".parse::<Cidr>().unwrap().to_string(), "::1/128");
        assert_eq!(
            "::ffff:10.0.0.0/104".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
    }

    #[test]
    fn rejects_bad_blocks_without_panicking() {
        for text in [
            "",
            "/",
            "10.0.0.0/",
            "/8",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0/8",
            "x",
            "[::1]",
            "10.0.0.0/8/8",
            "10.0.0.0 /8",
        ] {
            assert!(
                matches!(text.parse::<Cidr>(), Err(InvalidCidr::Syntax { .. })),
                "{text}"
            );
        }
        for text in ["10.0.0.0/33", "::/129", "10.0.0.0/999"] {
            assert!(
                matches!(text.parse::<Cidr>(), Err(InvalidCidr::PrefixTooLong { .. })),
                "{text}"
            );
        }
        let err = "10.1.2.3/8".parse::<Cidr>().unwrap_err();
        assert!(err.to_string().contains("`10.0.0.0/8`"), "{err}");
    }

    #[test]
    fn contains_respects_family_and_prefix() {
        let v4: Cidr = "172.16.0.0/12".parse().unwrap();
        assert!(v4.contains(ip("172.31.255.255")));
        assert!(!v4.contains(ip("172.32.0.0")));
        assert!(v4.contains(ip("::ffff:172.16.0.1")));
        assert!(!v4.contains(ip("::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("255.255.255.255")));
        assert!(!all.contains(ip("2001:db8::1")));
        let v6: Cidr = "fe80::/10".parse().unwrap();
        assert!(v6.contains(ip("febf::1")));
        assert!(!v6.contains(ip("fec0::1")));
        assert!(!v6.contains(ip("169.254.0.1")));
    }
}
