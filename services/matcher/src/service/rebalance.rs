//! Rebalancing a split drop's stock between its shards: finish transfers a crash interrupted, then
//! move units toward shards whose buyers wait or that run low (`split::plan`): take from the donor,
//! give to the recipient, settle. Units in transit are in no shard's stock, so a crash between the
//! steps can delay units, never sell them twice.

use std::collections::BTreeMap;

use dropline_core::kafka::now_ms;
use dropline_core::redis::Conn;
use tracing::{debug, info};

use crate::split;
use dropline_core::keys::Keyspace;

use crate::step;

/// One rebalancing round of split drop `parent` over its `shards` (drop ids, in shard order).
/// `transfers` numbers this process's transfers (part of their ids).
pub(crate) async fn rebalance(
    redis: &Conn,
    keyspace: &Keyspace,
    parent: &str,
    shards: &[String],
    transfers: &mut u64,
) -> Result<(), redis::RedisError> {
    let mut redis = redis.clone();
    let mut stock = Vec::with_capacity(shards.len());
    let mut waiting = Vec::with_capacity(shards.len());
    let mut interrupted = false;
    for shard in shards {
        // One round trip per shard (its keys share one slot): journal, stock, waiting.
        let keys = keyspace.drop_keys(shard);
        #[allow(clippy::type_complexity)]
        let (meta, s, w): (Vec<(String, String)>, BTreeMap<String, i64>, BTreeMap<String, i64>) =
            redis::pipe()
                .hgetall(keys.meta())
                .hgetall(keys.stock())
                .hgetall(keys.waiting())
                .query_async(&mut redis)
                .await?;
        for transfer in step::pending_in(meta) {
            step::give(&mut redis, &keyspace.drop_keys(&transfer.to), &transfer, now_ms()).await?;
            step::settle(&mut redis, &keys, &transfer.id).await?;
            info!(drop_id = %parent, from = %shard, to = %transfer.to, units = transfer.units, "interrupted transfer finished");
            interrupted = true;
        }
        stock.push(s);
        waiting.push(w);
    }
    if interrupted {
        // The numbers just read predate those transfers: plan on fresh ones next round.
        return Ok(());
    }
    for planned in split::plan(&stock, &waiting) {
        *transfers += 1;
        let id = format!("{}-{}-{}", now_ms(), std::process::id(), transfers);
        let (from, to) = (&shards[planned.from], &shards[planned.to]);
        let donor = keyspace.drop_keys(from);
        let units = step::take(&mut redis, &donor, &id, &planned.sku, planned.units, to).await?;
        if units == 0 {
            continue;
        }
        let transfer = step::Pending { id, to: to.clone(), sku: planned.sku.clone(), units };
        step::give(&mut redis, &keyspace.drop_keys(to), &transfer, now_ms()).await?;
        step::settle(&mut redis, &donor, &transfer.id).await?;
        debug!(drop_id = %parent, sku = %planned.sku, from = %from, to = %to, units, "stock rebalanced");
    }
    Ok(())
}
