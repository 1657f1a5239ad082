//! Which addresses an outbound call may reach: [`AddressPolicy`] (always built) and, with
//! feature `reqwest`, its enforcement around a transport (`PolicyTransport`) and inside a
//! reqwest client's DNS lookups (`PolicyResolver`). The trade-offs are written down on
//! [`AddressPolicy`], where readers of the public documentation find them.

mod cidr;
#[cfg(feature = "reqwest")]
mod enforce;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use cidr::{Cidr, InvalidCidr};
#[cfg(feature = "reqwest")]
pub use enforce::{PolicyResolver, PolicyTransport};

/// IPv4 and IPv6 link-local blocks (which hold most cloud metadata endpoints) and the metadata
/// addresses outside them. Those are single addresses: the blocks around them are private or
/// public networks that webhooks may legitimately target.
const INTERNAL: [Cidr; 8] = [
    // IPv4 link-local; AWS, GCP, Azure, OpenStack and others serve metadata at 169.254.169.254.
    Cidr::v4(Ipv4Addr::new(169, 254, 0, 0), 16),
    // IPv6 link-local.
    Cidr::v6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
    // AWS instance metadata over IPv6.
    Cidr::v6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254), 128),
    // The AWS EKS Pod Identity Agent over IPv6, which hands out the pod's AWS credentials.
    Cidr::v6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23), 128),
    // Google Cloud instance metadata over IPv6.
    Cidr::v6(Ipv6Addr::new(0xfd20, 0xce, 0, 0, 0, 0, 0, 0x254), 128),
    // Alibaba Cloud instance metadata.
    Cidr::v4(Ipv4Addr::new(100, 100, 100, 200), 32),
    // Azure's WireServer, reachable from every Azure VM: goal state, extension settings and
    // certificates. A public address, so no private or link-local block covers it.
    Cidr::v4(Ipv4Addr::new(168, 63, 129, 16), 32),
    // Oracle Cloud Infrastructure Classic instance metadata.
    Cidr::v4(Ipv4Addr::new(192, 0, 0, 192), 32),
];

const LOOPBACK: [Cidr; 2] = [
    Cidr::v4(Ipv4Addr::new(127, 0, 0, 0), 8),
    Cidr::v6(Ipv6Addr::LOCALHOST, 128),
];

const UNSPECIFIED: [Cidr; 2] = [
    // "This network": 0.0.0.0 reaches the local machine on most systems.
    Cidr::v4(Ipv4Addr::UNSPECIFIED, 8),
    Cidr::v6(Ipv6Addr::UNSPECIFIED, 128),
];

const PRIVATE: [Cidr; 5] = [
    Cidr::v4(Ipv4Addr::new(10, 0, 0, 0), 8),
    Cidr::v4(Ipv4Addr::new(172, 16, 0, 0), 12),
    Cidr::v4(Ipv4Addr::new(192, 168, 0, 0), 16),
    // Shared address space (carrier-grade NAT), often used inside clusters.
    Cidr::v4(Ipv4Addr::new(100, 64, 0, 0), 10),
    // IPv6 unique local addresses.
    Cidr::v6(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),
];

/// Which addresses an outbound call may reach: an allow-list of hosts and networks and a
/// deny-list of networks, checked after DNS resolution on every attempt.
///
/// A webhook's URL is rendered from a template, and the values in it may come from secrets or
/// from the deployment's context. Whoever controls those values can aim the orchestrator at
/// addresses only it can reach: the cloud metadata endpoint (`169.254.169.254`, which hands
/// out the machine's credentials), the loopback interface, the private network.
///
/// - **Deny rules** ([`deny`](Self::deny) and the presets) refuse every address in their
///   block, whatever the allow rules say: narrow a deny rule to make an exception.
/// - **Allow rules** ([`allow_host`](Self::allow_host), [`allow_net`](Self::allow_net)) turn
///   the policy into an allow-list as soon as there is one: an address then passes only if its
///   host name or its network is allowed. Without allow rules, every address that is not
///   denied passes.
///
/// [`AddressPolicy::new`] (also the `Default`) has no rules and lets everything through;
/// [`AddressPolicy::deny_internal`] is the usual starting point.
///
/// ```
/// use std::net::IpAddr;
/// use hookgate::transport::{AddressPolicy, PolicyViolation};
///
/// let policy = AddressPolicy::deny_internal()
///     .allow_host("hooks.example.com")
///     .allow_host("*.ci.example.com")
///     .allow_net("203.0.113.0/24".parse()?);
/// let ip = |s: &str| s.parse::<IpAddr>().unwrap();
/// assert!(policy.check("hooks.example.com", ip("198.51.100.7")).is_ok());
/// assert!(policy.check("eu.ci.example.com", ip("198.51.100.8")).is_ok());
/// assert!(policy.check("other.example.com", ip("203.0.113.9")).is_ok());
/// assert!(matches!(
///     policy.check("other.example.com", ip("198.51.100.7")),
///     Err(PolicyViolation::NotAllowed { .. })
/// ));
/// // Deny wins over allow.
/// let err = policy.check("hooks.example.com", ip("169.254.169.254")).unwrap_err();
/// assert!(err.to_string().contains("deny 169.254.0.0/16"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Enforcement
///
/// With feature `reqwest`, `PolicyTransport` enforces a policy around any
/// [`HttpTransport`](super::HttpTransport):
///
/// ```no_run
/// # #[cfg(feature = "reqwest")]
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use hookgate::transport::{
///     AddressPolicy, PolicyTransport, ReqwestTransport, TransportRegistry,
/// };
///
/// let policy = AddressPolicy::deny_internal()
///     .deny_loopback()
///     .deny("10.20.0.0/16".parse()?);
/// let direct = PolicyTransport::new(ReqwestTransport::new()?, policy);
/// let registry = TransportRegistry::new(direct);
/// # Ok(())
/// # }
/// ```
///
/// For each request (so for each attempt of a retried call), the host of the URL is taken as
/// is when it is an IP literal, and resolved otherwise. Every address it resolves to is
/// checked with [`check`](Self::check), and the request is refused if *any* of them fails:
/// the client may connect to any address of the answer, so a name must be acceptable through
/// and through. A refused request never reaches the inner transport and fails with a
/// [`TransportError::InvalidRequest`](super::TransportError::InvalidRequest) naming the host,
/// the address and the rule (never the path or query string), which is not retryable. A name
/// that does not resolve fails like a connection failure (retryable), as it would without a
/// policy.
///
/// # Trade-offs
///
/// - **Off by default.** Nothing is checked unless a transport is wrapped. For `direct` mode
///   inside a private network that is often right: the webhooks *are* internal services
///   (CI in `10.0.0.0/8`, a chat bot on the same cluster), and the people who write the
///   deployment file and its secrets are trusted with the network the orchestrator sits in.
///   Turn a policy on when URL values can be set by less trusted parties (context supplied by
///   callers, secrets written by other teams, several tenants on one orchestrator), and use at
///   least [`deny_internal`](Self::deny_internal) whenever the orchestrator runs on a cloud
///   machine with a metadata endpoint.
/// - **DNS rebinding.** `PolicyTransport` resolves the name, then the inner transport resolves
///   it again to connect. A hostile name server can answer the check with a public address and
///   the connection with an internal one (a short TTL is enough). What closes the gap is
///   checking the addresses the client actually connects to: `PolicyResolver` is a reqwest
///   DNS resolver applying the same policy, which `ReqwestTransportBuilder::address_policy`
///   installs: with both, a name is checked where it is resolved to connect, and a literal
///   address by the wrapper.
/// - **Redirects.** The check covers the URL that is sent. `ReqwestTransport` follows
///   redirects only for `GET` and only when `max_get_redirects` is set; the hops after the
///   first are not seen by the wrapper, so keep that at 0 when a policy matters.
/// - **Proxies.** Through an HTTP proxy (reqwest honours the `HTTPS_PROXY` family of
///   variables), the proxy connects to the webhook, and a resolver in the client would check
///   the proxy's address instead. So a `ReqwestTransport` with an address policy connects
///   directly, ignoring those variables; a wrapper around a transport that does use a proxy
///   still checks what this machine resolves.
/// - **Remote network agents.** `PolicyTransport` resolves names on this machine, but an
///   agent's transport hands the request on to another network, where the agent resolves the
///   name again to connect. Around an agent's transport, only URLs holding an IP address are
///   checked for what they reach: a name only the agent's network knows fails here as one that
///   does not resolve, and a name that split DNS answers differently there passes on an
///   address the agent never connects to. Apply the policy at the agent, where its
///   connections are made; a policy around the `direct` transport does not cover agents.
/// - **Addresses, not names.** IPv4-mapped IPv6 addresses are checked as the IPv4 address
///   they carry; other encodings (NAT64 prefixes, 6to4) are checked as the IPv6 addresses
///   they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Lower-case names without a trailing dot; `*.suffix` matches any subdomain of `suffix`.
    allow_hosts: Vec<String>,
    allow_nets: Vec<Cidr>,
    deny_nets: Vec<Cidr>,
}

impl AddressPolicy {
    /// A policy without rules: every address passes.
    pub fn new() -> Self {
        Self::default()
    }

    /// A policy denying link-local addresses and cloud metadata endpoints:
    /// `169.254.0.0/16` (including `169.254.169.254`), `fe80::/10`, `fd00:ec2::254` (AWS over
    /// IPv6), `fd00:ec2::23` (the AWS EKS Pod Identity Agent over IPv6), `fd20:ce::254` (Google
    /// Cloud over IPv6), `100.100.100.200` (Alibaba Cloud), `168.63.129.16` (Azure's
    /// WireServer) and `192.0.0.192` (Oracle Cloud Infrastructure Classic).
    ///
    /// Loopback, unspecified and private addresses are not denied: add
    /// [`deny_loopback`](Self::deny_loopback) (which denies the unspecified addresses too) and
    /// [`deny_private`](Self::deny_private) as the deployment calls for.
    pub fn deny_internal() -> Self {
        Self::new().deny_all(INTERNAL)
    }

    /// Denies every address in `block`.
    #[must_use]
    pub fn deny(mut self, block: Cidr) -> Self {
        if !self.deny_nets.contains(&block) {
            self.deny_nets.push(block);
        }
        self
    }

    /// Denies loopback addresses, `127.0.0.0/8` and `::1`, and the unspecified addresses
    /// ([`deny_unspecified`](Self::deny_unspecified)): a connection to `0.0.0.0` or `::` goes
    /// to the local machine on Linux and others, reaching services listening on loopback only,
    /// so denying loopback without them would leave a way around.
    #[must_use]
    pub fn deny_loopback(self) -> Self {
        self.deny_all(LOOPBACK).deny_unspecified()
    }

    /// Denies unspecified addresses, which reach the local machine on most systems:
    /// `0.0.0.0/8` and `::` (and `::ffff:0.0.0.0`, checked as `0.0.0.0`).
    /// [`deny_loopback`](Self::deny_loopback) denies them too.
    #[must_use]
    pub fn deny_unspecified(self) -> Self {
        self.deny_all(UNSPECIFIED)
    }

    /// Denies private addresses: `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`,
    /// `100.64.0.0/10` (shared address space) and `fc00::/7` (unique local).
    #[must_use]
    pub fn deny_private(self) -> Self {
        self.deny_all(PRIVATE)
    }

    fn deny_all(self, blocks: impl IntoIterator<Item = Cidr>) -> Self {
        blocks.into_iter().fold(self, Self::deny)
    }

    /// Allows the host `host` (case-insensitive, a trailing dot ignored), whatever it resolves
    /// to unless denied. `*.example.com` allows every subdomain of `example.com`, at any
    /// depth, but not `example.com` itself. Internationalised names are written in their
    /// ASCII (`xn--`) form, as they appear in URLs.
    #[must_use]
    pub fn allow_host(mut self, host: impl AsRef<str>) -> Self {
        let host = normalize_host(host.as_ref());
        if !self.allow_hosts.contains(&host) {
            self.allow_hosts.push(host);
        }
        self
    }

    /// Allows every address in `block`, unless denied.
    #[must_use]
    pub fn allow_net(mut self, block: Cidr) -> Self {
        if !self.allow_nets.contains(&block) {
            self.allow_nets.push(block);
        }
        self
    }

    /// The denied blocks, in the order they were added.
    pub fn denied(&self) -> &[Cidr] {
        &self.deny_nets
    }

    /// The allowed blocks, in the order they were added.
    pub fn allowed_nets(&self) -> &[Cidr] {
        &self.allow_nets
    }

    /// The allowed host names, normalized, in the order they were added.
    pub fn allowed_hosts(&self) -> impl Iterator<Item = &str> {
        self.allow_hosts.iter().map(String::as_str)
    }

    /// Whether the policy has allow rules, and so lets through only what they allow.
    pub fn is_allow_list(&self) -> bool {
        !self.allow_hosts.is_empty() || !self.allow_nets.is_empty()
    }

    /// Checks that `host`, resolved to `addr`, may be called. `host` is the URL's host as
    /// written (an IP literal in brackets or not); `addr` is one address it resolved to.
    ///
    /// # Errors
    ///
    /// [`PolicyViolation::Denied`] when a deny rule covers `addr`;
    /// [`PolicyViolation::NotAllowed`] when the policy has allow rules and neither `host` nor
    /// `addr` matches one.
    pub fn check(&self, host: &str, addr: IpAddr) -> Result<(), PolicyViolation> {
        let addr = addr.to_canonical();
        if let Some(rule) = self.deny_nets.iter().find(|rule| rule.contains(addr)) {
            return Err(PolicyViolation::Denied {
                host: display_host(host),
                addr,
                rule: *rule,
            });
        }
        if !self.is_allow_list()
            || self.allow_nets.iter().any(|rule| rule.contains(addr))
            || self.host_allowed(host)
        {
            Ok(())
        } else {
            Err(PolicyViolation::NotAllowed {
                host: display_host(host),
                addr,
            })
        }
    }

    /// Checks every address `host` resolved to, stopping at the first violation.
    ///
    /// # Errors
    ///
    /// The first violation, as [`check`](Self::check) reports it.
    pub fn check_all(
        &self,
        host: &str,
        addrs: impl IntoIterator<Item = IpAddr>,
    ) -> Result<(), PolicyViolation> {
        addrs
            .into_iter()
            .try_for_each(|addr| self.check(host, addr))
    }

    fn host_allowed(&self, host: &str) -> bool {
        if self.allow_hosts.is_empty() {
            return false;
        }
        let host = normalize_host(host);
        self.allow_hosts
            .iter()
            .any(|rule| match rule.strip_prefix("*.") {
                Some(suffix) => host
                    .strip_suffix(suffix)
                    .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
                None => *rule == host,
            })
    }
}

/// `host` in lower case, without brackets or a trailing dot.
fn normalize_host(host: &str) -> String {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// `host` as it appears in a URL, kept short: a violation message must stay readable.
fn display_host(host: &str) -> String {
    const MAX: usize = 253;
    match host.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &host[..cut]),
        None => host.to_owned(),
    }
}

/// Why an [`AddressPolicy`] refused an address.
///
/// The message names the host, the address and the rule; it never includes the URL's path or
/// query string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyViolation {
    /// A deny rule covers the address.
    #[error(
        "host {host} (address {addr}) is blocked by the address policy rule `deny {rule}`; \
         narrow or remove that rule if this webhook is meant to reach it"
    )]
    Denied {
        /// The host as written in the URL.
        host: String,
        /// The refused address.
        addr: IpAddr,
        /// The deny rule that covers it.
        rule: Cidr,
    },
    /// The policy is an allow-list and neither the host nor the address is on it.
    #[error(
        "host {host} (address {addr}) is not on the address policy's allow-list; allow the \
         host or a network containing the address"
    )]
    NotAllowed {
        /// The host as written in the URL.
        host: String,
        /// The refused address.
        addr: IpAddr,
    },
}

impl PolicyViolation {
    /// The host as written in the URL.
    pub fn host(&self) -> &str {
        match self {
            Self::Denied { host, .. } | Self::NotAllowed { host, .. } => host,
        }
    }

    /// The refused address.
    pub fn addr(&self) -> IpAddr {
        match self {
            Self::Denied { addr, .. } | Self::NotAllowed { addr, .. } => *addr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn preset_blocks_are_valid_networks() {
        for block in INTERNAL
            .iter()
            .chain(&LOOPBACK)
            .chain(&UNSPECIFIED)
            .chain(&PRIVATE)
        {
            assert_eq!(
                Cidr::new(block.network(), block.prefix_len()).as_ref(),
                Ok(block)
            );
        }
    }

    #[test]
    fn empty_policy_allows_everything() {
        let policy = AddressPolicy::new();
        for addr in ["169.254.169.254", "127.0.0.1", "::", "fe80::1"] {
            assert!(policy.check("h", ip(addr)).is_ok(), "{addr}");
        }
    }

    #[test]
    fn deny_internal_covers_metadata_but_not_loopback() {
        let policy = AddressPolicy::deny_internal();
        for addr in [
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "169.254.0.1",
            "fe80::1",
            "fd00:ec2::254",
            "100.100.100.200",
        ] {
            assert!(
                matches!(
                    policy.check("h", ip(addr)),
                    Err(PolicyViolation::Denied { .. })
                ),
                "{addr}"
            );
        }
        for addr in ["127.0.0.1", "::1", "10.0.0.1", "fd00:ec2::253", "8.8.8.8"] {
            assert!(policy.check("h", ip(addr)).is_ok(), "{addr}");
        }
    }

    /// Metadata and credential endpoints outside the link-local blocks are denied one by one,
    /// and their neighbours, which may be anyone's, are not.
    #[test]
    fn deny_internal_covers_metadata_addresses_outside_link_local() {
        let policy = AddressPolicy::deny_internal();
        for addr in [
            "168.63.129.16",
            "::ffff:168.63.129.16",
            "192.0.0.192",
            "100.100.100.200",
            "fd00:ec2::254",
            "fd00:ec2::23",
            "fd20:ce::254",
        ] {
            let Err(PolicyViolation::Denied { rule, .. }) = policy.check("h", ip(addr)) else {
                panic!("{addr} is not denied");
            };
            assert!(
                rule.prefix_len() == 32 || rule.prefix_len() == 128,
                "{addr}: {rule}"
            );
        }
        for addr in [
            "168.63.129.15",
            "168.63.129.17",
            "192.0.0.191",
            "192.0.0.193",
            "fd00:ec2::22",
            "fd20:ce::253",
        ] {
            assert!(policy.check("h", ip(addr)).is_ok(), "{addr}");
        }
    }

    #[test]
    fn presets_add_their_blocks_once() {
        let policy = AddressPolicy::deny_internal()
            .deny_loopback()
            .deny_loopback()
            .deny_unspecified()
            .deny_private();
        assert_eq!(
            policy.denied().len(),
            INTERNAL.len() + LOOPBACK.len() + UNSPECIFIED.len() + PRIVATE.len()
        );
        for addr in [
            "127.1.2.3",
            "::1",
            "0.0.0.0",
            "::",
            "192.168.1.1",
            "fd12::1",
        ] {
            assert!(policy.check("h", ip(addr)).is_err(), "{addr}");
        }
    }

    #[test]
    fn deny_loopback_covers_the_unspecified_addresses() {
        let loopback = AddressPolicy::new().deny_loopback();
        for addr in ["0.0.0.0", "0.1.2.3", "::", "::ffff:0.0.0.0"] {
            assert!(
                matches!(
                    loopback.check("h", ip(addr)),
                    Err(PolicyViolation::Denied { .. })
                ),
                "{addr}"
            );
        }
        let unspecified = AddressPolicy::new().deny_unspecified();
        assert!(unspecified.check("h", ip("0.0.0.0")).is_err());
        assert!(unspecified.check("h", ip("::")).is_err());
        assert!(unspecified.check("h", ip("127.0.0.1")).is_ok());
    }

    #[test]
    fn host_rules_match_exactly_or_by_subdomain() {
        let policy = AddressPolicy::new()
            .allow_host("Hooks.Example.com.")
            .allow_host("*.ci.example.com")
            .allow_host("[::1]");
        let addr = ip("198.51.100.1");
        for host in [
            "hooks.example.com",
            "HOOKS.example.com.",
            "a.ci.example.com",
            "a.b.ci.example.com",
        ] {
            assert!(policy.check(host, addr).is_ok(), "{host}");
        }
        for host in [
            "ci.example.com",
            "xci.example.com",
            "evil-hooks.example.com",
            ".ci.example.com",
            "",
        ] {
            assert!(
                matches!(
                    policy.check(host, addr),
                    Err(PolicyViolation::NotAllowed { .. })
                ),
                "{host}"
            );
        }
        assert!(policy.check("[::1]", ip("::1")).is_ok());
        assert!(policy.check("::1", ip("::1")).is_ok());
    }

    #[test]
    fn deny_wins_over_allow() {
        let policy = AddressPolicy::new()
            .allow_net("127.0.0.0/8".parse().unwrap())
            .allow_host("localhost")
            .deny("127.0.0.1".parse().unwrap());
        let err = policy.check("localhost", ip("127.0.0.1")).unwrap_err();
        assert_eq!(err.host(), "localhost");
        assert_eq!(err.addr(), ip("127.0.0.1"));
        assert!(err.to_string().contains("`deny 127.0.0.1/32`"), "{err}");
        assert!(policy.check("localhost", ip("127.0.0.2")).is_ok());
    }

    #[test]
    fn check_all_refuses_if_any_address_fails() {
        let policy = AddressPolicy::deny_internal();
        let addrs = [ip("8.8.8.8"), ip("169.254.169.254")];
        assert!(policy.check_all("h", addrs).is_err());
        assert!(policy.check_all("h", [ip("8.8.8.8")]).is_ok());
    }

    #[test]
    fn long_hosts_are_cut_in_messages() {
        let host = "é".repeat(1000);
        let err = AddressPolicy::deny_internal()
            .check(&host, ip("169.254.169.254"))
            .unwrap_err();
        assert!(err.host().chars().count() <= 254);
    }
}
