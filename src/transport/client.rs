//! Who is asking: the client address of a request, and per-address rate limits. The
//! address is the TCP peer's, unless that peer is a proxy the operator trusts
//! (`TRUSTED_PROXIES`): then it is the right-most address in `X-Forwarded-For` that is
//! not itself a trusted proxy (what the nearest untrusted hop said, the only part a
//! client cannot forge). Without trusted proxies, `X-Forwarded-For` is ignored, so a
//! client cannot pick its own address.
use std::{
    net::{IpAddr, SocketAddr},
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::http::HeaderMap;

use crate::config::{Cidr, canonical};

/// The client a request speaks for (see the module header).
pub fn client_address(peer: Option<SocketAddr>, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let peer = peer.map_or(IpAddr::from([0, 0, 0, 0]), |p| canonical(p.ip()));
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    // Every X-Forwarded-For header, in order, as one list; read from the right.
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|hop| hop.trim().parse::<IpAddr>().map(canonical))
        .collect::<Result<_, _>>()
        // A hop that is not an address: nothing to the left of it can be believed.
        .unwrap_or_default();
    hops.into_iter()
        .rev()
        .find(|ip| !is_trusted(*ip))
        .unwrap_or(peer)
}

/// Most addresses a `PerAddress` limiter remembers at once; past that, the oldest
/// buckets are forgotten (an address forgotten starts with a full bucket again).
const TRACKED: u64 = 100_000;

/// A token bucket per client address: `per_minute` actions, refilled evenly.
pub struct PerAddress {
    per_minute: u32,
    buckets: moka::sync::Cache<IpAddr, std::sync::Arc<Mutex<(f64, Instant)>>>,
}

impl PerAddress {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: moka::sync::Cache::builder()
                .max_capacity(TRACKED)
                .time_to_idle(Duration::from_secs(120))
                .build(),
        }
    }

    /// Takes one action of `ip`'s bucket; `false` when it is empty.
    pub fn allow(&self, ip: IpAddr) -> bool {
        if self.per_minute == 0 {
            return false;
        }
        let cap = f64::from(self.per_minute);
        let bucket = self.buckets.get_with(ip, || {
            std::sync::Arc::new(Mutex::new((cap, Instant::now())))
        });
        // A std Mutex: held for a few arithmetic steps, never across an await.
        let mut b = bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(b.1).as_secs_f64() * cap / 60.0;
        b.0 = (b.0 + refill).min(cap);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
        let peer: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let proxy: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        // Not trusted: the header is the client's own claim.
        assert_eq!(
            client_address(Some(peer), &headers(&["1.1.1.1"]), &[]),
            peer.ip()
        );
        // Trusted: the right-most untrusted hop; what a client put left of it is ignored.
        assert_eq!(
            client_address(
                Some(peer),
                &headers(&["6.6.6.6, 2.2.2.2", "10.0.0.7"]),
                &proxy
            ),
            "2.2.2.2".parse::<IpAddr>().unwrap()
        );
        // Garbage in the chain: nothing in it is believed.
        assert_eq!(
            client_address(Some(peer), &headers(&["2.2.2.2, junk"]), &proxy),
            peer.ip()
        );
        assert_eq!(client_address(Some(peer), &headers(&[]), &proxy), peer.ip());
    }

    #[test]
    fn a_bucket_allows_its_rate_per_address() {
        let limit = PerAddress::new(3);
        let a: IpAddr = "1.1.1.1".parse().unwrap();
        let b: IpAddr = "2.2.2.2".parse().unwrap();
        assert!((0..3).all(|_| limit.allow(a)));
        assert!(!limit.allow(a));
        assert!(limit.allow(b), "another address has its own bucket");
        assert!(!PerAddress::new(0).allow(a));
    }
}
