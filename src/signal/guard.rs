//! Per-address limits at the upgrade: a token bucket of upgrades and a count of connections that
//! have not joined yet. Members behind one NAT share an address, so the defaults are sized for a
//! whole group arriving at once; the limits stop one machine from filling the server's slots.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Which per-address limit refused an upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressRefusal {
    /// Too many upgrades in a short time.
    TooManyUpgrades,
    /// Too many connections from this address that have not joined yet.
    TooManyUnjoined,
}

#[derive(Debug)]
struct Entry {
    tokens: f64,
    last: Instant,
    unjoined: usize,
}

/// The limits and what each address has used.
#[derive(Debug)]
pub struct AddressGuard {
    burst: u32,
    per_minute: u32,
    max_unjoined: usize,
    map: Mutex<HashMap<IpAddr, Entry>>,
}

/// Held by a connection until it joins (or ends): one of its address's unjoined slots.
#[derive(Debug)]
pub struct UnjoinedPermit {
    guard: Arc<AddressGuard>,
    key: IpAddr,
}

impl Drop for UnjoinedPermit {
    fn drop(&mut self) {
        let mut map = self.guard.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = map.get_mut(&self.key) {
            e.unjoined = e.unjoined.saturating_sub(1);
        }
    }
}

/// IPv4 (and IPv4-mapped IPv6) per address; IPv6 per /64, what one subscriber usually gets.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl AddressGuard {
    pub fn new(burst: u32, per_minute: u32, max_unjoined: usize) -> Arc<Self> {
        Arc::new(AddressGuard { burst, per_minute, max_unjoined, map: Mutex::new(HashMap::new()) })
    }

    /// Admits one upgrade from `ip` at `now`, or says which limit refused it. `None` as a permit
    /// means the limits are off.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<Option<UnjoinedPermit>, AddressRefusal> {
        if self.burst == 0 {
            return Ok(None);
        }
        let k = key(ip);
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 10_000 {
            // Bounded memory: forget addresses with nothing pending and a full bucket.
            let (burst, rate) = (f64::from(self.burst), f64::from(self.per_minute) / 60.0);
            map.retain(|_, e| {
                e.unjoined > 0 || e.tokens + now.saturating_duration_since(e.last).as_secs_f64() * rate < burst
            });
        }
        let e = map.entry(k).or_insert(Entry { tokens: f64::from(self.burst), last: now, unjoined: 0 });
        let gained = now.saturating_duration_since(e.last).as_secs_f64() * f64::from(self.per_minute) / 60.0;
        e.tokens = (e.tokens + gained).min(f64::from(self.burst));
        e.last = now;
        if e.unjoined >= self.max_unjoined {
            return Err(AddressRefusal::TooManyUnjoined);
        }
        if e.tokens < 1.0 {
            return Err(AddressRefusal::TooManyUpgrades);
        }
        e.tokens -= 1.0;
        e.unjoined += 1;
        Ok(Some(UnjoinedPermit { guard: self.clone(), key: k }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn unjoined_connections_are_capped_per_address_and_released_on_drop() {
        let g = AddressGuard::new(100, 60, 3);
        let t = Instant::now();
        let held: Vec<_> = (0..3).map(|_| g.admit(ip("10.0.0.1"), t).unwrap()).collect();
        assert_eq!(g.admit(ip("10.0.0.1"), t).unwrap_err(), AddressRefusal::TooManyUnjoined);
        // Another address is not affected.
        assert!(g.admit(ip("10.0.0.2"), t).is_ok());
        drop(held);
        assert!(g.admit(ip("10.0.0.1"), t).is_ok());
    }

    #[test]
    fn upgrades_refill_at_the_configured_rate() {
        let g = AddressGuard::new(2, 60, 100);
        let t = Instant::now();
        drop(g.admit(ip("10.0.0.1"), t).unwrap());
        drop(g.admit(ip("10.0.0.1"), t).unwrap());
        assert_eq!(g.admit(ip("10.0.0.1"), t).unwrap_err(), AddressRefusal::TooManyUpgrades);
        assert!(g.admit(ip("10.0.0.1"), t + Duration::from_secs(1)).is_ok(), "one a second at 60/min");
    }

    #[test]
    fn ipv6_is_limited_per_64_and_mapped_ipv4_as_ipv4() {
        let g = AddressGuard::new(100, 60, 1);
        let t = Instant::now();
        let _a = g.admit(ip("2001:db8:1:2::1"), t).unwrap();
        assert!(g.admit(ip("2001:db8:1:2::ffff"), t).is_err());
        assert!(g.admit(ip("2001:db8:1:3::1"), t).is_ok());
        let _b = g.admit(ip("192.0.2.7"), t).unwrap();
        assert!(g.admit(ip("::ffff:192.0.2.7"), t).is_err());
    }

    #[test]
    fn zero_burst_switches_the_limits_off() {
        let g = AddressGuard::new(0, 0, 0);
        assert!(g.admit(ip("10.0.0.1"), Instant::now()).unwrap().is_none());
    }
}
