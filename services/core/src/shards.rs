//! How a split drop's shards are named, for every service that reads a drop's keys: shard `k` of
//! drop `d` is the drop id `d#k` (so its keys carry the hash tag `{drop:d#k}`: its own slot).
//! The matcher refuses `#` in drop ids, so a shard id is never mistaken for a drop.

/// The id of shard `k` of `drop_id`.
pub fn shard_id(drop_id: &str, k: u32) -> String {
    format!("{drop_id}#{k}")
}

/// The drop a shard belongs to (`d#3` → `d`); any other id is its own drop.
pub fn parent_of(id: &str) -> &str {
    match id.rsplit_once('#') {
        Some((parent, k)) if !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) => parent,
        _ => id,
    }
}

/// The drop ids whose keys hold a drop's numbers: its shards when it is split, else itself.
pub fn key_ids(drop_id: &str, shards: u32) -> Vec<String> {
    if shards > 1 {
        (0..shards).map(|k| shard_id(drop_id, k)).collect()
    } else {
        vec![drop_id.to_owned()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_ids_round_trip() {
        assert_eq!(shard_id("drop-1", 3), "drop-1#3");
        assert_eq!(parent_of("drop-1#3"), "drop-1");
        assert_eq!(parent_of("drop-1"), "drop-1");
        assert_eq!(parent_of("a#b"), "a#b");
        assert_eq!(key_ids("d", 1), vec!["d"]);
        assert_eq!(key_ids("d", 2), vec!["d#0", "d#1"]);
    }
}
