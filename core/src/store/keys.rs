//! Every Redis key name of Allot, spelled here and nowhere else (the Functions library derives
//! the same names from the prefix it is given; ARCHITECTURE.md has the table). All keys of a
//! site share the hash tag `{site}`, so a site's state lives in one Redis Cluster slot.

use allot_shared::{ReservationId, ResourceId, SiteId, Slot};

use super::StoreError;

/// The set of sites that have (or recently had) held reservations: the one key outside every
/// site's slot. Only the sweeper and the reserve path touch it, never inside a function.
pub const SITES_WITH_HOLDS: &str = "allot:sites-with-holds";

/// A SCAN pattern matching every site's holds index.
pub const HOLDS_PATTERN: &str = "allot:{*}:holds";

/// The key prefix of every key of `site`; `{site}` is the Redis Cluster hash tag.
pub fn site_prefix(site: &SiteId) -> String {
    format!("allot:{{{site}}}:")
}

/// The site's event stream, `allot:{<site>}:events` (part of the contract: integrators read it).
pub fn events(site: &SiteId) -> String {
    format!("allot:{{{site}}}:events")
}

/// The site's holds index: reservation id -> hold end in ms.
pub fn holds(site: &SiteId) -> String {
    format!("allot:{{{site}}}:holds")
}

/// The site's `used` hash: counter field -> units held or confirmed.
pub fn used(site: &SiteId) -> String {
    format!("allot:{{{site}}}:used")
}

/// The site's `capacity` hash: counter field -> capacity.
pub fn capacity(site: &SiteId) -> String {
    format!("allot:{{{site}}}:capacity")
}

/// One reservation's hash.
pub fn reservation(site: &SiteId, id: &ReservationId) -> String {
    format!("allot:{{{site}}}:res:{id}")
}

/// A SCAN pattern matching every reservation hash of `site`.
pub fn reservations_pattern(site: &SiteId) -> String {
    format!("allot:{{{site}}}:res:*")
}

/// The site whose holds index `key` is, if it is one.
pub fn site_of_holds_key(key: &str) -> Option<SiteId> {
    let site = key.strip_prefix("allot:{")?.strip_suffix("}:holds")?;
    SiteId::parse(site).ok()
}

/// The field of a counter in the site's hashes: `#` sorts below every id and slot character,
/// so lexicographic order of fields is (resource, slot) order.
pub fn counter_field(resource: &ResourceId, slot: &Slot) -> String {
    format!("{resource}#{slot}")
}

/// The counter a hash field names.
pub fn split_counter_field(field: &str) -> Result<(ResourceId, Slot), StoreError> {
    let (resource, slot) =
        field.split_once('#').ok_or_else(|| StoreError::Corrupt(format!("counter field {field:?}")))?;
    let resource = ResourceId::parse(resource).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let slot = Slot::parse(slot).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok((resource, slot))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_a_site_share_its_hash_tag() {
        let site = SiteId::parse("hub-1").expect("site");
        let id = ReservationId::from_random_bytes([7; 16]);
        for key in
            [site_prefix(&site), events(&site), holds(&site), used(&site), capacity(&site), reservation(&site, &id)]
        {
            assert!(key.starts_with("allot:{hub-1}:"), "{key}");
        }
        assert_eq!(site_of_holds_key(&holds(&site)), Some(site));
        assert_eq!(site_of_holds_key("allot:{hub-1}:used"), None);
        let field = counter_field(&ResourceId::parse("vans").expect("id"), &Slot::parse("2026-12-01").expect("slot"));
        assert_eq!(field, "vans#2026-12-01");
        assert!(split_counter_field(&field).is_ok());
        assert!(split_counter_field("nohash").is_err());
    }
}
