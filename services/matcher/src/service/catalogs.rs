//! The drops' catalogs as this matcher last saw them: what chat lines parse against, the per-order
//! quantity cap, and how many shards a split drop has. Filled from Redis for drops a batch names
//! and from open triggers as they pass; forgotten when a step reports another catalog version.

use std::collections::HashMap;
use std::sync::Arc;

use dropline_proto::v1::OpenDrop;
use prost::Message as _;

use crate::chat::{CatalogIndex, Quantity};
use crate::split;

/// Most drops cached before the cache starts over (a long-running matcher sees many drops).
const MAX_CACHED: usize = 100_000;

/// A drop's catalog as this matcher last saw it.
#[derive(Debug, Clone)]
pub(crate) struct CachedDrop {
    /// Catalog version in Redis (-1: taken from an open trigger not yet confirmed by Redis).
    pub version: i64,
    pub index: Option<Arc<CatalogIndex>>,
    pub max_quantity: u32,
    /// Shards of a split drop (1: not split).
    pub shards: u32,
}

/// Catalogs by drop id.
#[derive(Debug)]
pub(crate) struct Catalogs {
    drops: HashMap<String, CachedDrop>,
    /// Per-order cap when a drop sets none.
    default_max_quantity: u32,
}

impl Catalogs {
    pub fn new(default_max_quantity: u32) -> Self {
        Self { drops: HashMap::new(), default_max_quantity }
    }

    pub fn get(&self, drop_id: &str) -> Option<&CachedDrop> {
        self.drops.get(drop_id)
    }

    /// Per-order cap of a drop (the default when not known here).
    pub fn max_quantity(&self, drop_id: &str) -> u32 {
        self.get(drop_id).map_or(self.default_max_quantity, |c| c.max_quantity)
    }

    /// Shards of a drop as cached: more than 1 for a split drop; 1 when not split or not known here.
    pub fn shards_of(&self, drop_id: &str) -> u32 {
        self.get(drop_id).map_or(1, |c| c.shards)
    }

    /// Of `drop_ids`, those not cached (each once), for loading from Redis.
    pub fn missing<'a>(&mut self, drop_ids: impl Iterator<Item = &'a str>) -> Vec<String> {
        if self.drops.len() > MAX_CACHED {
            self.drops.clear();
        }
        let mut missing: Vec<String> =
            drop_ids.filter(|d| !self.drops.contains_key(*d)).map(str::to_owned).collect();
        missing.sort_unstable();
        missing.dedup();
        missing
    }

    /// A drop as read from Redis: its catalog version and encoded `OpenDrop` (none: not opened).
    pub fn loaded(&mut self, drop_id: String, version: i64, catalog: Option<&[u8]>) {
        let open = catalog.and_then(|bytes| OpenDrop::decode(bytes).ok());
        let entry = self.entry(version, open.as_ref());
        self.drops.insert(drop_id, entry);
    }

    /// A drop opened by a trigger of this batch: later orders of the batch parse against it.
    /// Returns its shards.
    pub fn opened(&mut self, drop_id: &str, open: &OpenDrop) -> u32 {
        let entry = self.entry(-1, Some(open));
        let shards = entry.shards;
        self.drops.insert(drop_id.to_owned(), entry);
        shards
    }

    fn entry(&self, version: i64, open: Option<&OpenDrop>) -> CachedDrop {
        let index = open.and_then(|o| CatalogIndex::new(&o.items).ok()).map(Arc::new);
        let max_quantity = open
            .map(|o| o.max_quantity_per_order)
            .filter(|n| *n > 0)
            .unwrap_or(self.default_max_quantity)
            .min(Quantity::MAX);
        let shards = open.map_or(1, |o| o.shards.clamp(1, split::MAX_SHARDS));
        CachedDrop { version, index, max_quantity, shards }
    }

    /// After a step call on `drop_id`: a catalog version other than the one parsed against means
    /// the cache is stale (the drop was opened or reopened elsewhere): forget it, reload next time.
    /// `opened_here`: the call applied an open of this batch (its version is now known).
    pub fn note_version(&mut self, drop_id: &str, version: i64, opened_here: bool) {
        match self.drops.get_mut(drop_id) {
            Some(cached) if cached.version == version => {}
            Some(cached) if opened_here && cached.version == -1 => cached.version = version,
            _ => {
                self.drops.remove(drop_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use dropline_proto::v1::CatalogItem;

    use super::*;

    fn open(shards: u32) -> OpenDrop {
        OpenDrop {
            items: vec![CatalogItem { sku: "TEE-M".into(), stock: 3, ..Default::default() }],
            shards,
            max_quantity_per_order: 2,
            ..Default::default()
        }
    }

    #[test]
    fn an_open_is_cached_until_redis_names_its_version() {
        let mut c = Catalogs::new(10);
        assert_eq!(c.missing(["d1", "d1", "d2"].into_iter()), vec!["d1".to_owned(), "d2".to_owned()]);
        assert_eq!(c.opened("d1", &open(4)), 4);
        assert_eq!((c.shards_of("d1"), c.max_quantity("d1"), c.max_quantity("d2")), (4, 2, 10));
        // The step applied the open: its version becomes the one cached.
        c.note_version("d1", 7, true);
        assert_eq!(c.get("d1").map(|d| d.version), Some(7));
        // Another version seen later: the drop was reopened elsewhere; reload.
        c.note_version("d1", 8, false);
        assert!(c.get("d1").is_none());
        c.loaded("d1".into(), 8, Some(open(1).encode_to_vec().as_slice()));
        assert_eq!(c.get("d1").map(|d| (d.version, d.shards, d.index.is_some())), Some((8, 1, true)));
        assert!(c.missing(["d1"].into_iter()).is_empty());
        // Not opened: cached without a catalog.
        c.loaded("d3".into(), 0, None);
        assert!(c.get("d3").is_some_and(|d| d.index.is_none()));
    }
}
